//! What the Langevin searches are asked to do: the SGLD chains' settings (update rule, domain,
//! steps) and the annealed chains' settings, with the defaults the command line and the plugin
//! start from. Apart from the searches, so the run's settings can hold them without importing a
//! search.

/// Where the chains move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LangevinDomain {
    /// Magnitudes s (the priors' graphs take them as they are).
    Magnitude,
    /// Natural-log magnitudes u = ln s, where the priors' standardised data live up to a
    /// per-bin affine map.
    LogMagnitude,
}

/// Which update rule the chains follow (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LangevinForm {
    /// Frank & Ilse's Algorithm 1, as printed.
    AsWritten,
    /// √(2η) noise and the gradient of a Gaussian likelihood of the mixture.
    TextbookGaussian,
    /// √(2η) noise and the gradient of the KL data term of the Adam search.
    TextbookKl,
}

/// What a Langevin run is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LangevinSettings {
    /// Steps per frame (T).
    pub steps: usize,
    /// Step size η.
    pub eta: f32,
    /// Width σ of the mixture likelihood (its weight is 1/σ²).
    pub sigma: f32,
    /// The update rule.
    pub form: LangevinForm,
    /// Where the chains move. Meaningless for time-domain (waveform) priors, whose chains move
    /// in waveform amplitude (`search::waveform_langevin`); ignored there.
    pub domain: LangevinDomain,
    /// Seed of the noise: the same seed gives the same stems.
    pub seed: u64,
    /// RMSprop-preconditioned steps (after pSGLD, Li et al. 2016) for the textbook rules: each
    /// element's step and noise variance are scaled by 1/max(√V, 1), V the running mean of its
    /// squared gradient over the first half of the steps (bias-corrected; then held), so an element whose gradient is large is slowed to a
    /// step of about η while the others keep the plain rule. The data term's gradient spans
    /// orders of magnitude between loud and quiet bins, so without it a step size large enough
    /// to move quiet bins throws loud ones off. Ignored by the waveform chains (plain steps).
    pub preconditioned: bool,
    /// The stems are the chains' mean over the second half of the steps (an estimate of the
    /// posterior mean) instead of their last state (one sample).
    pub average: bool,
}

impl LangevinSettings {
    /// The settings `--separator sgld` and the plugin's Langevin choice start from: the
    /// textbook rule with the KL likelihood in the log-magnitude domain, preconditioned, 100
    /// steps of 0.1, the mean of the second half — the best of the screen in
    /// models/EXPERIMENTS.md ("Langevin separation (SGLD) with the shipped priors"); 0.3 diverged
    /// there.
    pub const DEFAULT: LangevinSettings = LangevinSettings {
        steps: 100,
        eta: 0.1,
        sigma: 1.0,
        form: LangevinForm::TextbookKl,
        domain: LangevinDomain::LogMagnitude,
        seed: 0,
        preconditioned: true,
        average: true,
    };
}

/// What an annealed run is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnnealedSettings {
    /// Steps at each level of the ladder.
    pub steps_per_level: usize,
    /// Step size η at the ladder's first (largest) level; level σ takes η·(σ/σ₁)².
    pub eta: f32,
    /// λ: the mixture likelihood's width relative to the noise level (its weight is 1/(λσ)²).
    pub likelihood_scale: f32,
    /// Seed of the noise: the same seed gives the same stems.
    pub seed: u64,
    /// The stems are the chains' mean over the last level's steps (an estimate of the posterior
    /// mean) instead of their last state.
    pub average: bool,
    /// Each element's step and noise variance are scaled by M = 1/V, V a running mean of its
    /// squared gradient (for a Gaussian N(μ, w²), E[g²] = 1/w², so M is its variance: the inverse
    /// Fisher information). A step is then η of the element's own posterior width whatever the
    /// bin's scale in the flow's units, and the noise keeps that width; η does not shrink with σ
    /// (M does, as σ²). V is carried from level to level scaled by (σ_prev/σ)², the growth of
    /// the curvature. Without it the step is η·(σ/σ₁)² in ln s for every element.
    pub preconditioned: bool,
}

impl AnnealedSettings {
    /// The settings `--separator annealed` and the plugin's annealed choice start from
    /// (measurements: models/EXPERIMENTS.md, "Annealed Langevin: the update" and "Langevin
    /// separators on the evaluation's sets").
    pub const DEFAULT: AnnealedSettings = AnnealedSettings {
        steps_per_level: 20,
        eta: 0.05,
        likelihood_scale: 0.5,
        seed: 0,
        average: true,
        preconditioned: false,
    };
}
