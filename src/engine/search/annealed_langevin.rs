//! Annealed Langevin separation (after Jayaram & Thickstun, ICML 2020): one chain per stem over
//! its log-magnitudes, run down a ladder of noise levels σ₁ > … > σ_L under each prior's
//! noise-conditioned score (CONTRACT.md, "Noise-conditioned score"). At a large σ the prior is the
//! clean one smoothed by Gaussian noise, so its score points towards the instrument's data from
//! far away, where a prior trained on clean data is flat; each level starts from where the last
//! one ended.
//!
//! At level σ, for every stem k (v = ln s, m the mixture, Σ = Σᵢ sᵢ, ε ~ N(0, I)):
//!
//! vₖ ← vₖ + η_σ·(∇ᵥ log p_σ(vₖ) + (ln m − ln Σ)/(λσ)² · sₖ/Σ) + √(2η_σ)·ε,  η_σ = η·(σ/σ₁)²
//!
//! The data term is the gradient of a Gaussian likelihood of the mixture in the log domain,
//! log N(ln m; ln Σ, (λσ)²): annealed with the prior (a noisier prior explains the mixture more
//! loosely), and bounded by the stem's share sₖ/Σ ≤ 1, so loud and quiet bins take steps of one
//! scale, which a magnitude-domain likelihood does not give. The step shrinks with σ² (Song &
//! Ermon's rule), which keeps the steps' signal-to-noise ratio the same at every level. The
//! stems are the chains' mean over the last level (or their last state).

use super::chain_settings::AnnealedSettings;
use super::gaussian_noise::GaussianNoise;
use super::langevin::MAGNITUDE_FLOOR;
use super::latent_search::{check_search_shapes, Progress, SearchError};
use super::objective::kl_divergence;
use super::step_halving::StepHalving;
use crate::engine::constants::BINS;
use std::sync::atomic::{AtomicBool, Ordering};

/// The smallest mean squared gradient the preconditioner divides by: M is at most 10 (a
/// posterior width of about 3 nats of ln s).
const PRECONDITIONER_FLOOR: f32 = 0.1;
/// Decay of the preconditioner's running mean of squared gradients.
const PRECONDITIONER_DECAY: f32 = 0.8;

/// Each stem's noise-conditioned score ∇ₛ log p_σ(s): the priors' `noisy_score` graphs, or a known
/// density in tests.
pub trait NoisyScoreSource {
    /// How many stems it scores.
    fn stem_count(&self) -> usize;

    /// Writes every stem's score at noise level `sigma` and `stems[k]` (`[513, frames]`
    /// bin-major magnitudes) into `scores[k]`.
    fn noisy_scores_into(
        &mut self,
        stems: &[Vec<f32>],
        frames: usize,
        sigma: f32,
        scores: &mut [Vec<f32>],
    ) -> Result<(), SearchError>;
}

/// The chains' buffers for a fixed number of stems and frames, allocated once and reused.
#[derive(Debug)]
pub struct AnnealedSearch {
    settings: AnnealedSettings,
    /// STFT frames per separation frame.
    frames: usize,
    /// Each chain's log-magnitudes.
    chains: Vec<Vec<f32>>,
    /// Each stem's magnitudes at its chain's state.
    stems: Vec<Vec<f32>>,
    /// Each stem's noise-conditioned score with respect to its magnitudes.
    scores: Vec<Vec<f32>>,
    /// Σᵢ sᵢ.
    sum: Vec<f32>,
    /// ln m, the mixture's log-magnitudes (floored).
    log_mixture: Vec<f32>,
    /// One stem's noise for the current step.
    noise_buffer: Vec<f32>,
    /// One stem's gradient (prior and data term) for the current step.
    gradient: Vec<f32>,
    /// Each chain's running mean of squared gradients (the preconditioner's V).
    squared_gradients: Vec<Vec<f32>>,
    /// Steps the preconditioner has averaged over in the current run (its bias correction on the
    /// first level, where V starts from zero).
    adapted_steps: i32,
    /// Each stem's running sum of magnitudes over the averaged steps.
    stem_sums: Vec<Vec<f32>>,
    /// The noise stream, continued from frame to frame.
    noise: GaussianNoise,
    /// The factor of the set step size the chains run at, kept from frame to frame.
    halving: StepHalving,
}

