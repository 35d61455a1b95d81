//! Latency and framing of the streaming separation: where frames start, how long the plugin
//! delays its outputs, and the crossfade weights, all identical to the CLI's framing.
//!
//! Frame `j` covers input samples `[j·S, j·S + L)` counted from the first sample processed after
//! activation or reset, with `L` = 5 s and `S = L − O`, `O` = the settings' overlap (0.5 s). The
//! part of the output that only frames `j − 1` and `j` touch, `[j·S, (j + 1)·S)`, is segment `j`:
//! it is final once frame `j` is separated, i.e. once input sample `j·S + L − 1` has arrived and
//! the worker has finished. The plugin therefore delays everything by `L + S` samples: `L` to
//! collect a frame and `S` (one hop, the time the worker has per frame anyway to keep up) as the
//! processing allowance. A short ramp before each segment decides whether the next segment is
//! ready; if not, the outputs crossfade to the dry mix (see `stream.rs`).

use crate::engine::frames::FramePlan;
use crate::engine::separator::Separator;
use crate::engine::settings::SeparationSettings;

/// Length of the dry/wet crossfade, in seconds.
pub const RAMP_SECONDS: f64 = 0.01;

/// Frame, hop, overlap and latency at one sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Samples in a frame (`L`).
    pub frame_len: usize,
    /// Samples two neighbouring frames share (`O`).
    pub overlap: usize,
    /// Distance between frame starts (`S = L − O`), also the length of a segment.
    pub step: usize,
    /// The plugin's fixed latency: `L + S`.
    pub latency: usize,
    /// Dry/wet crossfade length in samples (shorter than a segment).
    pub ramp: usize,
    /// An endless plan with the same frame length and overlap, for its weights.
    plan: FramePlan,
}

impl Framing {
    /// The framing at `sample_rate` for the default settings' overlap (what the CLI uses).
    pub fn new(sample_rate: u32) -> Framing {
        let frame_len = Separator::frame_len_at(sample_rate).max(2);
        let overlap_seconds = SeparationSettings::default_preset().overlap_seconds;
        // The same rounding as `engine::separate_file`.
        let overlap = ((overlap_seconds * f64::from(sample_rate)).round() as usize).min(frame_len / 2);
        let step = frame_len - overlap;
        let plan = FramePlan::new(usize::MAX / 4, frame_len, overlap).expect("overlap ≤ frame_len / 2");
        let ramp = ((RAMP_SECONDS * f64::from(sample_rate)).round() as usize).clamp(1, step / 2);
        Framing {
            frame_len,
            overlap,
            step,
            latency: frame_len + step,
            ramp,
            plan,
        }
    }

    /// Weight of sample `offset` of frame `index` when the stream goes on (no frame is the last):
    /// exactly [`FramePlan::weight`] of the CLI's plan for every frame but the file's last.
    pub fn weight(&self, index: u64, offset: usize) -> f32 {
        // Past the first frame only whether `index > 0` matters to the weights.
        self.plan.weight(index.min(2) as usize, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_frame_plus_hop_at_every_rate() {
        for rate in [44_100u32, 48_000, 88_200, 96_000, 192_000] {
            let f = Framing::new(rate);
            assert_eq!(f.frame_len, (5.0 * f64::from(rate)).round() as usize);
            assert_eq!(f.overlap, (0.5 * f64::from(rate)).round() as usize);
            assert_eq!(f.latency, f.frame_len + f.step);
            assert!(f.ramp < f.step);
        }
    }

    #[test]
    fn weights_of_neighbours_sum_to_one_and_match_the_plan() {
        let f = Framing::new(44_100);
        let plan = FramePlan::new(10 * f.frame_len, f.frame_len, f.overlap).unwrap();
        for k in [0, 1, f.overlap / 2, f.overlap - 1, f.overlap, f.step - 1] {
            assert_eq!(f.weight(0, k), plan.weight(0, k));
            assert_eq!(f.weight(3, k), plan.weight(3, k));
            assert_eq!(
                f.weight(3, f.step + k.min(f.overlap - 1)),
                plan.weight(3, f.step + k.min(f.overlap - 1))
            );
        }
        for k in 0..f.overlap {
            let sum = f.weight(4, f.step + k) + f.weight(5, k);
            assert!((sum - 1.0).abs() < 1e-6);
        }
    }
}
