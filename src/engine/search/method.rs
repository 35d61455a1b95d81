//! How a separator searches each frame: one method, chosen once from the settings and the priors'
//! domain when the separator is built. Spectrogram priors are searched by Adam over the flows'
//! latents, by SGLD chains, or by annealed chains over magnitudes; time-domain priors by chains over
//! the mono frame's samples ([`WaveformPath`]). A new search is a new variant here.

use super::annealed_langevin::AnnealedSearch;
use super::chain_settings::LangevinForm;
use super::langevin::LangevinSearch;
use super::latent_search::{LatentSearch, Progress, SearchError};
use super::prior_scores::PriorScores;
use super::separation_error::SeparationError;
use super::settings::{OutputMode, SearchKind, SeparationSettings, CALIBRATION_SAMPLES};
use super::waveform_path::{WaveformPath, WaveformSchedule};
use crate::engine::priors::calibration::frame_level_gains;
use crate::engine::priors::domain::Domain;
use crate::engine::priors::prior::Prior;
use crate::engine::signal::frame_shape::FrameShape;
use crate::engine::spread::spread;
use std::sync::atomic::AtomicBool;

/// The search a separator runs on every frame. One per separator, built once and moved never, so
/// the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Method {
    /// A search over the mixture's magnitudes with spectrogram priors.
    Spectrogram(SpectrogramSearch),
    /// Chains over the mono frame's samples with time-domain priors.
    Waveform(WaveformPath),
}

/// The searches over magnitudes.
pub enum SpectrogramSearch {
    /// Adam over every flow's latent from z = 0 (the default and the paper's search).
    Adam(LatentSearch),
    /// SGLD chains over the stems' magnitudes, driven by each prior's `score` graph.
    Langevin(LangevinSearch),
    /// Annealed Langevin chains down the priors' common noise ladder.
    Annealed {
        /// The chains.
        chains: AnnealedSearch,
        /// The noise levels every prior's `annealing` section shares.
        ladder: Vec<f32>,
    },
}

impl Method {
    /// The method `settings` ask for, built for `priors` (one domain, each with the graphs that
    /// method needs) at `host_rate`; Adam's level gains are calibrated here, once.
    pub fn choose(
        priors: &mut [Prior],
        settings: &SeparationSettings,
        host_rate: u32,
        shape: FrameShape,
    ) -> Result<Self, SeparationError> {
        let n_stems = priors.len();
        let domain = common_domain(priors)?;
        if let (OutputMode::Waveform, Domain::Spectrogram) = (settings.mode, domain) {
            return Err(SeparationError::WaveformModeWithSpectrograms {
                stem: priors[0].stem().to_string(),
            });
        }
        if domain == Domain::Waveform {
            let stem = priors[0].stem().to_string();
            let schedule = match settings.search {
                SearchKind::Adam => return Err(SeparationError::WaveformWithAdam { stem }),
                SearchKind::Langevin(langevin) if langevin.form == LangevinForm::TextbookKl => {
                    return Err(SeparationError::KlOnWaveforms { stem })
                }
                SearchKind::Langevin(langevin) => WaveformSchedule::Langevin(langevin),
                SearchKind::Annealed(annealed) => WaveformSchedule::Annealed {
                    settings: annealed,
                    ladder: common_ladder(priors)?,
                },
            };
            return Ok(Method::Waveform(WaveformPath::new(
                priors, schedule, host_rate, shape,
            )?));
        }
        let search = match settings.search {
            SearchKind::Adam => SpectrogramSearch::Adam(calibrated_search(priors, settings, shape.columns)?),
            SearchKind::Langevin(langevin) => {
                if let Some(prior) = priors.iter().find(|p| !p.has_score()) {
                    return Err(SeparationError::NoScore {
                        stem: prior.stem().to_string(),
                    });
                }
                SpectrogramSearch::Langevin(LangevinSearch::new(n_stems, shape.columns, langevin))
            }
            SearchKind::Annealed(annealed) => SpectrogramSearch::Annealed {
                chains: AnnealedSearch::new(n_stems, shape.columns, annealed),
                ladder: common_ladder(priors)?,
            },
        };
        Ok(Method::Spectrogram(search))
    }