impl AnnealedSearch {
    /// Buffers for `n_stems` chains over `frames` STFT frames.
    pub fn new(n_stems: usize, frames: usize, settings: AnnealedSettings) -> Self {
        let len = BINS * frames;
        let buffers = || (0..n_stems).map(|_| vec![0.0f32; len]).collect::<Vec<_>>();
        AnnealedSearch {
            settings,
            frames,
            chains: buffers(),
            stems: buffers(),
            scores: buffers(),
            sum: vec![0.0; len],
            log_mixture: vec![0.0; len],
            noise_buffer: vec![0.0; len],
            gradient: vec![0.0; len],
            squared_gradients: buffers(),
            adapted_steps: 0,
            stem_sums: buffers(),
            noise: GaussianNoise::new(settings.seed),
            halving: StepHalving::default(),
        }
    }

    /// The stems' magnitudes after the last run, one `[513, frames]` buffer per stem.
    pub fn stems(&self) -> &[Vec<f32>] {
        &self.stems
    }

    /// The settings in use.
    pub fn settings(&self) -> &AnnealedSettings {
        &self.settings
    }

    /// The factor of the settings' step size the chains run at (1 unless a frame diverged).
    pub fn step_scale(&self) -> f32 {
        self.halving.scale()
    }

    /// Runs the chains for one frame from the mixture split evenly, `steps_per_level` steps at
    /// each level of `ladder` (descending, every level > 0), the cancel flag checked before each,
    /// every step size scaled by [`Self::step_scale`] and halved after a divergence
    /// ([`super::step_halving`]). The result is in [`AnnealedSearch::stems`].
    pub fn run<S: NoisyScoreSource>(
        &mut self,
        source: &mut S,
        mix_mag: &[f32],
        ladder: &[f32],
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        check_search_shapes(self.chains.len(), self.frames, source.stem_count(), mix_mag.len())?;
        let mut halving = self.halving;
        let eta = self.settings.eta;
        let result = halving.run(eta, |scale| {
            self.run_at(source, mix_mag, ladder, eta * scale, progress, cancel)
        });
        self.halving = halving;
        result
    }

    /// One try of a frame with step size `eta` at the ladder's first level.
    fn run_at<S: NoisyScoreSource>(
        &mut self,
        source: &mut S,
        mix_mag: &[f32],
        ladder: &[f32],
        eta: f32,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        self.start(mix_mag);
        let per_level = self.settings.steps_per_level;
        let total = per_level * ladder.len();
        progress.start(total);
        let top = ladder.first().copied().unwrap_or(1.0);
        let mut done = 0;
        for (level, &sigma) in ladder.iter().enumerate() {
            let last_level = level + 1 == ladder.len();
            if level > 0 {
                let growth = (ladder[level - 1] / sigma).powi(2);
                self.squared_gradients
                    .iter_mut()
                    .for_each(|v| v.iter_mut().for_each(|v| *v *= growth));
            }
            for _ in 0..per_level {
                if cancel.load(Ordering::Relaxed) {
                    return Err(SearchError::Cancelled);
                }
                self.step(source, eta, sigma, top, level == 0)?;
                if self.settings.average && last_level {
                    for (sum, stem) in self.stem_sums.iter_mut().zip(&self.stems) {
                        sum.iter_mut().zip(stem).for_each(|(a, &s)| *a += s);
                    }
                }
                done += 1;
                progress.record(done, kl_divergence(mix_mag, &self.sum));
            }
        }
        if self.settings.average && per_level > 0 && !ladder.is_empty() {
            let scale = 1.0 / per_level as f32;
            for (stem, sum) in self.stems.iter_mut().zip(&self.stem_sums) {
                stem.iter_mut().zip(sum).for_each(|(s, &a)| *s = a * scale);
            }
        }
        Ok(())
    }

    /// Every chain at the mixture split evenly; ln m.
    fn start(&mut self, mix_mag: &[f32]) {
        let share = 1.0 / self.chains.len() as f32;
        for chain in &mut self.chains {
            for (v, &m) in chain.iter_mut().zip(mix_mag) {
                *v = (m * share).max(MAGNITUDE_FLOOR).ln();
            }
        }
        for (v, &m) in self.log_mixture.iter_mut().zip(mix_mag) {
            *v = m.max(MAGNITUDE_FLOOR).ln();
        }
        self.stem_sums.iter_mut().for_each(|v| v.fill(0.0));
        self.squared_gradients.iter_mut().for_each(|v| v.fill(0.0));
        self.adapted_steps = 0;
        self.update_stems();
    }

    /// The stems' magnitudes and their sum at the chains' states.
    fn update_stems(&mut self) {
        for (chain, stem) in self.chains.iter().zip(&mut self.stems) {
            for (s, &v) in stem.iter_mut().zip(chain) {
                *s = v.exp();
            }
        }
        self.sum.fill(0.0);
        for stem in &self.stems {
            for (sum, &s) in self.sum.iter_mut().zip(stem) {
                *sum += s;
            }
        }
    }

