//! Langevin separation (SGLD): each stem is a Markov chain that climbs its prior's log-density
//! and the mixture's likelihood, with Gaussian noise added at every step, instead of Adam's
//! descent on the data term in the priors' latent spaces. Frank & Ilse separate this way with
//! time-domain priors (their Algorithm 1); here the chains move over magnitude spectrograms, in
//! the magnitude or the log-magnitude domain, and need each prior's score ∇ₛ log p(s).
//!
//! Three update rules, for a step size η, a likelihood width σ, noise ε ~ N(0, I) and the mixture
//! m = Σᵢ sᵢ the chains must explain (v is a stem in the chosen domain, g its prior score there):
//! - **as written** (Algorithm 1): Δvₖ = vₖ + η·gₖ + 2√η·ε for every stem, then
//!   vₖ ← Δvₖ − (η/σ²)·(m − (1/N)·Σᵢ vᵢ), with m and the vᵢ before the step in the same domain;
//! - **textbook, Gaussian likelihood**: vₖ ← vₖ + η·(gₖ + ∂/∂vₖ log N(m; Σᵢ sᵢ, σ²)) + √(2η)·ε,
//!   whose stationary law is the posterior p(s₁…s_N | m) at temperature σ²;
//! - **textbook, KL likelihood**: the same with the data term the Adam search minimises,
//!   log p(m | s) ∝ −D(m ‖ Σᵢ sᵢ)/σ².
//!
//! The chains start from the mixture split evenly. In the magnitude domain a stem is kept at or
//! above the priors' floor F (CONTRACT.md: they model ln(|X| + F)); in the log-magnitude domain
//! it is exp(v), positive by construction.

use super::chain_settings::{LangevinDomain, LangevinForm, LangevinSettings};
use super::gaussian_noise::GaussianNoise;
use super::latent_search::{check_search_shapes, Progress, SearchError};
use super::objective::{kl_divergence, KL_EPSILON};
use super::step_halving::StepHalving;
use crate::engine::constants::BINS;
use std::sync::atomic::{AtomicBool, Ordering};

/// The magnitude floor of the priors' data space (`magnitude_scaling.floor`).
pub const MAGNITUDE_FLOOR: f32 = 1e-5;

/// Decay of the preconditioner's running mean of squared gradients.
const PRECONDITIONER_DECAY: f32 = 0.99;
/// The RMS gradient (per unit of the chain's domain) below which the preconditioner leaves a step
/// as it is: it only ever shortens steps, so an element whose gradient vanishes (at a mode, or
/// where every stem already explains the mixture) does not get an unbounded step.
const PRECONDITIONER_FLOOR: f32 = 1.0;

/// Each stem's score ∇ₛ log p(s) with respect to its magnitudes: the priors' `score` graphs,
/// or a known density in tests.
pub trait ScoreSource {
    /// How many stems it scores.
    fn stem_count(&self) -> usize;

    /// Writes every stem's score at `stems[k]` (`[513, frames]` bin-major magnitudes) into
    /// `scores[k]`.
    fn scores_into(
        &mut self,
        stems: &[Vec<f32>],
        frames: usize,
        scores: &mut [Vec<f32>],
    ) -> Result<(), SearchError>;
}

