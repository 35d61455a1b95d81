//! The separation of one frame: Adam over every prior's latent z at once, minimising
//! D(X ‖ Σᵢ fᵢ(zᵢ)) − γ Σᵢ log pᵢ(fᵢ(zᵢ)).
//!
//! The loop is split so later work can change one part: [`LatentSearch::start_from_zero`] (or
//! writing [`LatentSearch::latents_mut`] for a warm start), [`LatentSearch::optimize`] for the
//! schedule, and a private update rule (Adam today; SGLD would add noise there).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::engine::constants::BINS;
use crate::engine::priors::prior::Prior;
use crate::engine::priors::prior_error::PriorError;
use crate::engine::search::objective::{kl_cotangent_into, kl_divergence};
use crate::engine::search::optimizer::Adam;
use crate::engine::search::settings::SeparationSettings;
use crate::engine::spread::spread;

/// Every latent coordinate is kept within ±`LATENT_BOUND` after each update. A latent of a
/// trained flow is N(0, 1): |z| > 8 has probability ~1e-15, so the bound never constrains a
/// plausible source, but it stops a divergent search (large learning rate, strong MAP term) from
/// walking to where the flow's output overflows and the whole frame fails with a non-finite stem.
pub const LATENT_BOUND: f32 = 8.0;

/// Why a search stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The caller's cancel flag was set.
    #[error("separation cancelled")]
    Cancelled,
    /// A prior failed (graph error, non-finite output, ...).
    #[error(transparent)]
    Prior(#[from] PriorError),
    /// The search's own state turned NaN or infinite (a step size too large for the priors).
    #[error("{what} turned non-finite")]
    NotFinite {
        /// What did.
        what: &'static str,
    },
    /// Langevin chains diverged at every step size they tried, halving from `first`
    /// (`search::step_halving`).
    #[error(
        "the Langevin chains diverged at step size {first:e} and at every halving down to {last:e}; \
         use a step size (eta) below {last:e}"
    )]
    Diverged {
        /// The step size of the first try.
        first: f32,
        /// The step size of the last try.
        last: f32,
    },
    /// The priors or the mixture do not match the sizes the search was built for.
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The size the search was built for.
        expected: usize,
        /// The size given.
        found: usize,
    },
}

/// `Ok` if a search built for `stems` stems over `frames` STFT frames is handed `priors` priors
/// and a mixture of `mix_len` values, else the first mismatch (both searches check this).
pub(crate) fn check_search_shapes(
    stems: usize,
    frames: usize,
    priors: usize,
    mix_len: usize,
) -> Result<(), SearchError> {
    if priors != stems {
        return Err(SearchError::Shape {
            what: "priors",
            expected: stems,
            found: priors,
        });
    }
    if mix_len != BINS * frames {
        return Err(SearchError::Shape {
            what: "mix_mag",
            expected: BINS * frames,
            found: mix_len,
        });
    }
    Ok(())
}

/// How far a search is, readable from another thread (a UI or progress bar) without locks.
#[derive(Debug, Default)]
pub struct Progress {
    /// Iterations completed in the current run.
    iteration: AtomicUsize,
    /// Iterations the current run will do.
    total: AtomicUsize,
    /// The objective at the latest iteration, as `f32::to_bits` (NaN before the first).
    objective_bits: AtomicU32,
    /// Runs started and iterations recorded, never reset: a watchdog on another thread that
    /// sees it stand still for long knows the search (or whatever holds the record) is stuck.
    beats: AtomicU64,
}

impl Progress {
    /// A progress record at 0 of 0 with no objective yet.
    pub fn new() -> Self {
        Progress {
            iteration: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            objective_bits: AtomicU32::new(f32::NAN.to_bits()),
            beats: AtomicU64::new(0),
        }
    }

    /// Iterations completed.
    pub fn iteration(&self) -> usize {
        self.iteration.load(Ordering::Relaxed)
    }

    /// Iterations planned.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Runs started plus iterations recorded since the record was made (only grows).
    pub fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    /// The latest objective value (NaN before the first iteration).
    pub fn objective(&self) -> f32 {
        f32::from_bits(self.objective_bits.load(Ordering::Relaxed))
    }

