//! What a separation run is asked to do: optimizer, objective, output mode and presets, and the
//! one range each setting must lie in ([`SeparationSettings::validate`]).

use crate::engine::bounds::Bounds;
use crate::engine::constants::FRAME_SECONDS;
use crate::engine::search::chain_settings::AnnealedSettings;
use crate::engine::search::chain_settings::LangevinSettings;
pub use crate::engine::signal::resynth::OutputMode;
use crate::engine::spread::default_threads;
use std::str::FromStr;
use thiserror::Error;

/// The separation objective: the data term alone (MLE) or with the weighted prior term (MAP).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Generalised KL divergence D(X ‖ Σ sᵢ) only (γ = 0); the paper's best scorer.
    Mle,
    /// D(X ‖ Σ sᵢ) − γ Σ log p(sᵢ), with γ in (0, 1].
    Map { gamma: f32 },
}

impl Objective {
    /// Weight of the prior term: 0 for MLE.
    pub fn gamma(self) -> f32 {
        match self {
            Objective::Mle => 0.0,
            Objective::Map { gamma } => gamma,
        }
    }
}

/// Adam over the latents: the paper's defaults are lr 0.01, 150 iterations, betas (0.9, 0.999).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamSettings {
    /// Step size.
    pub learning_rate: f32,
    /// Decay of the first-moment estimate.
    pub beta1: f32,
    /// Decay of the second-moment estimate.
    pub beta2: f32,
    /// Added to the square root of the second moment so the step stays finite.
    pub epsilon: f32,
}

