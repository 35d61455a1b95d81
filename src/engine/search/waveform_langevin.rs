//! Langevin separation over raw waveforms, for time-domain priors (Frank & Ilse's FloWaveNet and
//! WaveNet priors): one chain per stem over the 22.05 kHz mono samples, moved by its prior's score
//! ∇ₓ log p(x) and a Gaussian likelihood of the mixture, with Gaussian noise at every step. The
//! chains' bookkeeping — buffers, the even-split start, the noise, the averaging — is one type,
//! [`WaveformChains`], for both the plain (SGLD) and the annealed schedule.
//!
//! With m the mixture waveform, sₖ the chains, N their number, ε ~ N(0, I) and gₖ the prior score:
//! - **as written** (Algorithm 1, the rule `langevin.rs` applies to spectrograms, here on
//!   samples): Δsₖ = sₖ + η·gₖ + 2√η·ε for every k, then sₖ ← Δsₖ − (η/σ²)·(m − (1/N)·Σᵢ sᵢ),
//!   the sᵢ before the step;
//! - **textbook, Gaussian likelihood**: sₖ ← sₖ + η·(gₖ + (m − Σᵢ sᵢ)/σ²) + √(2η)·ε, whose
//!   stationary law is the posterior p(s₁…s_N | m) under m = Σᵢ sᵢ + N(0, σ²I);
//! - **annealed** (after Jayaram & Thickstun), at each level σ of the priors' ladder σ₁ > … > σ_L,
//!   `steps_per_level` steps of sₖ ← sₖ + η_σ·(∇ log p_σ(sₖ) + (m − Σᵢ sᵢ)/(λσ)²) + √(2η_σ)·ε
//!   with η_σ = η·(σ/σ₁)² and p_σ the prior smoothed by N(0, σ²I).
//!
//! The KL rule of the spectrogram chains has no meaning for signed samples and is refused by the
//! separator; `LangevinSettings::domain` and the preconditioners (`preconditioned` of both
//! settings) are ignored here: the chains move in amplitude, with plain steps. The stems are the
//! chains' last state, or with `average` their mean over the second half of the steps (the last
//! level when annealed), an estimate of the posterior mean.
//!
//! A frame whose chains diverge is run again with half the step size
//! ([`super::step_halving`]).

use super::chain_settings::AnnealedSettings;
use super::chain_settings::{LangevinForm, LangevinSettings};
use super::gaussian_noise::GaussianNoise;
use super::latent_search::{Progress, SearchError};
use super::step_halving::StepHalving;
use std::sync::atomic::{AtomicBool, Ordering};

/// Each stem's score over its waveform: the waveform priors' `score` graphs (no noise level) or
/// `noisy_score` graphs (at `sigma`), or a known density in tests.
pub trait WaveformScoreSource {
    /// How many stems it scores.
    fn stem_count(&self) -> usize;

    /// Writes every stem's score at `stems[k]` (samples) into `scores[k]`: ∇ log p, or
    /// ∇ log p_σ when `sigma` is given.
    fn waveform_scores_into(
        &mut self,
        stems: &[Vec<f32>],
        sigma: Option<f32>,
        scores: &mut [Vec<f32>],
    ) -> Result<(), SearchError>;
}

/// The data term of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DataTerm {
    /// −weight·(m − (1/N)·Σᵢ sᵢ) with 2√η noise (Algorithm 1 as printed).
    AsWritten,
    /// weight·(m − Σᵢ sᵢ) with √(2η) noise (the Gaussian likelihood's gradient).
    Gaussian,
}

/// One step's parameters.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The noise level of the prior's score, for the annealed chains.
    sigma: Option<f32>,
    /// Step size.
    eta: f32,
    /// Weight of the mixture likelihood (1/σ² or 1/(λσ)²).
    weight: f32,
    /// The rule.
    term: DataTerm,
}

/// The chains' buffers for a fixed number of stems and samples, allocated once and reused.
#[derive(Debug)]
pub struct WaveformChains {
    /// Each chain's waveform sₖ.
    chains: Vec<Vec<f32>>,
    /// Each stem's prior score at its chain.
    scores: Vec<Vec<f32>>,
    /// Σᵢ sᵢ before the step.
    sum: Vec<f32>,
    /// One stem's noise for the current step.
    noise_buffer: Vec<f32>,
    /// Each stem's running sum over the averaged steps.
    stem_sums: Vec<Vec<f32>>,
    /// The estimates: the chains' mean over the averaged steps, or their last state.
    stems: Vec<Vec<f32>>,
    /// The noise stream, continued from frame to frame.
    noise: GaussianNoise,
    /// The factor of the set step size the chains run at, kept from frame to frame.
    halving: StepHalving,
}