    pub(crate) fn start(&self, total: usize) {
        self.iteration.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.objective_bits.store(f32::NAN.to_bits(), Ordering::Relaxed);
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, iteration: usize, objective: f64) {
        self.objective_bits
            .store((objective as f32).to_bits(), Ordering::Relaxed);
        self.iteration.store(iteration, Ordering::Relaxed);
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the iterations completed to 0 between runs, so a reader never takes the last run's
    /// count for the next one's (a file's progress counts the frames done apart).
    pub(crate) fn clear_iteration(&self) {
        self.iteration.store(0, Ordering::Relaxed);
    }
}

/// The buffers and optimizer state for separating frames of one size into a fixed number of
/// stems. Everything is allocated in [`LatentSearch::new`]; runs reuse it.
#[derive(Debug)]
pub struct LatentSearch {
    /// Iterations, Adam settings and objective.
    settings: SeparationSettings,
    /// STFT frames per separation frame (the time axis T).
    frames: usize,
    /// Each stem's latent zᵢ, `[513, frames]` bin-major.
    latents: Vec<Vec<f32>>,
    /// Each stem's optimizer state.
    adams: Vec<Adam>,
    /// Each stem's decoded magnitude sᵢ = fᵢ(zᵢ).
    stems: Vec<Vec<f32>>,
    /// Each stem's objective gradient with respect to zᵢ.
    grads: Vec<Vec<f32>>,
    /// Σᵢ sᵢ.
    sum: Vec<f32>,
    /// ∂D/∂sᵢ = 1 − X/(Σs + ε), shared by all stems.
    cotangent: Vec<f32>,
    /// Each stem's per-bin output gain (see `level_calibration`): sᵢ = gᵢ ⊙ fᵢ(zᵢ). Ones unless
    /// [`LatentSearch::set_level_gains`] was called.
    level_gains: Vec<Vec<f32>>,
    /// Each stem's cotangent scaled by its gains, ∂D/∂fᵢ(zᵢ) = gᵢ ⊙ ∂D/∂sᵢ.
    stem_cotangents: Vec<Vec<f32>>,
    /// The objective at every iteration of the last run, then after the final decode (kept for
    /// the tests that check the search descends).
    #[cfg(test)]
    history: Vec<f64>,
}

impl LatentSearch {
    /// Buffers for `n_stems` priors and `frames` STFT frames per separation frame.
    pub fn new(n_stems: usize, frames: usize, settings: SeparationSettings) -> Self {
        let len = BINS * frames;
        let buffers = || (0..n_stems).map(|_| vec![0.0f32; len]).collect::<Vec<_>>();
        LatentSearch {
            settings,
            frames,
            latents: buffers(),
            adams: (0..n_stems).map(|_| Adam::new(len, settings.adam)).collect(),
            stems: buffers(),
            grads: buffers(),
            sum: vec![0.0; len],
            cotangent: vec![0.0; len],
            level_gains: vec![vec![1.0; BINS]; n_stems],
            stem_cotangents: buffers(),
            #[cfg(test)]
            history: Vec::with_capacity(settings.iterations + 1),
        }
    }

    /// Number of stems (priors) this search separates into.
    pub fn n_stems(&self) -> usize {
        self.latents.len()
    }

    /// STFT frames per separation frame.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The settings in use.
    pub fn settings(&self) -> &SeparationSettings {
        &self.settings
    }

    /// Sets stem `stem`'s per-bin output gains (513 values, positive and finite), e.g. from
    /// [`crate::engine::priors::calibration::level_gains`].
    pub fn set_level_gains(&mut self, stem: usize, gains: &[f32]) -> Result<(), SearchError> {
        if gains.len() != BINS {
            return Err(SearchError::Shape {
                what: "level gains",
                expected: BINS,
                found: gains.len(),
            });
        }
        if stem >= self.n_stems() {
            return Err(SearchError::Shape {
                what: "stem index",
                expected: self.n_stems(),
                found: stem,
            });
        }
        for (g, &v) in self.level_gains[stem].iter_mut().zip(gains) {
            *g = if v.is_finite() && v > 0.0 { v } else { 1.0 };
        }
        Ok(())
    }

    /// The paper's start: every zᵢ = 0 and fresh optimizer state.
    pub fn start_from_zero(&mut self) {
        for (z, adam) in self.latents.iter_mut().zip(&mut self.adams) {
            z.fill(0.0);
            adam.reset();
        }
    }

