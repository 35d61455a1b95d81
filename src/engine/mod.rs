//! The separation engine: audio in → frames → spectrograms → priors + optimizer → masks → stems out.
//!
//! Nothing in here knows about plugins or command lines.

pub mod audio_file;
pub mod constants;
pub mod frames;
pub mod latent_search;
pub mod level_calibration;
pub mod manifest;
pub mod metrics;
pub mod objective;
pub mod onnx_external_data;
pub mod optimizer;
pub mod prior;
pub mod resample;
pub mod resynth;
pub mod runtime;
pub mod separate_file;
pub mod separator;
pub mod settings;
pub mod stft;