    /// One step of every chain at noise level `sigma` (`top` the ladder's first level, `eta` the
    /// step size there); `adapting` on the first level, where the preconditioner gathers its
    /// squared gradients.
    fn step<S: NoisyScoreSource>(
        &mut self,
        source: &mut S,
        eta: f32,
        sigma: f32,
        top: f32,
        adapting: bool,
    ) -> Result<(), SearchError> {
        source.noisy_scores_into(&self.stems, self.frames, sigma, &mut self.scores)?;
        let precondition = self.settings.preconditioned;
        // Preconditioned, the metric carries the σ² scaling; plain, the step does.
        let eta = if precondition {
            eta
        } else {
            eta * (sigma / top).powi(2)
        };
        let width = self.settings.likelihood_scale * sigma;
        let weight = 1.0 / (width * width);
        let noise_scale = (2.0 * eta).sqrt();
        if adapting {
            self.adapted_steps += 1;
        }
        // V starts at zero on the first level: divide by the weight it has gathered (as Adam does).
        let bias_correction = if adapting {
            1.0 / (1.0 - PRECONDITIONER_DECAY.powi(self.adapted_steps))
        } else {
            1.0
        };
        for k in 0..self.chains.len() {
            self.noise.fill(&mut self.noise_buffer);
            let (stem, score) = (&self.stems[k], &self.scores[k]);
            for i in 0..self.gradient.len() {
                // The density of v = ln s is p(eᵛ)·eᵛ: its score is s·∂ log p/∂s + 1.
                let prior = stem[i] * score[i] + 1.0;
                let total = self.sum[i].max(MAGNITUDE_FLOOR);
                let data = weight * (self.log_mixture[i] - total.ln()) * (stem[i] / total);
                self.gradient[i] = prior + data;
            }
            let chain = &mut self.chains[k];
            if precondition {
                let v = &mut self.squared_gradients[k];
                for (v, &g) in v.iter_mut().zip(&self.gradient) {
                    *v = PRECONDITIONER_DECAY * *v + (1.0 - PRECONDITIONER_DECAY) * g * g;
                }
                let steps = chain
                    .iter_mut()
                    .zip(v.iter())
                    .zip(&self.gradient)
                    .zip(&self.noise_buffer);
                for (((x, &v), &g), &noise) in steps {
                    let metric = 1.0 / (v * bias_correction).max(PRECONDITIONER_FLOOR);
                    *x += eta * metric * g + noise_scale * metric.sqrt() * noise;
                }
            } else {
                let steps = chain.iter_mut().zip(&self.gradient).zip(&self.noise_buffer);
                for ((x, &g), &noise) in steps {
                    *x += eta * g + noise_scale * noise;
                }
            }
        }
        self.update_stems();
        if self.sum.iter().any(|v| !v.is_finite()) {
            return Err(SearchError::NotFinite {
                what: "annealed Langevin chain",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stems whose log-magnitudes are independent Gaussians N(μₖ, τ²) convolved with the noise:
    /// N(μₖ, τ² + σ²) in v = ln s, so ∂ log p_σ/∂s = (1/s)·((μₖ − v)/(τ² + σ²) − 1).
    struct LogGaussianStems {
        means: Vec<f32>,
        tau: f32,
    }

    impl NoisyScoreSource for LogGaussianStems {
        fn stem_count(&self) -> usize {
            self.means.len()
        }

        fn noisy_scores_into(
            &mut self,
            stems: &[Vec<f32>],
            _frames: usize,
            sigma: f32,
            scores: &mut [Vec<f32>],
        ) -> Result<(), SearchError> {
            let var = self.tau * self.tau + sigma * sigma;
            for ((stem, score), &mean) in stems.iter().zip(scores.iter_mut()).zip(&self.means) {
                for (g, &s) in score.iter_mut().zip(stem) {
                    *g = ((mean - s.ln()) / var - 1.0) / s;
                }
            }
            Ok(())
        }
    }

    const LADDER: [f32; 5] = [1.0, 0.5, 0.25, 0.1, 0.05];

    /// Two stems whose priors sit at e³ and e¹ in every bin of two frames, and their sum.
    struct TwoStems {
        frames: usize,
        /// e³ and e¹.
        modes: [f32; 2],
        mix: Vec<f32>,
        source: LogGaussianStems,
    }

    impl TwoStems {
        /// A new search's frame: 60 plain steps a level at `eta`.
        fn run(&mut self, eta: f32) -> (AnnealedSearch, Progress, Result<(), SearchError>) {
            let settings = AnnealedSettings {
                steps_per_level: 60,
                eta,
                preconditioned: false,
                ..AnnealedSettings::DEFAULT
            };
            let mut search = AnnealedSearch::new(2, self.frames, settings);
            let progress = Progress::new();
            let cancel = AtomicBool::new(false);
            let result = search.run(&mut self.source, &self.mix, &LADDER, &progress, &cancel);
            (search, progress, result)
        }

        /// Each stem's mean over its bins.
        fn means(&self, search: &AnnealedSearch) -> [f32; 2] {
            let mean = |k: usize| search.stems()[k].iter().sum::<f32>() / self.mix.len() as f32;
            [mean(0), mean(1)]
        }
    }

    fn two_stems() -> TwoStems {
        let frames = 2;
        let modes = [3.0f32.exp(), 1.0f32.exp()];
        TwoStems {
            frames,
            modes,
            mix: vec![modes[0] + modes[1]; BINS * frames],
            source: LogGaussianStems {
                means: vec![3.0, 1.0],
                tau: 0.1,
            },
        }
    }

    /// Two stems whose priors sit at e³ and e¹ in every bin, a mixture that is their sum: the
    /// chains leave the even split and land near the priors' modes, and their sum explains the
    /// mixture.
    #[test]
    fn chains_move_from_the_even_split_to_the_priors_and_keep_the_mixture() {
        let mut two = two_stems();
        let (search, progress, result) = two.run(0.05);
        result.unwrap();
        assert_eq!(progress.iteration(), 60 * LADDER.len());
        let ([a, b], [mean_a, mean_b]) = (two.modes, two.means(&search));
        assert!((mean_a / a - 1.0).abs() < 0.05, "stem 0: {mean_a} against {a}");
        assert!((mean_b / b - 1.0).abs() < 0.15, "stem 1: {mean_b} against {b}");
        let (even_error, error) = ((a - b) / 2.0, (mean_a - a).abs());
        assert!(error < even_error / 10.0);
    }

    /// The same seed gives the same stems, another seed others; the run stops when cancelled.
    #[test]
    fn chains_are_deterministic_finite_and_cancellable() {
        let frames = 4;
        let mix: Vec<f32> = (0..BINS * frames).map(|i| 1.0 + (i % 7) as f32).collect();
        let run = |seed: u64| {
            let mut source = LogGaussianStems {
                means: vec![1.0, 0.0, -1.0],
                tau: 0.5,
            };
            let settings = AnnealedSettings {
                seed,
                steps_per_level: 4,
                ..AnnealedSettings::DEFAULT
            };
            let mut search = AnnealedSearch::new(3, frames, settings);
            search
                .run(
                    &mut source,
                    &mix,
                    &LADDER,
                    &Progress::new(),
                    &AtomicBool::new(false),
                )
                .unwrap();
            search.stems().to_vec()
        };
        let (a, b, c) = (run(1), run(1), run(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().flatten().all(|v| v.is_finite() && *v > 0.0));
        let mut source = LogGaussianStems {
            means: vec![1.0],
            tau: 1.0,
        };
        let mut search = AnnealedSearch::new(1, frames, AnnealedSettings::DEFAULT);
        let result = search.run(
            &mut source,
            &mix,
            &LADDER,
            &Progress::new(),
            &AtomicBool::new(true),
        );
        assert!(matches!(result, Err(SearchError::Cancelled)));
    }

    /// The first test's stems and mixture with plain steps: the prior's stiffness times the step
    /// is about η at the top level (1/(τ² + σ²) against η·σ²) and the likelihood's about
    /// 4η·Σₖ shareₖ² ≈ 3.2η, so η 0.8 overshoots by a factor near −2.3 a step until e^v
    /// overflows and 0.4 holds (near −0.7). The frame finishes at half the step with the stems
    /// at the priors; a step no halving saves fails with both sizes it tried.
    #[test]
    fn a_diverging_step_is_halved_until_the_chains_hold() {
        let mut two = two_stems();
        let (search, progress, result) = two.run(0.8);
        result.unwrap();
        assert_eq!(search.step_scale(), 0.5);
        assert_eq!(
            progress.iteration(),
            60 * LADDER.len(),
            "the last try ran every step"
        );
        for (mean, expected) in two.means(&search).into_iter().zip(two.modes) {
            assert!(
                (mean / expected - 1.0).abs() < 0.15,
                "stem mean {mean} against {expected}"
            );
        }
        match two.run(80.0).2 {
            Err(SearchError::Diverged { first, last }) => assert_eq!((first, last), (80.0, 10.0)),
            other => panic!("expected Diverged, found {other:?}"),
        }
    }
}