    /// Separates one frame from z = 0: [`LatentSearch::start_from_zero`] then
    /// [`LatentSearch::optimize`]. `priors` are in stem order; `mix_mag` is `[513, frames]`
    /// bin-major. The result is in [`LatentSearch::stems`].
    pub fn run(
        &mut self,
        priors: &mut [Prior],
        mix_mag: &[f32],
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        self.start_from_zero();
        self.optimize(priors, mix_mag, progress, cancel)
    }

    /// Runs `settings.iterations` updates from the current latents and optimizer state, then
    /// decodes once more so [`LatentSearch::stems`] holds f(z) at the final z. `cancel` is checked
    /// before every iteration.
    pub fn optimize(
        &mut self,
        priors: &mut [Prior],
        mix_mag: &[f32],
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SearchError> {
        self.check_shapes(priors, mix_mag)?;
        let total = self.settings.iterations;
        let gamma = self.settings.objective.gamma();
        progress.start(total);
        #[cfg(test)]
        self.history.clear();
        for iteration in 0..total {
            if cancel.load(Ordering::Relaxed) {
                return Err(SearchError::Cancelled);
            }
            let objective = self.step(priors, mix_mag, gamma)?;
            #[cfg(test)]
            self.history.push(objective);
            progress.record(iteration + 1, objective);
        }
        self.decode_all(priors, false)?;
        let objective = kl_divergence(mix_mag, &self.sum);
        #[cfg(test)]
        self.history.push(objective);
        progress.record(total, objective);
        Ok(())
    }

    /// The decoded magnitudes of the last run, one `[513, frames]` buffer per stem.
    pub fn stems(&self) -> &[Vec<f32>] {
        &self.stems
    }

    /// The current latents, one per stem.
    pub fn latents(&self) -> &[Vec<f32>] {
        &self.latents
    }

    /// The latents, writable: a warm start sets them after [`LatentSearch::start_from_zero`] and
    /// before [`LatentSearch::optimize`].
    pub fn latents_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.latents
    }

    #[cfg(test)]
    /// The objective before each update of the last run, then the data term after the final
    /// decode (the prior term is not evaluated there).
    pub fn objective_history(&self) -> &[f64] {
        &self.history
    }

    fn check_shapes(&self, priors: &[Prior], mix_mag: &[f32]) -> Result<(), SearchError> {
        check_search_shapes(self.n_stems(), self.frames, priors.len(), mix_mag.len())
    }

    /// sᵢ = gᵢ ⊙ fᵢ(zᵢ) for every stem (the stems side by side on the settings' threads), and
    /// Σs (summed in stem order). `for_gradient` runs each prior's forward half of a gradient
    /// evaluation, which keeps what the backward half needs; otherwise a plain decode.
    fn decode_all(&mut self, priors: &mut [Prior], for_gradient: bool) -> Result<(), SearchError> {
        let frames = self.frames;
        let items: Vec<_> = priors
            .iter_mut()
            .zip(&self.latents)
            .zip(&mut self.stems)
            .zip(&self.level_gains)
            .collect();
        spread(self.settings.stem_threads, items, &|(((prior, z), s), gains)| {
            if for_gradient {
                prior.forward_into(z, frames, s)?;
            } else {
                prior.decode_into(z, frames, s)?;
            }
            for (row, &gain) in s.chunks_exact_mut(frames).zip(gains) {
                row.iter_mut().for_each(|v| *v *= gain);
            }
            Ok::<(), PriorError>(())
        })?;
        self.sum.fill(0.0);
        for s in &self.stems {
            for (sum, &v) in self.sum.iter_mut().zip(s) {
                *sum += v;
            }
        }
        Ok(())
    }

    /// One iteration: the objective at the current latents and its gradient for every stem,
    /// then the update rule on every stem (each stem's backward pass and update side by side on
    /// the settings' threads; log p summed in stem order). Returns the objective before the
    /// update.
    fn step(&mut self, priors: &mut [Prior], mix_mag: &[f32], gamma: f32) -> Result<f64, SearchError> {
        self.gradient(priors, mix_mag, gamma, true)
    }

    /// The objective and every stem's gradient (into `grads`) at the current latents, without
    /// moving them.
    #[cfg(test)]
    fn evaluate(&mut self, priors: &mut [Prior], mix_mag: &[f32], gamma: f32) -> Result<f64, SearchError> {
        self.gradient(priors, mix_mag, gamma, false)
    }