/// The chains' buffers for a fixed number of stems and frames, allocated once and reused.
#[derive(Debug)]
pub struct LangevinSearch {
    settings: LangevinSettings,
    /// STFT frames per separation frame.
    frames: usize,
    /// Each chain's state in the chosen domain.
    chains: Vec<Vec<f32>>,
    /// Each stem's magnitudes at the chain's state (what the scores are taken at).
    stems: Vec<Vec<f32>>,
    /// Each stem's prior score with respect to its magnitudes.
    scores: Vec<Vec<f32>>,
    /// Σᵢ sᵢ.
    sum: Vec<f32>,
    /// The mixture in the chosen domain (for the as-written rule).
    mixture_in_domain: Vec<f32>,
    /// (1/N)·Σᵢ vᵢ before the step (for the as-written rule).
    chain_mean: Vec<f32>,
    /// One stem's noise for the current step.
    noise_buffer: Vec<f32>,
    /// One stem's gradient (prior and data term) for the current step.
    gradient: Vec<f32>,
    /// Each chain's running mean of squared gradients (the preconditioner's V).
    squared_gradients: Vec<Vec<f32>>,
    /// Each stem's running sum of magnitudes over the averaged steps.
    stem_sums: Vec<Vec<f32>>,
    /// Steps the preconditioner has adapted over in the current run (its bias correction).
    steps_taken: i32,
    /// The noise stream, continued from frame to frame.
    noise: GaussianNoise,
    /// The factor of the set step size the chains run at, kept from frame to frame.
    halving: StepHalving,
}

