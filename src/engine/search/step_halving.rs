//! Restarting a frame's Langevin chains with half the step size after they diverge.
//!
//! A step too large for the priors' scores makes Langevin chains overflow within a few steps.
//! The frame is then run again from its start with the step size halved, up to
//! [`STEP_HALVINGS`] times, and the chains keep the factor they finished with for the next frame
//! ([`StepHalving::scale`]), with a warning giving both step sizes, so later frames do not
//! diverge first.
//! Every Langevin separator (the spectrogram chains, the annealed spectrogram chains and the
//! waveform chains) runs its frames through one [`StepHalving`].

use super::latent_search::SearchError;
use crate::engine::priors::prior_error::PriorError;

/// How many times a frame's chains are restarted with half the step size after they diverge
/// before the frame fails: the last try runs at η / 2^`STEP_HALVINGS`. Three halvings cover a
/// step size set up to eight times too large; a setting further off is an error to fix, not a
/// cost to pay on every frame.
pub const STEP_HALVINGS: u32 = 3;

/// The factor of the set step size a separator's chains run at, carried from frame to frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepHalving {
    /// 1 until a frame's chains diverge, then the halved factor that frame finished with.
    scale: f32,
}

impl Default for StepHalving {
    fn default() -> Self {
        StepHalving { scale: 1.0 }
    }
}

impl StepHalving {
    /// The factor of the settings' step size the chains run at (1 unless a frame diverged).
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Runs `attempt(scale)` (one frame from its start, every step size times `scale`) from
    /// [`Self::scale`], halving the scale after each divergence up to [`STEP_HALVINGS`] times and
    /// keeping the one it finished with (and warning when it is smaller than before); or
    /// [`SearchError::Diverged`] with the step sizes (`eta`
    /// times the scales) it tried. Any other error is returned as it is, at once.
    pub fn run(
        &mut self,
        eta: f32,
        mut attempt: impl FnMut(f32) -> Result<(), SearchError>,
    ) -> Result<(), SearchError> {
        let first = self.scale;
        let (mut scale, mut halvings) = (first, 0);
        loop {
            match attempt(scale) {
                Ok(()) => {
                    if scale < first {
                        log::warn!(
                            "the Langevin chains diverged at step size {:e}; this frame and the next run at {:e}",
                            eta * first,
                            eta * scale
                        );
                    }
                    self.scale = scale;
                    return Ok(());
                }
                Err(error) if !is_divergence(&error) => return Err(error),
                Err(_) if halvings == STEP_HALVINGS => {
                    return Err(SearchError::Diverged {
                        first: eta * first,
                        last: eta * scale,
                    })
                }
                Err(_) => {
                    scale *= 0.5;
                    halvings += 1;
                }
            }
        }
    }
}

/// Whether `error` is the chains leaving the finite numbers — their own state, or a score graph
/// given a state it overflows on — rather than a fault a smaller step would not mend.
fn is_divergence(error: &SearchError) -> bool {
    matches!(
        error,
        SearchError::NotFinite { .. } | SearchError::Prior(PriorError::NonFinite { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_finite() -> SearchError {
        SearchError::NotFinite { what: "test chain" }
    }

    #[test]
    fn a_run_that_holds_keeps_its_scale() {
        let mut halving = StepHalving::default();
        let mut tried = Vec::new();
        halving
            .run(0.1, |scale| {
                tried.push(scale);
                Ok(())
            })
            .unwrap();
        assert_eq!(tried, [1.0]);
        assert_eq!(halving.scale(), 1.0);
    }

    #[test]
    fn divergences_halve_the_scale_and_the_next_frame_starts_there() {
        let mut halving = StepHalving::default();
        let mut tried = Vec::new();
        halving
            .run(0.1, |scale| {
                tried.push(scale);
                if scale > 0.3 {
                    Err(not_finite())
                } else {
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!(tried, [1.0, 0.5, 0.25]);
        assert_eq!(halving.scale(), 0.25);
        let mut next = Vec::new();
        halving
            .run(0.1, |scale| {
                next.push(scale);
                Ok(())
            })
            .unwrap();
        assert_eq!(next, [0.25]);
    }

    #[test]
    fn a_step_no_halving_saves_is_diverged_with_the_sizes_tried() {
        let mut halving = StepHalving::default();
        let mut tries = 0;
        let error = halving
            .run(0.8, |_| {
                tries += 1;
                Err(not_finite())
            })
            .unwrap_err();
        assert_eq!(tries, STEP_HALVINGS + 1);
        match error {
            SearchError::Diverged { first, last } => {
                assert_eq!(first, 0.8);
                assert_eq!(last, 0.1);
            }
            other => panic!("expected Diverged, found {other:?}"),
        }
        assert_eq!(halving.scale(), 1.0, "a failed frame leaves the scale as it was");
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut halving = StepHalving::default();
        let mut tries = 0;
        let error = halving
            .run(0.1, |_| {
                tries += 1;
                Err(SearchError::Cancelled)
            })
            .unwrap_err();
        assert_eq!(tries, 1);
        assert!(matches!(error, SearchError::Cancelled));
    }
}
