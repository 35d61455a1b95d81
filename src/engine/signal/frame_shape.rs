//! How long one separation frame is, in the three units the engine counts it in: samples at the
//! host rate (what a host or file delivers), samples at the priors' rate (what the priors and the
//! NMF expert see) and STFT columns of the priors' grid (the time axis of the graphs).
//!
//! The graphs take any time axis that is a multiple of the contract's time multiple, so a frame
//! may be shorter than the 5 s the priors were trained on (less latency in a live stream); the
//! one rounding every part of the engine shares is here.

use crate::engine::constants::{HOP, PRIOR_SAMPLE_RATE, TIME_MULTIPLE};
use crate::engine::signal::resample::output_len;

/// One frame's length in each unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
    /// Samples per channel at the host rate.
    pub host_samples: usize,
    /// Samples of the mono copy at the priors' rate (22.05 kHz).
    pub prior_samples: usize,
    /// STFT columns of the priors' grid over those samples: every column whose centre lies in
    /// the frame, rounded up to the time multiple.
    pub columns: usize,
}

impl FrameShape {
    /// A frame of `seconds` (> 0) at `host_rate`.
    pub fn new(seconds: f64, host_rate: u32) -> FrameShape {
        let host_samples = ((seconds * f64::from(host_rate)).round() as usize).max(1);
        // What the resampler makes of the host samples, so the two never disagree by a sample.
        let prior_samples = output_len(host_samples, host_rate, PRIOR_SAMPLE_RATE).max(1);
        FrameShape {
            host_samples,
            prior_samples,
            columns: (1 + prior_samples / HOP).next_multiple_of(TIME_MULTIPLE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::constants::{FRAMES, FRAME_SAMPLES, FRAME_SECONDS};

    #[test]
    fn the_default_frame_is_the_contracts() {
        let shape = FrameShape::new(FRAME_SECONDS, 44_100);
        assert_eq!(shape.host_samples, 220_500);
        assert_eq!(shape.prior_samples, FRAME_SAMPLES);
        assert_eq!(shape.columns, FRAMES);
    }

    #[test]
    fn shorter_frames_keep_the_time_multiple() {
        for seconds in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0] {
            let shape = FrameShape::new(seconds, 48_000);
            assert_eq!(shape.columns % TIME_MULTIPLE, 0);
            assert!(shape.columns * HOP >= shape.prior_samples, "{seconds}");
            assert_eq!(shape.host_samples, (seconds * 48_000.0) as usize);
        }
    }
}