    /// The objective and gradients at the current latents, and with `and_update` the update
    /// rule applied to each stem right after its gradient.
    fn gradient(
        &mut self,
        priors: &mut [Prior],
        mix_mag: &[f32],
        gamma: f32,
        and_update: bool,
    ) -> Result<f64, SearchError> {
        self.decode_all(priors, true)?;
        let data_term = kl_divergence(mix_mag, &self.sum);
        kl_cotangent_into(mix_mag, &self.sum, &mut self.cotangent);
        let frames = self.frames;
        let cotangent = &self.cotangent;
        let items: Vec<_> = priors
            .iter_mut()
            .zip(&mut self.latents)
            .zip(&mut self.grads)
            .zip(&self.level_gains)
            .zip(self.stem_cotangents.iter_mut().zip(&mut self.adams))
            .collect();
        let log_priors = spread(self.settings.stem_threads, items, &|(
            (((prior, z), grad), gains),
            (stem_cotangent, adam),
        )| {
            for ((out, row), &gain) in stem_cotangent
                .chunks_exact_mut(frames)
                .zip(cotangent.chunks_exact(frames))
                .zip(gains)
            {
                out.iter_mut().zip(row).for_each(|(o, &c)| *o = c * gain);
            }
            let log_prior = prior.backward_into(z, stem_cotangent, gamma, frames, grad)?;
            if and_update {
                update(adam, z, grad);
            }
            Ok::<f32, PriorError>(log_prior)
        })?;
        let log_prior: f64 = log_priors.iter().map(|&l| l as f64).fold(0.0, |a, l| a + l);
        Ok(data_term - gamma as f64 * log_prior)
    }
}

/// The update rule: one Adam step on a latent along its gradient, then the latent clamped to
/// ±[`LATENT_BOUND`].
fn update(adam: &mut Adam, z: &mut [f32], grad: &[f32]) {
    adam.step(z, grad);
    for v in z.iter_mut() {
        *v = v.clamp(-LATENT_BOUND, LATENT_BOUND);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::priors::runtime::{Runtime, RuntimeOptions, SessionOptions};
    use crate::engine::search::settings::Objective;
    use std::path::Path;
    use std::sync::Arc;

    fn toy(stem: &str) -> Prior {
        let runtime = Runtime::load(&RuntimeOptions::default()).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/toy_prior")
            .join(stem);
        Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap()
    }

    /// Two toy priors and a mixture that is exactly s₁(z₁*) + s₂(z₂*).
    fn problem(frames: usize) -> (Vec<Prior>, Vec<f32>) {
        let mut priors = vec![toy("toy"), toy("toy_b")];
        let len = BINS * frames;
        let mut mix = vec![0.0f32; len];
        let mut s = vec![0.0f32; len];
        for (k, prior) in priors.iter_mut().enumerate() {
            let z_star: Vec<f32> = (0..len)
                .map(|i| 0.6 * ((i as f32) * 0.013 + k as f32 * 1.7).sin())
                .collect();
            prior.decode_into(&z_star, frames, &mut s).unwrap();
            for (m, v) in mix.iter_mut().zip(&s) {
                *m += v;
            }
        }
        (priors, mix)
    }

    /// The default settings with `iterations` steps of the paper's Adam (0.01), the step the
    /// toy problem's descent checks were made for.
    fn settings(iterations: usize) -> SeparationSettings {
        SeparationSettings {
            iterations,
            adam: crate::engine::search::settings::AdamSettings::default(),
            ..SeparationSettings::default_preset()
        }
    }

    #[test]
    fn kl_decreases_far_below_its_start() {
        let frames = 8;
        let (mut priors, mix) = problem(frames);
        let mut search = LatentSearch::new(2, frames, settings(150));
        let progress = Progress::new();
        search
            .run(&mut priors, &mix, &progress, &AtomicBool::new(false))
            .unwrap();
        let history = search.objective_history();
        assert_eq!(history.len(), 151);
        let (first, last) = (history[0], history[150]);
        assert!(last < 0.05 * first, "objective went from {first} to {last}");
        // Monotone-ish: every 10-iteration window ends lower than it starts.
        for w in history.windows(11) {
            assert!(w[10] < w[0], "objective rose over a window: {w:?}");
        }
        assert_eq!(progress.iteration(), 150);
        assert_eq!(progress.total(), 150);
        assert!((progress.objective() as f64 - last).abs() <= 1e-6 * (1.0 + last));
        // The stems are the decoded final latents and sum to (nearly) the mixture.
        let sum: Vec<f32> = (0..mix.len())
            .map(|i| search.stems()[0][i] + search.stems()[1][i])
            .collect();
        assert!((kl_divergence(&mix, &sum) - last).abs() < 1e-9 * (1.0 + last));
        // A second run starts again from z = 0 and reproduces the first.
        let again = search.objective_history().to_vec();
        search
            .run(&mut priors, &mix, &progress, &AtomicBool::new(false))
            .unwrap();
        assert_eq!(search.objective_history(), &again[..]);
    }

    #[test]
    fn a_divergent_search_stays_within_the_latent_bound_and_finite() {
        let frames = 4;
        let (mut priors, mix) = problem(frames);
        let mut wild = settings(40);
        wild.adam.learning_rate = 50.0;
        wild.objective = Objective::Map { gamma: 1.0 };
        let mut search = LatentSearch::new(2, frames, wild);
        search
            .run(&mut priors, &mix, &Progress::new(), &AtomicBool::new(false))
            .unwrap();
        for z in search.latents() {
            assert!(
                z.iter().all(|v| v.abs() <= LATENT_BOUND),
                "a latent left the bound"
            );
        }
        assert!(search.latents().iter().flatten().any(|v| v.abs() == LATENT_BOUND));
        assert!(search.stems().iter().flatten().all(|v| v.is_finite()));
    }

    #[test]
    fn map_objective_includes_the_prior_term() {
        let frames = 4;
        let (mut priors, mix) = problem(frames);
        let map = SeparationSettings {
            objective: Objective::Map { gamma: 0.5 },
            ..settings(3)
        };
        let mut search = LatentSearch::new(2, frames, map);
        search
            .run(&mut priors, &mix, &Progress::new(), &AtomicBool::new(false))
            .unwrap();
        let mut mle = LatentSearch::new(2, frames, settings(3));
        mle.run(&mut priors, &mix, &Progress::new(), &AtomicBool::new(false))
            .unwrap();
        // At z = 0 both see the same data term; MAP subtracts γ·Σ log p, which is nonzero.
        let difference = search.objective_history()[0] - mle.objective_history()[0];
        assert!(difference.abs() > 1.0, "{difference}");
    }

    #[test]
    fn level_gains_scale_the_stems_and_their_gradient() {
        let frames = 4;
        let (mut priors, mix) = problem(frames);
        let mut search = LatentSearch::new(2, frames, settings(1));
        let gains: Vec<f32> = (0..BINS).map(|b| 1.0 + 0.5 * (b as f32 * 0.7).sin()).collect();
        search.set_level_gains(0, &gains).unwrap();
        assert!(search.set_level_gains(0, &gains[1..]).is_err());
        assert!(search.set_level_gains(2, &gains).is_err());
        search.start_from_zero();
        for (i, z) in search.latents_mut().iter_mut().enumerate() {
            for (j, v) in z.iter_mut().enumerate() {
                *v = 0.3 * ((j as f32) * 0.11 + i as f32).sin();
            }
        }
        let objective = search.evaluate(&mut priors, &mix, 0.0).unwrap();
        // The stems are gains ⊙ f(z).
        let mut plain = vec![0.0f32; BINS * frames];
        priors[0]
            .decode_into(&search.latents()[0], frames, &mut plain)
            .unwrap();
        for (idx, (&s, &p)) in search.stems()[0].iter().zip(&plain).enumerate() {
            let expected = p * gains[idx / frames];
            assert!(
                (s - expected).abs() <= 1e-6 * expected.abs().max(1.0),
                "stem 0 at {idx}"
            );
        }
        // The gradient is that of D(X ‖ Σ gᵢ ⊙ fᵢ(zᵢ)): central differences on a few coordinates.
        let grads = search.grads.clone();
        for &(stem, idx) in &[(0usize, 3usize), (0, 700), (0, 1500), (1, 42)] {
            let h = 1e-2f32;
            let z0 = search.latents()[stem][idx];
            search.latents_mut()[stem][idx] = z0 + h;
            let plus = search.evaluate(&mut priors, &mix, 0.0).unwrap();
            search.latents_mut()[stem][idx] = z0 - h;
            let minus = search.evaluate(&mut priors, &mix, 0.0).unwrap();
            search.latents_mut()[stem][idx] = z0;
            let fd = (plus - minus) / (2.0 * h as f64);
            let analytic = grads[stem][idx] as f64;
            assert!(
                (fd - analytic).abs() <= 1e-2 * (analytic.abs() + 1e-3 * objective.abs()),
                "stem {stem} coordinate {idx}: finite difference {fd}, gradient {analytic}"
            );
        }
    }

    #[test]
    fn cancel_stops_the_search() {
        let frames = 4;
        let (mut priors, mix) = problem(frames);
        let mut search = LatentSearch::new(2, frames, settings(10));
        let progress = Progress::new();
        let result = search.run(&mut priors, &mix, &progress, &AtomicBool::new(true));
        assert!(matches!(result, Err(SearchError::Cancelled)));
        assert_eq!(progress.iteration(), 0);

        // Cancelled from another thread while running.
        let mut search = LatentSearch::new(2, frames, settings(1_000_000));
        let progress = Arc::new(Progress::new());
        let cancel = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (progress, cancel) = (Arc::clone(&progress), Arc::clone(&cancel));
            std::thread::spawn(move || {
                while progress.iteration() < 5 {
                    std::thread::yield_now();
                }
                cancel.store(true, Ordering::Relaxed);
            })
        };
        let result = search.run(&mut priors, &mix, &progress, &cancel);
        watcher.join().unwrap();
        assert!(matches!(result, Err(SearchError::Cancelled)));
        assert!(progress.iteration() >= 5 && progress.iteration() < 1_000_000);
    }

    #[test]
    fn searches_and_priors_can_move_to_a_worker_thread() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Prior>();
        send::<LatentSearch>();
        send_sync::<Progress>();
        send_sync::<Runtime>();
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let frames = 4;
        let (mut priors, mix) = problem(frames);
        let mut search = LatentSearch::new(3, frames, settings(1));
        let result = search.run(&mut priors, &mix, &Progress::new(), &AtomicBool::new(false));
        assert!(matches!(
            result,
            Err(SearchError::Shape {
                what: "priors",
                expected: 3,
                found: 2
            })
        ));
        let mut search = LatentSearch::new(2, frames, settings(1));
        let result = search.run(&mut priors, &mix[1..], &Progress::new(), &AtomicBool::new(false));
        assert!(matches!(result, Err(SearchError::Shape { what: "mix_mag", .. })));
    }