impl Default for AdamSettings {
    fn default() -> Self {
        AdamSettings {
            learning_rate: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// Latent samples per prior for the level calibration: 4 × 432 frames per bin put the mean's
/// sampling error at a few percent, for 5 decodes per prior at load.
pub const CALIBRATION_SAMPLES: usize = 4;

/// Adam iterations per frame a run may ask for.
pub const ITERATIONS: Bounds = Bounds::closed(1.0, 100_000.0);
/// Adam step sizes a run may ask for.
pub const LEARNING_RATE: Bounds = Bounds::above(0.0, 10.0);
/// Adam's moment decays: below one, or the moments never forget.
pub const ADAM_BETA: Bounds = Bounds::below(0.0, 1.0);
/// Adam's denominator guard: positive, so a step stays finite.
pub const ADAM_EPSILON: Bounds = Bounds::above(0.0, 1.0);
/// Weights γ of the prior term under MAP (0 is MLE).
pub const GAMMA: Bounds = Bounds::above(0.0, 1.0);
/// Calibration strengths: 0 leaves the priors as they are, 1 puts them at their level.
pub const CALIBRATION_STRENGTH: Bounds = Bounds::closed(0.0, 4.0);
/// Calibration trims (the fraction of each bin's loudest latent samples left out of its level):
/// below one half, so the level stays above the median.
pub const CALIBRATION_TRIM: Bounds = Bounds::below(0.0, 0.5);
/// Mask exponents p of the consistent masks sᵢ^p / Σⱼ sⱼ^p: 1 is the ratio of magnitudes, 2 the
/// Wiener (power) mask, below 1 softer masks that share more of each cell.
pub const MASK_EXPONENT: Bounds = Bounds::closed(0.25, 4.0);
/// Threads the search may run the stems on.
pub const STEM_THREADS: Bounds = Bounds::closed(1.0, 64.0);
/// Seconds a separation frame may last: from one second (a live stream's short latency) to the
/// 5 s the priors were trained on.
pub const FRAME_LENGTH_SECONDS: Bounds = Bounds::closed(1.0, FRAME_SECONDS);
/// Seconds neighbouring frames may overlap: at most half a frame (checked against the frame's
/// length too), so a sample is shared by at most two frames.
pub const OVERLAP_SECONDS: Bounds = Bounds::closed(0.0, FRAME_SECONDS / 2.0);
/// The default overlap of neighbouring frames: half a second of crossfade, so a 5-s frame
/// advances by 4.5 s and a live stream's 2-s frame by 1.5 s.
pub const DEFAULT_OVERLAP_SECONDS: f64 = 0.5;
/// The length of the frames of a live stream (the plugin's, [`SeparationSettings::realtime_preset`]).
/// The graphs take any length (a multiple of their time multiple), and 2-s frames separate as well
/// as the 5-s frames the priors were trained on (the same average of medians on both evaluation
/// sets: models/EXPERIMENTS.md, "Shorter frames"), while a stream's latency is one frame plus the
/// processing allowance (`stream_framing`): 3 s in all instead of 8. Files keep 5-s frames, which
/// spend less of the work on the overlaps.
pub const LIVE_FRAME_SECONDS: f64 = 2.0;

/// The default calibration trim: each bin's loudest 10 % of latent samples are left out of its
/// level, because the mean of a wide level distribution is set by rare loud events that do not
/// carry to other timbres (measurements: models/EXPERIMENTS.md).
pub const DEFAULT_CALIBRATION_TRIM: f32 = 0.1;

/// The default mask exponent: softer than the magnitude ratio, which hedges a split the search
/// is unsure of (measurements: models/EXPERIMENTS.md). 1 restores s / Σ s exactly.
pub const DEFAULT_MASK_EXPONENT: f32 = 0.5;

/// Weights of the NMF expert in the output masks: 0 (the flow alone) to 1 (the NMF alone).
pub const NMF_WEIGHT: Bounds = Bounds::closed(0.0, 1.0);
/// Multiplicative updates of the NMF expert per frame.
pub const NMF_ITERATIONS: Bounds = Bounds::closed(1.0, 10_000.0);
/// The default weight of the NMF expert: the flow's and the NMF's masks count alike
/// (measurements: models/EXPERIMENTS.md).
pub const DEFAULT_NMF_WEIGHT: f32 = 0.5;
/// The default NMF updates per frame: from a flat start, 50 fit the mixture less closely than
/// 200 and separate better (measurements: models/EXPERIMENTS.md).
pub const DEFAULT_NMF_ITERATIONS: usize = 50;

/// The default calibration strength: halfway (in dB) from f(0) to the level (measurements:
/// models/EXPERIMENTS.md).
pub const DEFAULT_CALIBRATION_STRENGTH: f32 = 0.5;

/// A setting outside the range the engine accepts.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
#[error("setting `{field}`: expected a value in {expected}, found {found}")]
pub struct SettingsError {
    /// The field of [`SeparationSettings`] (dotted for nested ones: `adam.learning_rate`).
    pub field: &'static str,
    /// The range it must lie in.
    pub expected: Bounds,
    /// The value it has.
    pub found: f64,
}

/// `Ok` if `value` lies in `bounds`, else a [`SettingsError`] naming `field`.
fn check(field: &'static str, value: f64, bounds: Bounds) -> Result<(), SettingsError> {
    if bounds.contains(value) {
        Ok(())
    } else {
        Err(SettingsError {
            field,
            expected: bounds,
            found: value,
        })
    }
}

/// How a frame's stems are found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SearchKind {
    /// The paper's search: Adam on the data term over each prior's latent (`adam`, `iterations`,
    /// `objective`).
    Adam,
    /// Langevin chains over the stems' magnitudes under each prior's score (needs priors with a
    /// `score` graph).
    Langevin(LangevinSettings),
    /// Langevin chains annealed down the priors' noise ladder under their noise-conditioned
    /// scores (needs priors with an `annealing` section, all with the same ladder).
    Annealed(AnnealedSettings),
}

/// Langevin steps per frame a run may ask for.
pub const LANGEVIN_STEPS: Bounds = Bounds::closed(1.0, 100_000.0);
/// Langevin step sizes η.
pub const LANGEVIN_ETA: Bounds = Bounds::above(0.0, 10.0);
/// Widths σ of the Langevin mixture likelihood.
pub const LANGEVIN_SIGMA: Bounds = Bounds::above(0.0, 1.0e6);

/// The SGLD settings time-domain (waveform) priors start from, where the spectrogram priors
/// start from [`LangevinSettings::DEFAULT`]. The chains move in waveform amplitude (samples in
/// [-1, 1]): σ = 0.02 is a likelihood width of about −34 dBFS, and η = 10⁻⁴ keeps the data term's
/// step η/σ² = 0.25 per chain below 1 (with N stems the residual shrinks by N·η/σ² a step, stable
/// up to 7 stems) while the noise √(2η) ≈ 0.014 per sample is averaged over the second half of 200
/// steps. The textbook Gaussian rule (the KL rule is not defined on signed samples); `domain` and
/// `preconditioned` mean nothing for waveforms and are ignored. Measured on trained waveform
/// priors in models/EXPERIMENTS.md (the music FloWaveNet entries).
pub const WAVEFORM_LANGEVIN: LangevinSettings = LangevinSettings {
    steps: 200,
    eta: 1e-4,
    sigma: 0.02,
    form: crate::engine::search::chain_settings::LangevinForm::TextbookGaussian,
    domain: crate::engine::search::chain_settings::LangevinDomain::Magnitude,
    seed: 0,
    preconditioned: false,
    average: true,
};

/// The annealed settings time-domain (waveform) priors start from, where the spectrogram priors
/// start from [`AnnealedSettings::DEFAULT`]. At level σ the data term's step is
/// η_σ/(λσ)² = η/(λσ₁)² per chain at every level, and the prior's at most η/σ₁²: for a ladder
/// from σ₁ = 0.3 (in amplitude) and λ = 1, η = 0.01 makes both 0.11, below 1 for up to 9 stems.
/// 50 steps per level; `preconditioned` is ignored for waveforms. Measured on trained waveform
/// priors in models/EXPERIMENTS.md (the music FloWaveNet entries).
pub const WAVEFORM_ANNEALED: AnnealedSettings = AnnealedSettings {
    steps_per_level: 50,
    eta: 0.01,
    likelihood_scale: 1.0,
    seed: 0,
    average: true,
    preconditioned: false,
};

/// Everything one separation run needs to know besides the priors and the audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeparationSettings {
    /// Adam over the latents, or Langevin chains.
    pub search: SearchKind,
    /// Adam hyper-parameters.
    pub adam: AdamSettings,
    /// Adam iterations per frame.
    pub iterations: usize,
    /// MLE or MAP.
    pub objective: Objective,
    /// Mask, mixture-phase or (time-domain priors only) waveform output.
    pub mode: OutputMode,
    /// Exponent p of the consistent masks sᵢ^p / Σⱼ sⱼ^p: how sharply each time-frequency cell
    /// is given to the stem that explains most of it (no effect on mixture-phase output).
    pub mask_exponent: f32,
    /// Seconds one separation frame lasts (`signal::frame_shape`).
    pub frame_seconds: f64,
    /// Seconds two neighbouring frames overlap and crossfade over.
    pub overlap_seconds: f64,
    /// Level calibration (see `priors::calibration`): each prior's output is scaled per bin by
    /// (L[f(z)]/f(0))^strength, L the (trimmed) mean level — 0 leaves the priors as they are
    /// (the paper), 1 puts them at that level, 0.5 halfway in dB.
    pub calibration_strength: f32,
    /// Threads the latent search runs the stems' graphs on, side by side (the result does not
    /// depend on it).
    pub stem_threads: usize,
    /// The fraction of each bin's loudest latent samples the calibration leaves out of the
    /// level (0 = the mean level; see `priors::calibration::level_gains`).
    pub calibration_trim: f32,
    /// Weight w of the NMF expert (`search::nmf_expert`) in the output masks, a product of
    /// experts gᵢ^(1−w)·nᵢ^w of the flow's mask gᵢ and the NMF's nᵢ: 0 is the flow alone, 1 the
    /// NMF alone. Used only when every prior has an NMF dictionary.
    pub nmf_weight: f32,
    /// Multiplicative updates of the NMF expert's activations per frame.
    pub nmf_iterations: usize,
}

impl SeparationSettings {
    /// The shipped defaults: the paper's search (z = 0, Adam, MLE) shortened to
    /// [`DEFAULT_ITERATIONS`] steps of [`DEFAULT_LEARNING_RATE`], with level calibration and
    /// mixture-consistent masks, so the stems sum to the input.
    pub fn default_preset() -> Self {
        SeparationSettings {
            search: SearchKind::Adam,
            adam: AdamSettings {
                learning_rate: DEFAULT_LEARNING_RATE,
                ..AdamSettings::default()
            },
            iterations: DEFAULT_ITERATIONS,
            objective: Objective::Mle,
            mode: OutputMode::Consistent,
            mask_exponent: DEFAULT_MASK_EXPONENT,
            frame_seconds: FRAME_SECONDS,
            overlap_seconds: DEFAULT_OVERLAP_SECONDS,
            calibration_strength: DEFAULT_CALIBRATION_STRENGTH,
            calibration_trim: DEFAULT_CALIBRATION_TRIM,
            stem_threads: default_threads().min(STEM_THREADS.max as usize),
            nmf_weight: DEFAULT_NMF_WEIGHT,
            nmf_iterations: DEFAULT_NMF_ITERATIONS,
        }
    }

