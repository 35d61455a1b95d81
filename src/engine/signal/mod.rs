//! Signal processing on plain sample buffers: the prior grid's STFT, cutting streams into
//! frames and crossfading them back, resampling to the prior rate, and turning the priors'
//! magnitudes into masked host-rate audio. Imports only the engine's leaf modules (`constants`,
//! `limits`), never priors or search.

pub mod frame_shape;
pub mod frames;
pub mod resample;
pub mod resynth;
pub mod stft;