    /// Steps per frame: Adam's iterations, the Langevin chains' steps, or the annealed chains'
    /// steps over the whole ladder.
    pub fn steps_per_frame(&self, settings: &SeparationSettings) -> usize {
        match self {
            Method::Waveform(waveform) => waveform.steps(),
            Method::Spectrogram(SpectrogramSearch::Adam(_)) => settings.iterations,
            Method::Spectrogram(SpectrogramSearch::Langevin(chains)) => chains.settings().steps,
            Method::Spectrogram(SpectrogramSearch::Annealed { chains, ladder }) => {
                chains.settings().steps_per_level * ladder.len()
            }
        }
    }

    /// Whether the priors are time-domain ones (no NMF dictionary, no latent to calibrate).
    pub fn is_waveform(&self) -> bool {
        matches!(self, Method::Waveform(_))
    }
}

impl SpectrogramSearch {
    /// Searches the stems' magnitudes for `mix_mag` (bin-major) with `priors` on `threads`; the
    /// stems' magnitudes, bin-major, in stem order.
    pub fn run(
        &mut self,
        priors: &mut [Prior],
        threads: usize,
        mix_mag: &[f32],
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<&[Vec<f32>], SearchError> {
        match self {
            SpectrogramSearch::Adam(search) => {
                search.run(priors, mix_mag, progress, cancel)?;
                Ok(search.stems())
            }
            SpectrogramSearch::Langevin(chains) => {
                let mut scores = PriorScores { priors, threads };
                chains.run(&mut scores, mix_mag, progress, cancel)?;
                Ok(chains.stems())
            }
            SpectrogramSearch::Annealed { chains, ladder } => {
                let mut scores = PriorScores { priors, threads };
                chains.run(&mut scores, mix_mag, ladder, progress, cancel)?;
                Ok(chains.stems())
            }
        }
    }
}

/// Adam's search with each prior's level gains (its calibration raised to the settings'
/// strength), the priors calibrated side by side.
fn calibrated_search(
    priors: &mut [Prior],
    settings: &SeparationSettings,
    columns: usize,
) -> Result<LatentSearch, SeparationError> {
    let mut search = LatentSearch::new(priors.len(), columns, *settings);
    let strength = settings.calibration_strength;
    if strength > 0.0 {
        let all_gains = spread(settings.stem_threads, priors.iter_mut().collect(), &|prior| {
            frame_level_gains(prior, CALIBRATION_SAMPLES, settings.calibration_trim)
        })
        .map_err(SearchError::from)?;
        for (i, gains) in all_gains.iter().enumerate() {
            let gains: Vec<f32> = gains.iter().map(|g| g.powf(strength)).collect();
            search.set_level_gains(i, &gains)?;
        }
    }
    Ok(search)
}

/// The domain every prior shares, or the error naming one prior of each.
fn common_domain(priors: &[Prior]) -> Result<Domain, SeparationError> {
    let find = |domain| {
        priors
            .iter()
            .find(|p| p.domain() == domain)
            .map(|p| p.stem().to_string())
    };
    match (find(Domain::Spectrogram), find(Domain::Waveform)) {
        (Some(spectrogram), Some(waveform)) => Err(SeparationError::MixedDomains {
            spectrogram,
            waveform,
        }),
        (None, Some(_)) => Ok(Domain::Waveform),
        _ => Ok(Domain::Spectrogram),
    }
}

/// The noise ladder every prior's `annealing` section shares, or why there is none.
fn common_ladder(priors: &[Prior]) -> Result<Vec<f32>, SeparationError> {
    if let Some(prior) = priors.iter().find(|p| !p.has_noisy_score()) {
        return Err(SeparationError::NoNoisyScore {
            stem: prior.stem().to_string(),
        });
    }
    let first = &priors[0];
    if let Some(other) = priors.iter().find(|p| p.noise_ladder() != first.noise_ladder()) {
        return Err(SeparationError::MixedLadders {
            first: first.stem().to_string(),
            expected: first.noise_ladder().to_vec(),
            stem: other.stem().to_string(),
            found: other.noise_ladder().to_vec(),
        });
    }
    Ok(first.noise_ladder().to_vec())
}
