//! The signal representation every prior shares (see `models/CONTRACT.md`).

/// Sample rate the priors model, in Hz.
pub const PRIOR_SAMPLE_RATE: u32 = 22_050;
/// STFT size at the prior rate.
pub const N_FFT: usize = 1024;
/// STFT hop at the prior rate.
pub const HOP: usize = 256;
/// Frequency bins of one STFT frame.
pub const BINS: usize = N_FFT / 2 + 1;
/// Length of one separation frame in seconds.
pub const FRAME_SECONDS: f64 = 5.0;
/// Samples of one separation frame at the prior rate.
pub const FRAME_SAMPLES: usize = 110_250;
/// STFT frames of one separation frame: 1 + 110250/256 = 431, plus one so the time squeeze gets an even count.
pub const FRAMES: usize = 432;
/// The graphs accept a time axis that is a multiple of this.
pub const TIME_MULTIPLE: usize = 2;
