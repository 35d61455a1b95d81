//! Separating one frame: the settings a run is asked for (validated here, once), the data term
//! and its cotangent, Adam, the latent search over every prior, and the [`separator::Separator`]
//! that takes a host-rate frame to per-stem audio. Imports `signal` and `priors`, never `files`.

pub mod annealed_langevin;
pub mod gaussian_noise;
pub mod langevin;
pub mod latent_search;
pub mod nmf_expert;
pub mod objective;
pub mod optimizer;
pub mod prior_scores;
pub mod separator;
pub mod settings;
pub mod step_halving;
pub mod waveform_langevin;
