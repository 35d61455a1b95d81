//! The plugin's latency and dry/wet ramp around the engine's framing.
//!
//! Frame `j` covers input samples `[j·S, j·S + L)` counted from the first sample processed after
//! activation or reset ([`FrameGeometry`], the command line's framing). The part of the output
//! that only frames `j − 1` and `j` touch, `[j·S, (j + 1)·S)`, is segment `j`: it is final once
//! frame `j` is separated, i.e. once input sample `j·S + L − 1` has arrived and the worker has
//! finished. The plugin therefore delays everything by `L + S` samples: `L` to collect a frame
//! and `S` (one hop, the time the worker has per frame anyway to keep up) as the processing
//! allowance. A short ramp before each segment decides whether the next segment is ready; if
//! not, the outputs crossfade to the dry mix (see `stream.rs`).

use crate::engine::search::settings::SeparationSettings;
use crate::engine::signal::frames::FrameGeometry;

/// Length of the dry/wet crossfade, in seconds.
pub const RAMP_SECONDS: f64 = 0.01;

/// Frame geometry, latency and ramp at one sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Where frames start and how they crossfade: the engine's framing at this rate.
    pub geometry: FrameGeometry,
    /// Samples in a frame (`L`).
    pub frame_len: usize,
    /// Distance between frame starts (`S = L − O`), also the length of a segment.
    pub step: usize,
    /// The plugin's fixed latency: `L + S`.
    pub latency: usize,
    /// Dry/wet crossfade length in samples (shorter than a segment).
    pub ramp: usize,
}

impl Framing {
    /// The framing at `sample_rate` (a supported rate) for the default settings' overlap, which
    /// is what the command line uses.
    pub fn new(sample_rate: u32) -> Framing {
        let overlap_seconds = SeparationSettings::default_preset().overlap_seconds;
        let geometry = FrameGeometry::at_rate(sample_rate.max(1), overlap_seconds)
            .or_else(|_| FrameGeometry::new(2, 0))
            .expect("a 2-sample frame without overlap is valid");
        let (frame_len, step) = (geometry.frame_len(), geometry.step());
        let ramp = ((RAMP_SECONDS * f64::from(sample_rate)).round() as usize).clamp(1, (step / 2).max(1));
        Framing {
            geometry,
            frame_len,
            step,
            latency: frame_len + step,
            ramp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_frame_plus_hop_at_every_rate() {
        for rate in [44_100u32, 48_000, 88_200, 96_000, 192_000, 384_000] {
            let f = Framing::new(rate);
            assert_eq!(f.frame_len, (5.0 * f64::from(rate)).round() as usize);
            assert_eq!(f.geometry.overlap(), (0.5 * f64::from(rate)).round() as usize);
            assert_eq!(f.latency, f.frame_len + f.step);
            assert!(f.ramp < f.step);
        }
    }
}
