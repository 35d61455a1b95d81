//! The latency and dry/wet ramp of a live stream of separated frames (the plugin's), around the
//! engine's framing; `bench` reports the same latency.
//!
//! Frame `j` covers input samples `[j·S, j·S + L)` counted from the first sample processed after
//! activation or reset ([`FrameGeometry`], the command line's framing). The part of the output
//! that only frames `j − 1` and `j` touch, `[j·S, (j + 1)·S)`, is segment `j`: it is final once
//! frame `j` is separated, i.e. once input sample `j·S + L − 1` has arrived and the worker has
//! finished. The plugin therefore delays everything by `L + A` samples: `L` to collect a frame
//! and `A`, the processing allowance, for the worker to separate it. `A` is at most one hop `S`
//! (a worker slower than the hop falls behind whatever the latency) and can be set lower when
//! the worker is fast, for less latency. A short ramp before each segment decides whether the
//! next segment is ready; if not, the outputs crossfade to the dry mix (see `stream.rs`).

use crate::engine::bounds::Bounds;
use crate::engine::search::settings::{SeparationSettings, DEFAULT_OVERLAP_SECONDS, LIVE_FRAME_SECONDS};
use crate::engine::signal::frames::FrameGeometry;

/// Length of the dry/wet crossfade, in seconds.
pub const RAMP_SECONDS: f64 = 0.01;

/// The hop between a live stream's frames: a frame's worker time can never exceed it.
pub const HOP_SECONDS: f64 = LIVE_FRAME_SECONDS - DEFAULT_OVERLAP_SECONDS;

/// Processing allowances the plugin offers, in seconds: from half a second (a fast worker on an
/// idle machine) to the whole hop.
pub const PROCESSING_ALLOWANCE: Bounds = Bounds::closed(0.5, HOP_SECONDS);

/// The default processing allowance: about twice the slowest frame of the realtime preset in the
/// paced render of README, "Benchmark" (its current figure is there), so a slow frame on a busy
/// machine is still in time; with the default 2-s frame, a latency of 3 s.
pub const DEFAULT_PROCESSING_ALLOWANCE_SECONDS: f64 = 1.0;

/// Frame geometry, latency and ramp at one sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Where frames start and how they crossfade: the engine's framing at this rate.
    pub geometry: FrameGeometry,
    /// Samples in a frame (`L`).
    pub frame_len: usize,
    /// Distance between frame starts (`S = L − O`), also the length of a segment.
    pub step: usize,
    /// Samples the worker has to separate a frame before its segment plays (`A ≤ S`).
    pub allowance: usize,
    /// The plugin's fixed latency: `L + A`.
    pub latency: usize,
    /// Dry/wet crossfade length in samples (shorter than a segment).
    pub ramp: usize,
}

impl Framing {
    /// The framing at `sample_rate` (a supported rate) for the realtime preset's frame and
    /// overlap, which is what `stemflow separate --preset realtime` uses, with
    /// `allowance_seconds` of processing time per frame (held to [`PROCESSING_ALLOWANCE`]; not
    /// finite: the default).
    pub fn new(sample_rate: u32, allowance_seconds: f64) -> Framing {
        let defaults = SeparationSettings::realtime_preset();
        let geometry = FrameGeometry::at_rate(
            sample_rate.max(1),
            defaults.frame_seconds,
            defaults.overlap_seconds,
        )
        .or_else(|_| FrameGeometry::new(2, 0))
        .expect("a 2-sample frame without overlap is valid");
        let (frame_len, step) = (geometry.frame_len(), geometry.step());
        let ramp = ((RAMP_SECONDS * f64::from(sample_rate)).round() as usize).clamp(1, (step / 2).max(1));
        let seconds = if allowance_seconds.is_finite() {
            allowance_seconds.clamp(PROCESSING_ALLOWANCE.min, PROCESSING_ALLOWANCE.max)
        } else {
            DEFAULT_PROCESSING_ALLOWANCE_SECONDS
        };
        let allowance = ((seconds * f64::from(sample_rate)).round() as usize).clamp(1, step);
        Framing {
            geometry,
            frame_len,
            step,
            allowance,
            latency: frame_len + allowance,
            ramp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_frame_plus_allowance_at_every_rate() {
        for rate in [44_100u32, 48_000, 88_200, 96_000, 192_000, 384_000] {
            let f = Framing::new(rate, DEFAULT_PROCESSING_ALLOWANCE_SECONDS);
            assert_eq!(f.frame_len, (2.0 * f64::from(rate)).round() as usize);
            assert_eq!(f.geometry.overlap(), (0.5 * f64::from(rate)).round() as usize);
            assert_eq!(f.allowance, f64::from(rate).round() as usize);
            assert_eq!(f.latency, 3 * rate as usize);
            assert!(f.ramp < f.step);
        }
    }

    #[test]
    fn the_allowance_is_held_between_half_a_second_and_the_hop() {
        let rate = 48_000u32;
        let hop = Framing::new(rate, 1.0).step;
        assert_eq!(hop, 72_000);
        assert_eq!(Framing::new(rate, 1.5).allowance, hop);
        assert_eq!(Framing::new(rate, 60.0).allowance, hop);
        assert_eq!(Framing::new(rate, 0.0).allowance, rate as usize / 2);
        assert_eq!(Framing::new(rate, -2.0).allowance, rate as usize / 2);
        assert_eq!(Framing::new(rate, f64::NAN).allowance, rate as usize);
        assert_eq!(
            Framing::new(rate, 0.75).latency,
            2 * rate as usize + 3 * rate as usize / 4
        );
    }
}