impl LangevinSearch {
    /// Buffers for `n_stems` chains over `frames` STFT frames.
    pub fn new(n_stems: usize, frames: usize, settings: LangevinSettings) -> Self {
        let len = BINS * frames;
        let buffers = || (0..n_stems).map(|_| vec![0.0f32; len]).collect::<Vec<_>>();
        LangevinSearch {
            settings,
            frames,
            chains: buffers(),
            stems: buffers(),
            scores: buffers(),
            sum: vec![0.0; len],
            mixture_in_domain: vec![0.0; len],
            chain_mean: vec![0.0; len],
            noise_buffer: vec![0.0; len],
            gradient: vec![0.0; len],
            squared_gradients: buffers(),
            stem_sums: buffers(),
            steps_taken: 0,
            noise: GaussianNoise::new(settings.seed),
            halving: StepHalving::default(),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &LangevinSettings {
        &self.settings
    }

    /// The stems' magnitudes after the last run, one `[513, frames]` buffer per stem.
    pub fn stems(&self) -> &[Vec<f32>] {
        &self.stems
    }

    /// The factor of the settings' step size the chains run at (1 unless a frame diverged).
    pub fn step_scale(&self) -> f32 {
        self.halving.scale()
    }

    /// Runs the chains for one frame from the mixture split evenly: `settings.steps` steps at
    /// [`Self::step_scale`]·η, the cancel flag checked before each, halving the step after a
    /// divergence ([`super::step_halving`]). The result is in [`LangevinSearch::stems`].
    pub fn run<S: ScoreSource>(
        &mut self,
        source: &mut S,
        mix_mag: &[f32],
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        self.check_shapes(source, mix_mag)?;
        let mut halving = self.halving;
        let eta = self.settings.eta;
        let result = halving.run(eta, |scale| {
            self.run_at(source, mix_mag, eta * scale, progress, cancel)
        });
        self.halving = halving;
        result
    }

    /// One try of a frame at step size `eta`.
    fn run_at<S: ScoreSource>(
        &mut self,
        source: &mut S,
        mix_mag: &[f32],
        eta: f32,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        self.start(mix_mag);
        let total = self.settings.steps;
        let averaged_from = total / 2;
        progress.start(total);
        for step in 0..total {
            if cancel.load(Ordering::Relaxed) {
                return Err(SearchError::Cancelled);
            }
            self.step(source, mix_mag, eta)?;
            if self.settings.average && step >= averaged_from {
                for (sum, stem) in self.stem_sums.iter_mut().zip(&self.stems) {
                    sum.iter_mut().zip(stem).for_each(|(a, &s)| *a += s);
                }
            }
            progress.record(step + 1, kl_divergence(mix_mag, &self.sum));
        }
        if self.settings.average {
            let scale = 1.0 / (total - averaged_from) as f32;
            for (stem, sum) in self.stems.iter_mut().zip(&self.stem_sums) {
                stem.iter_mut().zip(sum).for_each(|(s, &a)| *s = a * scale);
            }
        }
        Ok(())
    }

    fn check_shapes<S: ScoreSource>(&self, source: &S, mix_mag: &[f32]) -> Result<(), SearchError> {
        check_search_shapes(self.chains.len(), self.frames, source.stem_count(), mix_mag.len())
    }

    /// Every chain at the mixture split evenly; the mixture in the chains' domain.
    fn start(&mut self, mix_mag: &[f32]) {
        let share = 1.0 / self.chains.len() as f32;
        let domain = self.settings.domain;
        for chain in &mut self.chains {
            for (v, &m) in chain.iter_mut().zip(mix_mag) {
                *v = to_domain(domain, (m * share).max(MAGNITUDE_FLOOR));
            }
        }
        for (v, &m) in self.mixture_in_domain.iter_mut().zip(mix_mag) {
            *v = to_domain(domain, m.max(MAGNITUDE_FLOOR));
        }
        self.squared_gradients.iter_mut().for_each(|v| v.fill(0.0));
        self.stem_sums.iter_mut().for_each(|v| v.fill(0.0));
        self.steps_taken = 0;
        self.update_stems();
    }

    /// The stems' magnitudes and their sum at the chains' states.
    fn update_stems(&mut self) {
        let domain = self.settings.domain;
        for (chain, stem) in self.chains.iter().zip(&mut self.stems) {
            for (s, &v) in stem.iter_mut().zip(chain) {
                *s = from_domain(domain, v);
            }
        }
        self.sum.fill(0.0);
        for stem in &self.stems {
            for (sum, &s) in self.sum.iter_mut().zip(stem) {
                *sum += s;
            }
        }
    }

    /// One step of every chain under the configured rule, at step size `eta`.
    fn step<S: ScoreSource>(&mut self, source: &mut S, mix_mag: &[f32], eta: f32) -> Result<(), SearchError> {
        let LangevinSettings {
            sigma, form, domain, ..
        } = self.settings;
        source.scores_into(&self.stems, self.frames, &mut self.scores)?;
        let weight = 1.0 / (sigma * sigma);
        if form == LangevinForm::AsWritten {
            let share = 1.0 / self.chains.len() as f32;
            self.chain_mean.fill(0.0);
            for chain in &self.chains {
                for (mean, &v) in self.chain_mean.iter_mut().zip(chain) {
                    *mean += share * v;
                }
            }
        }
        let noise_scale = match form {
            LangevinForm::AsWritten => 2.0 * eta.sqrt(),
            LangevinForm::TextbookGaussian | LangevinForm::TextbookKl => (2.0 * eta).sqrt(),
        };
        let precondition = self.settings.preconditioned && form != LangevinForm::AsWritten;
        // The preconditioner adapts over the first half of the steps and is then held, so the
        // second half (the one averaged) is a Langevin chain with a fixed metric, whose
        // stationary law is the posterior; a metric that keeps moving would bias it.
        let adapting = self.steps_taken < (self.settings.steps as i32 / 2).max(1);
        if adapting {
            self.steps_taken += 1;
        }
        // The running mean starts at zero: divide by the weight it has gathered (as Adam does).
        let bias_correction = 1.0 / (1.0 - PRECONDITIONER_DECAY.powi(self.steps_taken));
        for k in 0..self.chains.len() {
            self.noise.fill(&mut self.noise_buffer);
            let (stem, score) = (&self.stems[k], &self.scores[k]);
            for i in 0..self.gradient.len() {
                let prior = score_in_domain(domain, stem[i], score[i]);
                let data = match form {
                    LangevinForm::AsWritten => -weight * (self.mixture_in_domain[i] - self.chain_mean[i]),
                    LangevinForm::TextbookGaussian => {
                        chain_rule(domain, stem[i], weight * (mix_mag[i] - self.sum[i]))
                    }
                    LangevinForm::TextbookKl => chain_rule(
                        domain,
                        stem[i],
                        weight * (mix_mag[i] / (self.sum[i] + KL_EPSILON) - 1.0),
                    ),
                };
                self.gradient[i] = match form {
                    // Line 4's prior step; line 7's constraint step is added below, unscaled.
                    LangevinForm::AsWritten => prior,
                    _ => prior + data,
                };
                if form == LangevinForm::AsWritten {
                    self.noise_buffer[i] = noise_scale * self.noise_buffer[i] + eta * data;
                } else {
                    self.noise_buffer[i] *= noise_scale;
                }
            }
            let chain = &mut self.chains[k];
            if precondition {
                let v = &mut self.squared_gradients[k];
                if adapting {
                    for (v, &g) in v.iter_mut().zip(&self.gradient) {
                        *v = PRECONDITIONER_DECAY * *v + (1.0 - PRECONDITIONER_DECAY) * g * g;
                    }
                }
                let steps = chain
                    .iter_mut()
                    .zip(v.iter())
                    .zip(&self.gradient)
                    .zip(&self.noise_buffer);
                for (((x, &v), &gradient), &noise) in steps {
                    let metric = 1.0 / (v * bias_correction).sqrt().max(PRECONDITIONER_FLOOR);
                    *x = keep_in_domain(domain, *x + eta * metric * gradient + metric.sqrt() * noise);
                }
            } else {
                let steps = chain.iter_mut().zip(&self.gradient).zip(&self.noise_buffer);
                for ((x, &gradient), &noise) in steps {
                    *x = keep_in_domain(domain, *x + eta * gradient + noise);
                }
            }
        }
        self.update_stems();
        if self.sum.iter().any(|v| !v.is_finite()) {
            return Err(SearchError::NotFinite {
                what: "Langevin chain",
            });
        }
        Ok(())
    }
}

/// A magnitude in the chains' domain.
fn to_domain(domain: LangevinDomain, magnitude: f32) -> f32 {
    match domain {
        LangevinDomain::Magnitude => magnitude,
        LangevinDomain::LogMagnitude => magnitude.ln(),
    }
}

/// A chain's value as a magnitude.
fn from_domain(domain: LangevinDomain, v: f32) -> f32 {
    match domain {
        LangevinDomain::Magnitude => v,
        LangevinDomain::LogMagnitude => v.exp(),
    }
}

/// Keeps a magnitude chain at or above the floor; a log chain is unconstrained.
fn keep_in_domain(domain: LangevinDomain, v: f32) -> f32 {
    match domain {
        LangevinDomain::Magnitude => v.max(MAGNITUDE_FLOOR),
        LangevinDomain::LogMagnitude => v,
    }
}

/// ∂/∂v of something whose gradient with respect to the magnitude s is `ds_gradient`.
fn chain_rule(domain: LangevinDomain, s: f32, ds_gradient: f32) -> f32 {
    match domain {
        LangevinDomain::Magnitude => ds_gradient,
        LangevinDomain::LogMagnitude => ds_gradient * s,
    }
}

/// The prior's score in the chains' domain from its score ∂ log p/∂s: in the log domain the
/// density of u = ln s is p(eᵘ)·eᵘ, whose score is s·∂ log p/∂s + 1.
fn score_in_domain(domain: LangevinDomain, s: f32, ds_score: f32) -> f32 {
    match domain {
        LangevinDomain::Magnitude => ds_score,
        LangevinDomain::LogMagnitude => s * ds_score + 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent Gaussian stems, N(μₖ, τ²) per magnitude: score (μₖ − s)/τ².
    struct GaussianStems {
        means: Vec<f32>,
        tau: f32,
    }

    impl ScoreSource for GaussianStems {
        fn stem_count(&self) -> usize {
            self.means.len()
        }

        fn scores_into(
            &mut self,
            stems: &[Vec<f32>],
            _frames: usize,
            scores: &mut [Vec<f32>],
        ) -> Result<(), SearchError> {
            for ((stem, score), &mean) in stems.iter().zip(scores.iter_mut()).zip(&self.means) {
                for (g, &s) in score.iter_mut().zip(stem) {
                    *g = (mean - s) / (self.tau * self.tau);
                }
            }
            Ok(())
        }
    }

    fn settings(form: LangevinForm, domain: LangevinDomain, steps: usize) -> LangevinSettings {
        LangevinSettings {
            steps,
            eta: 0.002,
            sigma: 0.5,
            form,
            domain,
            seed: 11,
            preconditioned: false,
            average: false,
        }
    }

    /// Two Gaussian stems N(3, 1) and N(1, 1) and a Gaussian likelihood m = s₁ + s₂ + N(0, σ²):
    /// the posterior mean of sₖ is μₖ + (m − μ₁ − μ₂)·τ²/(2τ² + σ²). The textbook chains'
    /// time averages (after a burn-in) land on it, for every bin.
    #[test]
    fn textbook_chains_sample_the_gaussian_posterior() {
        let frames = 2;
        let len = BINS * frames;
        let mix = vec![6.0f32; len];
        let mut source = GaussianStems {
            means: vec![3.0, 1.0],
            tau: 1.0,
        };
        for preconditioned in [false, true] {
            posterior_means_match(preconditioned, frames, &mix, &mut source);
        }
    }

    fn posterior_means_match(preconditioned: bool, frames: usize, mix: &[f32], source: &mut GaussianStems) {
        let len = BINS * frames;
        let steps = 6000;
        let mut search = LangevinSearch::new(
            2,
            frames,
            LangevinSettings {
                preconditioned,
                // Large enough that the slowest direction (s₁ − s₂, held only by the priors)
                // mixes many times over in the steps, small enough for little discretisation bias.
                eta: 0.006,
                ..settings(LangevinForm::TextbookGaussian, LangevinDomain::Magnitude, steps)
            },
        );
        search.check_shapes(source, mix).unwrap();
        search.start(mix);
        let mut averages = vec![vec![0.0f64; len]; 2];
        let burn_in = steps / 2;
        let eta = search.settings.eta;
        for step in 0..steps {
            search.step(source, mix, eta).unwrap();
            if step >= burn_in {
                for (avg, stem) in averages.iter_mut().zip(search.stems()) {
                    for (a, &s) in avg.iter_mut().zip(stem) {
                        *a += f64::from(s) / (steps - burn_in) as f64;
                    }
                }
            }
        }
        let shift = (6.0 - 4.0) * 1.0 / (2.0 + 0.25);
        for (avg, mean) in averages.iter().zip([3.0, 1.0]) {
            let expected = mean + shift;
            let bin_mean = avg.iter().sum::<f64>() / len as f64;
            assert!(
                (bin_mean - expected).abs() < 0.05,
                "preconditioned {preconditioned}: mean {bin_mean}, expected {expected}"
            );
        }
    }

    /// The same seed gives the same stems; another seed other stems; every form and domain
    /// runs to finite stems, reports its progress and stops when cancelled.
    #[test]
    fn chains_are_deterministic_finite_and_cancellable() {
        let frames = 4;
        let mix: Vec<f32> = (0..BINS * frames).map(|i| 1.0 + (i % 7) as f32).collect();
        for form in [
            LangevinForm::AsWritten,
            LangevinForm::TextbookGaussian,
            LangevinForm::TextbookKl,
        ] {
            for domain in [LangevinDomain::Magnitude, LangevinDomain::LogMagnitude] {
                let run = |seed: u64| {
                    let mut source = GaussianStems {
                        means: vec![2.0, 1.0, 0.5],
                        tau: 2.0,
                    };
                    let mut s = LangevinSettings {
                        seed,
                        preconditioned: seed.is_multiple_of(2),
                        average: true,
                        ..settings(form, domain, 20)
                    };
                    s.eta = 1e-3;
                    let mut search = LangevinSearch::new(3, frames, s);
                    let progress = Progress::new();
                    search
                        .run(&mut source, &mix, &progress, &AtomicBool::new(false))
                        .unwrap();
                    assert_eq!(progress.iteration(), 20);
                    search.stems().to_vec()
                };
                let (a, b, c) = (run(1), run(1), run(3));
                assert_eq!(a, b, "{form:?} {domain:?}");
                assert_ne!(a, c, "{form:?} {domain:?}");
                assert!(a.iter().flatten().all(|v| v.is_finite() && *v >= 0.0));
            }
        }
        let mut source = GaussianStems {
            means: vec![1.0],
            tau: 1.0,
        };
        let mut search = LangevinSearch::new(
            1,
            frames,
            settings(LangevinForm::TextbookKl, LangevinDomain::LogMagnitude, 5),
        );
        let result = search.run(&mut source, &mix, &Progress::new(), &AtomicBool::new(true));
        assert!(matches!(result, Err(SearchError::Cancelled)));
    }

    /// Gaussian stems whose score, like a flow's far outside its data, is not finite once a
    /// magnitude passes `limit`.
    struct BoundedGaussianStems {
        gaussians: GaussianStems,
        limit: f32,
    }

    impl ScoreSource for BoundedGaussianStems {
        fn stem_count(&self) -> usize {
            self.gaussians.stem_count()
        }

        fn scores_into(
            &mut self,
            stems: &[Vec<f32>],
            frames: usize,
            scores: &mut [Vec<f32>],
        ) -> Result<(), SearchError> {
            if stems.iter().flatten().any(|&s| s > self.limit) {
                return Err(SearchError::Prior(
                    crate::engine::priors::prior_error::PriorError::NonFinite {
                        graph: "score",
                        tensor: "score",
                    },
                ));
            }
            self.gaussians.scores_into(stems, frames, scores)
        }
    }

    /// Two stems N(100, 1) and N(60, 1), a Gaussian likelihood of width 1 and the mixture 320, in
    /// magnitudes with plain textbook steps: the drift's eigenvalues are 1 (the stems' difference)
    /// and 3 (their sum), so η 1 makes the sum's deviation double and change sign at every step (×(1 − 3η))
    /// until a stem passes 200, where the score fails, and η 0.5 contracts it (×(−0.5)) to the
    /// posterior mean (153.3, 113.3). The frame finishes at half the step, near the posterior;
    /// the next frame starts there; a step no halving saves fails with both sizes it tried.
    #[test]
    fn a_diverging_step_is_halved_until_the_chains_hold() {
        let frames = 2;
        let mix = vec![320.0f32; BINS * frames];
        let source = || BoundedGaussianStems {
            gaussians: GaussianStems {
                means: vec![100.0, 60.0],
                tau: 1.0,
            },
            limit: 200.0,
        };
        let diverging = LangevinSettings {
            eta: 1.0,
            sigma: 1.0,
            ..settings(LangevinForm::TextbookGaussian, LangevinDomain::Magnitude, 100)
        };
        let (progress, cancel) = (Progress::new(), AtomicBool::new(false));
        let mut search = LangevinSearch::new(2, frames, diverging);
        search.run(&mut source(), &mix, &progress, &cancel).unwrap();
        assert_eq!(search.step_scale(), 0.5);
        assert_eq!(progress.iteration(), 100, "the last try ran every step");
        for (stem, expected) in search.stems().iter().zip([153.33f32, 113.33]) {
            let mean = stem.iter().sum::<f32>() / stem.len() as f32;
            assert!(
                (mean - expected).abs() < 1.0,
                "stem mean {mean}, expected {expected}"
            );
        }
        search.run(&mut source(), &mix, &progress, &cancel).unwrap();
        assert_eq!(search.step_scale(), 0.5, "the next frame keeps the halved step");

        let hopeless = LangevinSettings {
            eta: 16.0,
            ..diverging
        };
        let mut search = LangevinSearch::new(2, frames, hopeless);
        match search.run(&mut source(), &mix, &progress, &cancel) {
            Err(SearchError::Diverged { first, last }) => assert_eq!((first, last), (16.0, 2.0)),
            other => panic!("expected Diverged, found {other:?}"),
        }
    }
}