impl WaveformChains {
    /// Buffers for `n_stems` chains over `samples` samples; the noise seeded with `seed`.
    pub fn new(n_stems: usize, samples: usize, seed: u64) -> Self {
        let buffers = || (0..n_stems).map(|_| vec![0.0f32; samples]).collect::<Vec<_>>();
        WaveformChains {
            chains: buffers(),
            scores: buffers(),
            sum: vec![0.0; samples],
            noise_buffer: vec![0.0; samples],
            stem_sums: buffers(),
            stems: buffers(),
            noise: GaussianNoise::new(seed),
            halving: StepHalving::default(),
        }
    }

    /// The factor of the settings' step size the chains run at (1 unless a frame diverged).
    pub fn step_scale(&self) -> f32 {
        self.halving.scale()
    }

    /// Samples per chain.
    pub fn samples(&self) -> usize {
        self.sum.len()
    }

    /// The stems after the last run (or [`WaveformChains::split_evenly`]), one waveform per
    /// stem of [`WaveformChains::samples`] samples.
    pub fn stems(&self) -> &[Vec<f32>] {
        &self.stems
    }

    /// The stems set to the mixture split evenly, without running (a silent frame).
    pub fn split_evenly(&mut self, mix: &[f32]) -> Result<(), SearchError> {
        self.start(mix)?;
        for (stem, chain) in self.stems.iter_mut().zip(&self.chains) {
            stem.copy_from_slice(chain);
        }
        Ok(())
    }

    /// Runs the plain chains (`settings.form` as written or textbook Gaussian) for one frame from
    /// the mixture split evenly: `settings.steps` steps at [`Self::step_scale`]·η, the cancel
    /// flag checked before each, halving the step after a divergence.
    pub fn run_langevin<S: WaveformScoreSource>(
        &mut self,
        source: &mut S,
        mix: &[f32],
        settings: &LangevinSettings,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        let term = match settings.form {
            LangevinForm::AsWritten => DataTerm::AsWritten,
            LangevinForm::TextbookGaussian => DataTerm::Gaussian,
            // The separator refuses it before a run; here it would mean the Gaussian rule.
            LangevinForm::TextbookKl => DataTerm::Gaussian,
        };
        let total = settings.steps;
        let averaged_from = if settings.average { total / 2 } else { total };
        let schedule = |scale: f32| {
            let step = Step {
                sigma: None,
                eta: settings.eta * scale,
                weight: 1.0 / (settings.sigma * settings.sigma),
                term,
            };
            (0..total).map(move |i| (step, i >= averaged_from))
        };
        let run = Run {
            total,
            progress,
            cancel,
        };
        self.run_halving(source, mix, settings.eta, schedule, run)
    }

    /// Runs the annealed chains for one frame from the mixture split evenly: `steps_per_level`
    /// steps at each level of `ladder` (descending, every level > 0), every step size scaled by
    /// [`Self::step_scale`] and halved after a divergence.
    pub fn run_annealed<S: WaveformScoreSource>(
        &mut self,
        source: &mut S,
        mix: &[f32],
        ladder: &[f32],
        settings: &AnnealedSettings,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        let per_level = settings.steps_per_level;
        let top = ladder.first().copied().unwrap_or(1.0);
        let last = ladder.len().saturating_sub(1);
        let schedule = |scale: f32| {
            ladder.iter().enumerate().flat_map(move |(level, &sigma)| {
                let width = settings.likelihood_scale * sigma;
                let step = Step {
                    sigma: Some(sigma),
                    eta: settings.eta * scale * (sigma / top).powi(2),
                    weight: 1.0 / (width * width),
                    term: DataTerm::Gaussian,
                };
                std::iter::repeat_n((step, settings.average && level == last), per_level)
            })
        };
        let run = Run {
            total: per_level * ladder.len(),
            progress,
            cancel,
        };
        self.run_halving(source, mix, settings.eta, schedule, run)
    }

