//! Separating one frame: the settings a run is asked for (validated here, once), the data term
//! and its cotangent, Adam, the latent search over every prior, the Langevin chains, the NMF
//! expert, the one [`method::Method`] a separator runs, the [`separator::Separator`] that takes
//! a host-rate frame to per-stem audio, and the latency of a live stream of such frames
//! ([`stream_framing`]). Imports `signal`, `priors` and the engine's leaf modules, never `files`;
//! the plugin and the command line reach a frame's separation only through [`separator`].

pub mod annealed_langevin;
pub mod chain_settings;
pub mod gaussian_noise;
pub mod langevin;
pub mod latent_search;
pub mod method;
pub mod nmf_expert;
pub mod objective;
pub mod optimizer;
pub mod prior_scores;
pub mod separation_error;
pub mod separator;
pub mod settings;
pub mod step_halving;
pub mod stream_framing;
pub mod waveform_langevin;
pub mod waveform_path;