    /// Whether the masks are the NMF expert's alone (weight 1), so the flows' search is skipped
    /// when every prior has a dictionary.
    pub fn nmf_alone(&self) -> bool {
        self.nmf_weight >= NMF_WEIGHT.max as f32
    }

    /// `Ok` if every field lies in its range (the constants above), else the first that does not,
    /// with its range and value. The engine calls this once, when a separator is built.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check("iterations", self.iterations as f64, ITERATIONS)?;
        if let SearchKind::Langevin(langevin) = self.search {
            check("search.steps", langevin.steps as f64, LANGEVIN_STEPS)?;
            check("search.eta", f64::from(langevin.eta), LANGEVIN_ETA)?;
            check("search.sigma", f64::from(langevin.sigma), LANGEVIN_SIGMA)?;
        }
        if let SearchKind::Annealed(annealed) = self.search {
            check(
                "search.steps_per_level",
                annealed.steps_per_level as f64,
                LANGEVIN_STEPS,
            )?;
            check("search.eta", f64::from(annealed.eta), LANGEVIN_ETA)?;
            check(
                "search.likelihood_scale",
                f64::from(annealed.likelihood_scale),
                LANGEVIN_SIGMA,
            )?;
        }
        check("stem_threads", self.stem_threads as f64, STEM_THREADS)?;
        check(
            "adam.learning_rate",
            f64::from(self.adam.learning_rate),
            LEARNING_RATE,
        )?;
        check("adam.beta1", f64::from(self.adam.beta1), ADAM_BETA)?;
        check("adam.beta2", f64::from(self.adam.beta2), ADAM_BETA)?;
        check("adam.epsilon", f64::from(self.adam.epsilon), ADAM_EPSILON)?;
        if let Objective::Map { gamma } = self.objective {
            check("objective.gamma", f64::from(gamma), GAMMA)?;
        }
        check("mask_exponent", f64::from(self.mask_exponent), MASK_EXPONENT)?;
        check("frame_seconds", self.frame_seconds, FRAME_LENGTH_SECONDS)?;
        check("overlap_seconds", self.overlap_seconds, OVERLAP_SECONDS)?;
        check(
            "overlap_seconds",
            self.overlap_seconds,
            Bounds::closed(0.0, self.frame_seconds / 2.0),
        )?;
        check(
            "calibration_strength",
            f64::from(self.calibration_strength),
            CALIBRATION_STRENGTH,
        )?;
        check(
            "calibration_trim",
            f64::from(self.calibration_trim),
            CALIBRATION_TRIM,
        )?;
        check("nmf_weight", f64::from(self.nmf_weight), NMF_WEIGHT)?;
        check("nmf_iterations", self.nmf_iterations as f64, NMF_ITERATIONS)
    }