    /// The shipped prior `stem`, and the same prior in a temporary folder without its split
    /// gradient (so it runs `decode` + `grad`).
    fn shipped_with_and_without_split(stem: &str) -> (Prior, Prior, tempfile::TempDir) {
        let runtime = Runtime::load(&RuntimeOptions::default()).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/priors")
            .join(stem);
        let (root, dir) = crate::engine::priors::manifest::edited_prior_copy(&source, |json| {
            let graphs = json["graphs"].as_object_mut().unwrap();
            graphs.remove("forward");
            graphs.remove("backward");
        });
        let split = Prior::load(&runtime, &source, &SessionOptions::default()).unwrap();
        let plain = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        assert!(split.has_split_gradient() && !plain.has_split_gradient());
        (split, plain, root)
    }

    /// A search over priors with the split gradient takes the same path as over the same priors
    /// with `decode` + `grad` (MAP, so the log-density term is in the gradient too).
    #[test]
    fn the_split_gradient_searches_like_decode_and_grad() {
        let (bass, bass_plain, _a) = shipped_with_and_without_split("bass");
        let (drums, drums_plain, _b) = shipped_with_and_without_split("drums");
        let frames = 16;
        let mix: Vec<f32> = (0..BINS * frames)
            .map(|i| 0.02 * (1.5 + ((i as f32) * 0.011).sin()))
            .collect();
        let settings = SeparationSettings {
            iterations: 6,
            objective: Objective::Map { gamma: 0.1 },
            ..SeparationSettings::default_preset()
        };
        let mut results = Vec::new();
        for mut priors in [vec![bass, drums], vec![bass_plain, drums_plain]] {
            let mut search = LatentSearch::new(2, frames, settings);
            search
                .run(&mut priors, &mix, &Progress::new(), &AtomicBool::new(false))
                .unwrap();
            results.push((search.latents().to_vec(), search.objective_history().to_vec()));
        }
        let (split, plain) = (&results[0], &results[1]);
        for (a, b) in split.0.iter().flatten().zip(plain.0.iter().flatten()) {
            assert!((a - b).abs() <= 1e-5, "latents differ: {a} vs {b}");
        }
        for (a, b) in split.1.iter().zip(&plain.1) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "objectives differ: {a} vs {b}"
            );
        }
    }
}