    /// Runs `schedule(scale)` through the step halving, from [`Self::step_scale`].
    fn run_halving<S, I>(
        &mut self,
        source: &mut S,
        mix: &[f32],
        eta: f32,
        schedule: impl Fn(f32) -> I,
        run: Run<'_>,
    ) -> Result<(), SearchError>
    where
        S: WaveformScoreSource,
        I: Iterator<Item = (Step, bool)>,
    {
        let mut halving = self.halving;
        let result = halving.run(eta, |scale| self.run(source, mix, schedule(scale), &run));
        self.halving = halving;
        result
    }

    /// Every chain at the mixture split evenly; the sums cleared.
    fn start(&mut self, mix: &[f32]) -> Result<(), SearchError> {
        if mix.len() != self.samples() {
            return Err(SearchError::Shape {
                what: "mixture samples",
                expected: self.samples(),
                found: mix.len(),
            });
        }
        let share = 1.0 / self.chains.len() as f32;
        for chain in &mut self.chains {
            chain.iter_mut().zip(mix).for_each(|(s, &m)| *s = m * share);
        }
        self.stem_sums.iter_mut().for_each(|v| v.fill(0.0));
        Ok(())
    }

    /// Runs `schedule` (each step and whether it is averaged) of `run.total` steps.
    fn run<S: WaveformScoreSource>(
        &mut self,
        source: &mut S,
        mix: &[f32],
        schedule: impl Iterator<Item = (Step, bool)>,
        run: &Run<'_>,
    ) -> Result<(), SearchError> {
        let Run {
            total,
            progress,
            cancel,
        } = *run;
        if source.stem_count() != self.chains.len() {
            return Err(SearchError::Shape {
                what: "priors",
                expected: self.chains.len(),
                found: source.stem_count(),
            });
        }
        self.start(mix)?;
        progress.start(total);
        let mut averaged = 0usize;
        for (done, (step, average)) in schedule.enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(SearchError::Cancelled);
            }
            let residual = self.step(source, mix, step)?;
            if average {
                averaged += 1;
                for (sum, chain) in self.stem_sums.iter_mut().zip(&self.chains) {
                    sum.iter_mut().zip(chain).for_each(|(a, &s)| *a += s);
                }
            }
            progress.record(done + 1, residual);
        }
        if averaged > 0 {
            let scale = 1.0 / averaged as f32;
            for (stem, sum) in self.stems.iter_mut().zip(&self.stem_sums) {
                stem.iter_mut().zip(sum).for_each(|(s, &a)| *s = a * scale);
            }
        } else {
            for (stem, chain) in self.stems.iter_mut().zip(&self.chains) {
                stem.copy_from_slice(chain);
            }
        }
        Ok(())
    }

    /// One step of every chain from the same Σᵢ sᵢ; returns the mean squared residual
    /// (m − Σᵢ sᵢ)² before it (the progress objective).
    fn step<S: WaveformScoreSource>(
        &mut self,
        source: &mut S,
        mix: &[f32],
        step: Step,
    ) -> Result<f64, SearchError> {
        source.waveform_scores_into(&self.chains, step.sigma, &mut self.scores)?;
        self.sum.fill(0.0);
        for chain in &self.chains {
            self.sum.iter_mut().zip(chain).for_each(|(a, &s)| *a += s);
        }
        let residual = mix
            .iter()
            .zip(&self.sum)
            .map(|(&m, &s)| f64::from(m - s).powi(2))
            .sum::<f64>()
            / mix.len().max(1) as f64;
        let Step {
            eta, weight, term, ..
        } = step;
        let share = 1.0 / self.chains.len() as f32;
        let noise_scale = match term {
            DataTerm::AsWritten => 2.0 * eta.sqrt(),
            DataTerm::Gaussian => (2.0 * eta).sqrt(),
        };
        for (chain, score) in self.chains.iter_mut().zip(&self.scores) {
            self.noise.fill(&mut self.noise_buffer);
            for i in 0..chain.len() {
                let data = match term {
                    DataTerm::AsWritten => -weight * (mix[i] - share * self.sum[i]),
                    DataTerm::Gaussian => weight * (mix[i] - self.sum[i]),
                };
                chain[i] += eta * (score[i] + data) + noise_scale * self.noise_buffer[i];
            }
        }
        if self.chains.iter().flatten().any(|v| !v.is_finite()) {
            return Err(SearchError::NotFinite {
                what: "waveform Langevin chain",
            });
        }
        Ok(residual)
    }
}