    /// Exactly the paper's settings: z = 0, Adam 0.01, 150 iterations, MLE, mixture phase, and
    /// the priors' outputs as they are (no level calibration, no NMF expert).
    pub fn paper_preset() -> Self {
        SeparationSettings {
            adam: AdamSettings::default(),
            iterations: PAPER_ITERATIONS,
            mode: OutputMode::MixturePhase,
            calibration_strength: 0.0,
            nmf_weight: 0.0,
            ..Self::default_preset()
        }
    }
}

impl SeparationSettings {
    /// The settings of a live stream (the plugin's, offline renders included, since a stream's
    /// latency is fixed when it starts): the default's search on frames of
    /// [`LIVE_FRAME_SECONDS`]. The default's search is short enough for playback (a fraction of
    /// the 1.5-s hop per frame of four stems; README, "Benchmark"), so realtime playback sounds as
    /// an offline render does, and both as `stemflow separate --preset realtime`.
    pub fn realtime_preset() -> Self {
        SeparationSettings {
            frame_seconds: LIVE_FRAME_SECONDS,
            ..Self::default_preset()
        }
    }
}

impl SeparationSettings {
    /// The NMF expert alone (weight 1): each prior's dictionary fitted to the mixture, the flows'
    /// search skipped, so a frame costs a fraction of a second (at a cost in quality;
    /// models/README.md, "Current results"). Needs priors with NMF dictionaries; priors without
    /// one separate with the flows, as the default does.
    pub fn nmf_preset() -> Self {
        SeparationSettings {
            nmf_weight: 1.0,
            ..Self::default_preset()
        }
    }
}

/// Adam iterations per frame of the paper (and of [`SeparationSettings::paper_preset`]).
pub const PAPER_ITERATIONS: usize = 150;
/// Adam iterations per frame of [`SeparationSettings::default_preset`]: a fifteenth of the
/// paper's. With the NMF expert beside the flows, 10 steps of 0.06 stay above the strong NMF on
/// every stem of both evaluation sets, close to 30 steps of 0.03 on the averages
/// (models/README.md, "Current results"; EXPERIMENTS.md, "Ten iterations").
pub const DEFAULT_ITERATIONS: usize = 10;
/// Adam's step of [`SeparationSettings::default_preset`] (the paper's is 0.01): larger steps
/// recover part of what a short search loses; 0.08 overshoots.
pub const DEFAULT_LEARNING_RATE: f32 = 0.06;

impl Default for SeparationSettings {
    fn default() -> Self {
        Self::default_preset()
    }
}

