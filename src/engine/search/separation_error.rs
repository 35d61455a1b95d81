//! Why a frame could not be separated: every error a separator's construction or a frame can
//! give, each saying what was expected and what was found.

use super::latent_search::SearchError;
use super::settings::SettingsError;
use crate::engine::limits::FormatError;
use crate::engine::search::nmf_expert::ExpertError;
use crate::engine::signal::resample::ResampleError;
use crate::engine::signal::resynth::ResynthError;
use thiserror::Error;

/// Why a frame could not be separated.
#[derive(Debug, Error)]
pub enum SeparationError {
    /// The latent search failed (a prior's graph failed, or the run was cancelled).
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The caller handed a frame of the wrong shape.
    #[error("expected a frame of {expected_channels} channels × {expected_len} samples, found {found_channels} × {found_len}")]
    FrameShape {
        /// Channels the separator was built for.
        expected_channels: usize,
        /// Samples per channel of one frame at the host rate.
        expected_len: usize,
        /// Channels handed in.
        found_channels: usize,
        /// Shortest channel handed in.
        found_len: usize,
    },
    /// Resampling the frame to the prior rate failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The output stage cannot be built for this format.
    #[error(transparent)]
    Resynth(#[from] ResynthError),
    /// A setting lies outside its range.
    #[error("cannot separate: {0}")]
    Settings(#[from] SettingsError),
    /// The audio's format is outside what the engine supports.
    #[error("cannot separate: {0}")]
    Format(#[from] FormatError),
    /// The frame holds NaN or infinite samples (callers zero them first, as the framer does).
    #[error("expected finite samples, found {found} at channel {channel}, sample {sample}")]
    NonFiniteInput {
        /// Channel of the first such sample.
        channel: usize,
        /// Its position in the frame.
        sample: usize,
        /// Its value.
        found: f32,
    },
    /// The priors' NMF dictionaries cannot be used together.
    #[error("cannot separate with the NMF expert: {0}")]
    Expert(#[from] ExpertError),
    /// A separator needs at least one prior.
    #[error("cannot separate: expected at least one prior, found none")]
    NoPriors,
    /// The Langevin search needs every prior's score, and this one has no `score` graph.
    #[error("cannot separate with Langevin dynamics: prior `{stem}` has no `score` graph (re-export it: `python -m stemflow_training.export --reexport DIR`)")]
    NoScore {
        /// The prior without one.
        stem: String,
    },
    /// The annealed search needs every prior's noise-conditioned score, and this one has none.
    #[error("cannot separate with annealed Langevin dynamics: prior `{stem}` has no `annealing` section (a noise-conditioned score; made by `python -m stemflow_training.noise_tune`)")]
    NoNoisyScore {
        /// The prior without one.
        stem: String,
    },
    /// The annealed search walks one ladder of noise levels for every stem.
    #[error("cannot separate with annealed Langevin dynamics: prior `{stem}` was fine-tuned on the noise levels {found:?}, expected those of `{first}`, {expected:?}")]
    MixedLadders {
        /// The first prior.
        first: String,
        /// Its ladder.
        expected: Vec<f32>,
        /// The prior whose ladder differs.
        stem: String,
        /// Its ladder.
        found: Vec<f32>,
    },
    /// The Adam latent search needs a flow's latent, which a time-domain prior does not have.
    #[error("cannot separate with the Adam latent search: prior `{stem}` is a time-domain (waveform) prior, and the Adam latent search works only on spectrogram priors; use `--separator sgld` or `--separator annealed`")]
    WaveformWithAdam {
        /// The first waveform prior.
        stem: String,
    },
    /// One run separates with priors of one domain.
    #[error("cannot separate with priors of two domains: `{spectrogram}` is a spectrogram prior and `{waveform}` a time-domain (waveform) prior; choose priors of one kind")]
    MixedDomains {
        /// A spectrogram prior.
        spectrogram: String,
        /// A waveform prior.
        waveform: String,
    },
    /// The KL likelihood compares magnitudes, and waveform chains move over signed samples.
    #[error("cannot separate with the textbook-KL Langevin rule: prior `{stem}` is a time-domain (waveform) prior, and the KL likelihood is defined on magnitude spectrograms only; use `--sgld-form textbook-gaussian` or `--sgld-form as-written`")]
    KlOnWaveforms {
        /// The first waveform prior.
        stem: String,
    },
    /// Waveform output is the chains' own waveforms, which only time-domain priors have.
    #[error("cannot write waveform output: prior `{stem}` is a spectrogram prior, and `--mode waveform` is for time-domain (waveform) priors; use `--mode consistent` or `--mode mixture-phase`")]
    WaveformModeWithSpectrograms {
        /// The first spectrogram prior.
        stem: String,
    },
}