/// What one frame's run reports to and reads from its caller, the same for every try.
#[derive(Clone, Copy)]
struct Run<'a> {
    /// Steps per try.
    total: usize,
    /// Where the steps are counted.
    progress: &'a Progress,
    /// Checked before each step.
    cancel: &'a AtomicBool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::search::chain_settings::LangevinDomain;
    use crate::engine::search::step_halving::STEP_HALVINGS;

    /// Independent white Gaussian stems N(0, vₖ·I); the noisy score is that of N(0, (vₖ + σ²)·I).
    struct WhiteGaussians {
        variances: Vec<f32>,
    }

    impl WaveformScoreSource for WhiteGaussians {
        fn stem_count(&self) -> usize {
            self.variances.len()
        }

        fn waveform_scores_into(
            &mut self,
            stems: &[Vec<f32>],
            sigma: Option<f32>,
            scores: &mut [Vec<f32>],
        ) -> Result<(), SearchError> {
            for ((stem, score), &v) in stems.iter().zip(scores.iter_mut()).zip(&self.variances) {
                let v = v + sigma.map_or(0.0, |s| s * s);
                score.iter_mut().zip(stem).for_each(|(g, &x)| *g = -x / v);
            }
            Ok(())
        }
    }

    /// A deterministic mixture of two independent Gaussian sources of variances 0.01 and 0.09.
    fn mixture(samples: usize) -> Vec<f32> {
        let mut noise = GaussianNoise::new(99);
        (0..samples)
            .map(|_| 0.1 * noise.sample() + 0.3 * noise.sample())
            .collect()
    }

    fn langevin(form: LangevinForm, steps: usize, seed: u64) -> LangevinSettings {
        LangevinSettings {
            steps,
            eta: 2e-3,
            sigma: 0.1,
            form,
            domain: LangevinDomain::Magnitude,
            seed,
            preconditioned: false,
            average: true,
        }
    }

    /// One run of `settings` from the even split with `mix`; the stems.
    fn run(settings: &LangevinSettings, mix: &[f32], cancel: bool) -> Result<Vec<Vec<f32>>, SearchError> {
        let mut source = WhiteGaussians {
            variances: vec![0.01, 0.09],
        };
        let mut chains = WaveformChains::new(2, mix.len(), settings.seed);
        let progress = Progress::new();
        chains.run_langevin(&mut source, mix, settings, &progress, &AtomicBool::new(cancel))?;
        assert_eq!(chains.step_scale(), 1.0, "a stable step size is kept");
        assert_eq!(progress.iteration(), settings.steps);
        Ok(chains.stems().to_vec())
    }

    /// One step from the even split, with the noise of the seed, is exactly each rule: Algorithm
    /// 1 as printed, sₖ + η·gₖ + 2√η·ε − (η/σ²)·(m − mean), and the textbook rule,
    /// sₖ + η·(gₖ + (m − Σᵢ sᵢ)/σ²) + √(2η)·ε (zero here: the even split sums to m).
    #[test]
    fn one_step_is_the_rule() {
        let samples = 64;
        let mix = mixture(samples);
        for form in [LangevinForm::AsWritten, LangevinForm::TextbookGaussian] {
            let settings = LangevinSettings {
                average: false,
                ..langevin(form, 1, 3)
            };
            let stems = run(&settings, &mix, false).unwrap();
            let mut noise = GaussianNoise::new(3);
            let (eta, weight) = (settings.eta, 1.0 / (settings.sigma * settings.sigma));
            for (stem, v) in stems.iter().zip([0.01f32, 0.09]) {
                let mut eps = vec![0.0; samples];
                noise.fill(&mut eps);
                for i in 0..samples {
                    let s = mix[i] / 2.0;
                    let expected = match form {
                        LangevinForm::AsWritten => {
                            s + eta * (-s / v) + 2.0 * eta.sqrt() * eps[i] - eta * weight * (mix[i] - s)
                        }
                        _ => s + eta * (-s / v) + (2.0 * eta).sqrt() * eps[i],
                    };
                    assert!(
                        (stem[i] - expected).abs() <= 1e-6,
                        "{form:?} {i}: {} vs {expected}",
                        stem[i]
                    );
                }
            }
        }
    }

    /// The same seed gives the same stems, another seed others; averaging is the mean of the
    /// second half; a set cancel flag stops the run.
    #[test]
    fn chains_follow_their_seed_and_stop_when_cancelled() {
        let mix = mixture(256);
        let settings = langevin(LangevinForm::TextbookGaussian, 40, 5);
        let stems = run(&settings, &mix, false).unwrap();
        assert_eq!(run(&settings, &mix, false).unwrap(), stems);
        assert_ne!(
            run(&LangevinSettings { seed: 6, ..settings }, &mix, false).unwrap(),
            stems
        );
        let last = run(
            &LangevinSettings {
                average: false,
                ..settings
            },
            &mix,
            false,
        )
        .unwrap();
        assert_ne!(last, stems, "the mean of the second half is not the last state");
        assert!(matches!(run(&settings, &mix, true), Err(SearchError::Cancelled)));
    }

    /// The annealed schedule: at level σ the step is η·(σ/σ₁)² and the likelihood width λσ, so
    /// with one step per level from the even split (where the data term vanishes) each level
    /// moves a chain by η_σ·∇ log p_σ(s) + √(2η_σ)·ε.
    #[test]
    fn the_annealed_schedule_scales_the_step_with_the_level() {
        let mix = mixture(32);
        let ladder = [0.3f32, 0.1];
        let settings = AnnealedSettings {
            steps_per_level: 1,
            eta: 0.02,
            likelihood_scale: 1.0,
            seed: 2,
            average: false,
            preconditioned: false,
        };
        let mut source = WhiteGaussians {
            variances: vec![0.01, 0.09],
        };
        let mut chains = WaveformChains::new(2, mix.len(), 2);
        let progress = Progress::new();
        chains
            .run_annealed(
                &mut source,
                &mix,
                &ladder[..1],
                &settings,
                &progress,
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(progress.iteration(), 1);
        let mut noise = GaussianNoise::new(2);
        for (stem, v) in chains.stems().iter().zip([0.01f32, 0.09]) {
            let mut eps = vec![0.0; mix.len()];
            noise.fill(&mut eps);
            for i in 0..mix.len() {
                let s = mix[i] / 2.0;
                let expected = s + 0.02 * (-s / (v + 0.09)) + (2.0f32 * 0.02).sqrt() * eps[i];
                assert!(
                    (stem[i] - expected).abs() <= 1e-6,
                    "{i}: {} vs {expected}",
                    stem[i]
                );
            }
        }
        chains
            .run_annealed(
                &mut source,
                &mix,
                &ladder,
                &settings,
                &progress,
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(progress.iteration(), 2);
    }

    /// A step too large for the scores: with the textbook rule the chains' update matrix here has
    /// eigenvalues 46 and 265 (1/vₖ plus the likelihood's 1/σ² = 100 on both), so η 0.014
    /// overflows within 120 steps and η 0.007 is stable. The frame then finishes at half the
    /// step, with finite stems that still sum to nearly the mixture; a step no halving can save
    /// fails with both step sizes it tried.
    #[test]
    fn a_diverging_step_is_halved_until_the_chains_hold() {
        let mix = mixture(128);
        let mut source = WhiteGaussians {
            variances: vec![0.01, 0.09],
        };
        let mut chains = WaveformChains::new(2, mix.len(), 4);
        let progress = Progress::new();
        let cancel = AtomicBool::new(false);
        let diverging = LangevinSettings {
            eta: 0.014,
            ..langevin(LangevinForm::TextbookGaussian, 120, 4)
        };
        chains
            .run_langevin(&mut source, &mix, &diverging, &progress, &cancel)
            .unwrap();
        assert_eq!(chains.step_scale(), 0.5);
        assert_eq!(progress.iteration(), 120, "the last try ran every step");
        assert!(chains.stems().iter().flatten().all(|v| v.is_finite()));
        let residual = (0..mix.len())
            .map(|i| (mix[i] - chains.stems()[0][i] - chains.stems()[1][i]).powi(2))
            .sum::<f32>()
            / mix.len() as f32;
        assert!(residual < 0.01, "the stems keep the mixture: residual {residual}");
        // The next frame starts at the halved factor and keeps it.
        chains
            .run_langevin(&mut source, &mix, &diverging, &progress, &cancel)
            .unwrap();
        assert_eq!(chains.step_scale(), 0.5);

        let hopeless = LangevinSettings {
            eta: 1.0,
            ..diverging
        };
        let mut chains = WaveformChains::new(2, mix.len(), 4);
        match chains.run_langevin(&mut source, &mix, &hopeless, &progress, &cancel) {
            Err(SearchError::Diverged { first, last }) => {
                assert_eq!(first, 1.0);
                assert_eq!(last, 1.0 / 2f32.powi(STEP_HALVINGS as i32));
            }
            other => panic!("expected Diverged, found {other:?}"),
        }
    }
}