/// The named presets of `--preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// [`SeparationSettings::default_preset`].
    Default,
    /// [`SeparationSettings::paper_preset`].
    Paper,
    /// [`SeparationSettings::realtime_preset`].
    Realtime,
    /// [`SeparationSettings::nmf_preset`].
    Nmf,
}

impl Preset {
    /// The settings this preset stands for.
    pub fn settings(self) -> SeparationSettings {
        match self {
            Preset::Default => SeparationSettings::default_preset(),
            Preset::Paper => SeparationSettings::paper_preset(),
            Preset::Realtime => SeparationSettings::realtime_preset(),
            Preset::Nmf => SeparationSettings::nmf_preset(),
        }
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Preset::Default),
            "paper" => Ok(Preset::Paper),
            "realtime" => Ok(Preset::Realtime),
            "nmf" => Ok(Preset::Nmf),
            other => Err(format!(
                "expected `default`, `paper`, `realtime` or `nmf`, found `{other}`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_presets_are_valid() {
        assert_eq!(SeparationSettings::default_preset().validate(), Ok(()));
        assert_eq!(SeparationSettings::paper_preset().validate(), Ok(()));
        assert_eq!(SeparationSettings::realtime_preset().validate(), Ok(()));
        assert_eq!(SeparationSettings::nmf_preset().validate(), Ok(()));
        for search in [
            SearchKind::Langevin(WAVEFORM_LANGEVIN),
            SearchKind::Annealed(WAVEFORM_ANNEALED),
        ] {
            let settings = SeparationSettings {
                search,
                ..SeparationSettings::default_preset()
            };
            assert_eq!(settings.validate(), Ok(()));
        }
        // The waveform defaults' data step η/σ² stays below 1.
        let waveform = WAVEFORM_LANGEVIN;
        assert!(waveform.eta / (waveform.sigma * waveform.sigma) < 1.0);
        for (name, preset) in [
            ("default", Preset::Default),
            ("paper", Preset::Paper),
            ("realtime", Preset::Realtime),
            ("nmf", Preset::Nmf),
        ] {
            assert_eq!(name.parse::<Preset>(), Ok(preset));
        }
        assert!("fast".parse::<Preset>().unwrap_err().contains("`realtime`"));
    }

    /// The default searches a fraction of the paper's iterations, and realtime playback uses
    /// the default's search on the live stream's frames, so a bounce equals what was heard.
    #[test]
    fn the_realtime_preset_is_the_default_on_live_frames() {
        let default = SeparationSettings::default_preset();
        assert!(default.iterations * 10 <= SeparationSettings::paper_preset().iterations);
        assert_eq!(
            SeparationSettings::realtime_preset(),
            SeparationSettings {
                frame_seconds: LIVE_FRAME_SECONDS,
                ..default
            }
        );
        assert_eq!(default.frame_seconds, FRAME_SECONDS);
    }

    #[test]
    fn each_field_out_of_range_is_named_with_its_range_and_value() {
        let base = SeparationSettings::default_preset();
        let cases: Vec<(SeparationSettings, &str, f64)> = vec![
            (
                SeparationSettings {
                    iterations: 0,
                    ..base
                },
                "iterations",
                0.0,
            ),
            (
                SeparationSettings {
                    adam: AdamSettings {
                        learning_rate: -0.5,
                        ..base.adam
                    },
                    ..base
                },
                "adam.learning_rate",
                -0.5,
            ),
            (
                SeparationSettings {
                    objective: Objective::Map { gamma: 1.5 },
                    ..base
                },
                "objective.gamma",
                1.5,
            ),
            (
                SeparationSettings {
                    mask_exponent: 0.2,
                    ..base
                },
                "mask_exponent",
                0.20000000298023224,
            ),
            (
                SeparationSettings {
                    overlap_seconds: 3.0,
                    ..base
                },
                "overlap_seconds",
                3.0,
            ),
            (
                SeparationSettings {
                    calibration_strength: 5.0,
                    ..base
                },
                "calibration_strength",
                5.0,
            ),
            (
                SeparationSettings {
                    calibration_trim: 0.5,
                    ..base
                },
                "calibration_trim",
                0.5,
            ),
        ];
        for (settings, field, found) in cases {
            let err = settings.validate().unwrap_err();
            assert_eq!((err.field, err.found), (field, found));
            assert!(!err.expected.contains(found));
            assert!(err.to_string().contains(field), "{err}");
        }
        let nan = SeparationSettings {
            calibration_trim: f32::NAN,
            ..base
        };
        assert_eq!(nan.validate().unwrap_err().field, "calibration_trim");
    }
}
