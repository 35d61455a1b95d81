//! One 5-s frame in, stems out: the unit of work a worker thread drives.
//!
//! A [`Separator`] owns the loaded priors and every buffer one frame needs, allocated once in
//! [`Separator::new`]. [`Separator::separate_frame`] takes a host-rate multichannel frame, makes a
//! mono 22.05 kHz copy, searches every prior's latent for the mixture's magnitudes (or runs
//! Langevin chains over them, or, with time-domain priors, over the mono copy's samples), and
//! turns the result into per-stem audio at the host rate and channel count
//! ([`Separator::stems`]). Progress and cancellation travel through atomics that another thread
//! may hold.

use crate::engine::constants::{BINS, FRAMES, FRAME_SAMPLES, HOP, N_FFT, PRIOR_SAMPLE_RATE};
use crate::engine::limits::{check_format, FormatError};
use crate::engine::priors::calibration::frame_level_gains;
use crate::engine::priors::manifest::Domain;
use crate::engine::priors::prior::Prior;
use crate::engine::search::annealed_langevin::AnnealedSearch;
use crate::engine::search::langevin::LangevinForm;
use crate::engine::search::langevin::LangevinSearch;
use crate::engine::search::latent_search::{LatentSearch, Progress, SearchError};
use crate::engine::search::nmf_expert::{ExpertError, NmfExpert};
use crate::engine::search::prior_scores::PriorScores;
use crate::engine::search::settings::{
    OutputMode, SearchKind, SeparationSettings, SettingsError, CALIBRATION_SAMPLES,
};
use crate::engine::search::waveform_langevin::WaveformChains;
use crate::engine::signal::frames::frame_len_at;
use crate::engine::signal::resample::{FrameResampler, ResampleError};
use crate::engine::signal::resynth::{ExpertMasks, ResynthError, ResynthPlan};
use crate::engine::signal::stft::Stft;
use crate::engine::spread::spread;
use realfft::num_complex::Complex;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
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

/// How time-domain priors' chains run.
#[derive(Debug, Clone, Copy)]
enum WaveformSchedule {
    /// SGLD with these settings.
    Langevin(crate::engine::search::langevin::LangevinSettings),
    /// Annealed over the priors' common ladder.
    Annealed(crate::engine::search::annealed_langevin::AnnealedSettings),
}

/// What a separator with time-domain priors holds besides the spectrogram path's buffers.
struct WaveformPath {
    /// The chains over the padded mono 22.05 kHz frame.
    chains: WaveformChains,
    /// SGLD or annealed.
    schedule: WaveformSchedule,
    /// The priors' common ladder (annealed only; empty otherwise).
    ladder: Vec<f32>,
    /// The mono 22.05 kHz frame zero-padded to a multiple of the priors' largest time multiple.
    padded_mix: Vec<f32>,
    /// Each stem's magnitudes from its chain's first [`FRAME_SAMPLES`] samples (bin-major).
    stem_mags: Vec<Vec<f32>>,
    /// 22.05 kHz → host rate, for [`OutputMode::Waveform`].
    to_host: FrameResampler,
    /// One stem's chain at the host rate (the resampler's output length).
    host_stem: Vec<f32>,
}

impl WaveformPath {
    /// Buffers for `priors` (all waveform priors) under `settings`.
    fn new(priors: &[Prior], settings: &SeparationSettings, host_rate: u32) -> Result<Self, SeparationError> {
        let stem = priors[0].stem().to_string();
        let schedule = match settings.search {
            SearchKind::Adam => return Err(SeparationError::WaveformWithAdam { stem }),
            SearchKind::Langevin(langevin) if langevin.form == LangevinForm::TextbookKl => {
                return Err(SeparationError::KlOnWaveforms { stem })
            }
            SearchKind::Langevin(langevin) => WaveformSchedule::Langevin(langevin),
            SearchKind::Annealed(annealed) => WaveformSchedule::Annealed(annealed),
        };
        let (ladder, seed) = match schedule {
            WaveformSchedule::Langevin(langevin) => (Vec::new(), langevin.seed),
            WaveformSchedule::Annealed(annealed) => (common_ladder(priors)?, annealed.seed),
        };
        let multiple = priors.iter().map(Prior::time_multiple).max().unwrap_or(1);
        let samples = FRAME_SAMPLES.div_ceil(multiple) * multiple;
        let to_host = FrameResampler::new(PRIOR_SAMPLE_RATE, host_rate, FRAME_SAMPLES)?;
        Ok(WaveformPath {
            chains: WaveformChains::new(priors.len(), samples, seed),
            schedule,
            ladder,
            padded_mix: vec![0.0; samples],
            stem_mags: vec![vec![0.0; BINS * FRAMES]; priors.len()],
            host_stem: vec![0.0; to_host.output_len(FRAME_SAMPLES)],
            to_host,
        })
    }

    /// Steps per frame.
    fn steps(&self) -> usize {
        match self.schedule {
            WaveformSchedule::Langevin(langevin) => langevin.steps,
            WaveformSchedule::Annealed(annealed) => annealed.steps_per_level * self.ladder.len(),
        }
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

/// Peak below which a frame counts as silent (−120 dBFS) and skips the search.
const SILENCE_PEAK: f32 = 1e-6;

/// Separates one host-rate frame at a time with a fixed set of priors.
pub struct Separator {
    /// The priors, one per stem, in output order.
    priors: Vec<Prior>,
    /// Optimizer, objective and output mode.
    settings: SeparationSettings,
    /// Input and output sample rate.
    host_rate: u32,
    /// Input and output channel count.
    channels: usize,
    /// Samples per channel of one frame at the host rate (5 s).
    frame_len: usize,
    /// Mono downmix of the current frame at the host rate.
    downmix: Vec<f32>,
    /// Host rate → 22.05 kHz for the mono copy the priors see.
    resampler: FrameResampler,
    /// The mono frame at 22.05 kHz.
    prior_rate_frame: Vec<f32>,
    /// STFT at the prior grid (1024 / 256).
    stft: Stft,
    /// Complex spectrum of the mono frame, frame-major.
    spectrum: Vec<Complex<f32>>,
    /// Mixture magnitudes, bin-major, as the priors take them.
    mix_mag: Vec<f32>,
    /// Adam over every prior's latent.
    search: LatentSearch,
    /// The Langevin chains, when the settings ask for them instead of Adam.
    langevin: Option<LangevinSearch>,
    /// The annealed Langevin chains and the priors' common noise ladder, when the settings ask
    /// for them.
    annealed: Option<(AnnealedSearch, Vec<f32>)>,
    /// The chains of time-domain priors (then `langevin` and `annealed` are `None`).
    waveform: Option<WaveformPath>,
    /// The NMF expert, when its weight is above 0 and every prior has a dictionary.
    expert: Option<NmfExpert>,
    /// Stem magnitudes used for a silent frame (the mix split evenly).
    silent_stems: Vec<Vec<f32>>,
    /// Masks → per-stem audio at the host rate, full band, every channel.
    resynth: ResynthPlan,
    /// Output audio: stem × channel × frame_len.
    stems: Vec<Vec<Vec<f32>>>,
    /// Iteration counters another thread may read.
    progress: Arc<Progress>,
    /// Set by another thread to stop the frame in work.
    cancel: Arc<AtomicBool>,
}

/// A separator that could not be built, with the priors it was given.
pub struct NotBuilt {
    /// Why not.
    pub error: SeparationError,
    /// The priors, unchanged.
    pub priors: Vec<Prior>,
}

impl Separator {
    /// Allocate everything one frame needs for `channels` channels at `host_rate`.
    pub fn new(
        priors: Vec<Prior>,
        settings: SeparationSettings,
        host_rate: u32,
        channels: usize,
    ) -> Result<Self, SeparationError> {
        Self::new_or_return(priors, settings, host_rate, channels).map_err(|failed| failed.error)
    }

    /// [`Separator::new`], giving the priors back when the separator cannot be built, so a
    /// caller can try other settings without loading them again (the plugin, whose user may
    /// pick a separator the loaded priors do not support and then switch back).
    pub fn new_or_return(
        mut priors: Vec<Prior>,
        settings: SeparationSettings,
        host_rate: u32,
        channels: usize,
    ) -> Result<Self, Box<NotBuilt>> {
        match Self::assemble(&mut priors, settings, host_rate, channels) {
            Ok(mut separator) => {
                separator.priors = priors;
                Ok(separator)
            }
            Err(error) => Err(Box::new(NotBuilt { error, priors })),
        }
    }

    /// Everything but the priors themselves, which stay with the caller.
    fn assemble(
        priors: &mut [Prior],
        settings: SeparationSettings,
        host_rate: u32,
        channels: usize,
    ) -> Result<Self, SeparationError> {
        if priors.is_empty() {
            return Err(SeparationError::NoPriors);
        }
        check_format(host_rate, channels)?;
        settings.validate()?;
        let frame_len = frame_len_at(host_rate);
        let n_stems = priors.len();
        let domain = common_domain(priors)?;
        if let (OutputMode::Waveform, Domain::Spectrogram) = (settings.mode, domain) {
            return Err(SeparationError::WaveformModeWithSpectrograms {
                stem: priors[0].stem().to_string(),
            });
        }
        let waveform = match domain {
            Domain::Waveform => Some(WaveformPath::new(priors, &settings, host_rate)?),
            Domain::Spectrogram => None,
        };
        let spectrogram = waveform.is_none();
        let annealed = match settings.search {
            SearchKind::Annealed(annealed) if spectrogram => Some((
                AnnealedSearch::new(n_stems, FRAMES, annealed),
                common_ladder(priors)?,
            )),
            _ => None,
        };
        let langevin = match settings.search {
            SearchKind::Adam | SearchKind::Annealed(_) => None,
            SearchKind::Langevin(_) if !spectrogram => None,
            SearchKind::Langevin(langevin) => {
                if let Some(prior) = priors.iter().find(|p| !p.has_score()) {
                    return Err(SeparationError::NoScore {
                        stem: prior.stem().to_string(),
                    });
                }
                Some(LangevinSearch::new(n_stems, FRAMES, langevin))
            }
        };
        // Time-domain priors have neither a dictionary nor a latent to calibrate.
        let expert = match spectrogram {
            true => nmf_expert(priors, &settings)?,
            false => None,
        };
        let resynth = match &expert {
            Some(expert) => ResynthPlan::with_expert(host_rate, frame_len, n_stems, expert.grid())?,
            None => ResynthPlan::new(host_rate, frame_len, n_stems)?,
        };
        let mut search = LatentSearch::new(n_stems, FRAMES, settings);
        let strength = settings.calibration_strength;
        if strength > 0.0 && spectrogram {
            // Each prior's gains on its own, the priors side by side.
            let all_gains = spread(settings.stem_threads, priors.iter_mut().collect(), &|prior| {
                frame_level_gains(prior, CALIBRATION_SAMPLES, settings.calibration_trim)
            })
            .map_err(SearchError::from)?;
            for (i, gains) in all_gains.iter().enumerate() {
                let gains: Vec<f32> = gains.iter().map(|g| g.powf(strength)).collect();
                search.set_level_gains(i, &gains)?;
            }
        }
        Ok(Separator {
            settings,
            host_rate,
            channels,
            frame_len,
            downmix: vec![0.0; frame_len],
            resampler: FrameResampler::new(host_rate, PRIOR_SAMPLE_RATE, frame_len)?,
            prior_rate_frame: vec![0.0; FRAME_SAMPLES],
            stft: Stft::new(N_FFT, HOP),
            spectrum: vec![Complex::new(0.0, 0.0); FRAMES * BINS],
            mix_mag: vec![0.0; BINS * FRAMES],
            search,
            langevin,
            annealed,
            waveform,
            silent_stems: vec![vec![0.0; BINS * FRAMES]; n_stems],
            resynth,
            expert,
            stems: vec![vec![vec![0.0; frame_len]; channels]; n_stems],
            progress: Arc::new(Progress::new()),
            cancel: Arc::new(AtomicBool::new(false)),
            priors: Vec::new(),
        })
    }

    /// Samples per channel of one frame at the host rate.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// The host sample rate this separator was built for.
    pub fn host_rate(&self) -> u32 {
        self.host_rate
    }

    /// The channel count this separator was built for.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The settings in force.
    pub fn settings(&self) -> &SeparationSettings {
        &self.settings
    }

    /// Stem names in output order.
    pub fn stem_names(&self) -> impl Iterator<Item = &str> {
        self.priors.iter().map(Prior::stem)
    }

    /// Steps of the search per frame: Adam's iterations, the Langevin chains' steps, or the
    /// annealed chains' steps over the whole ladder.
    pub fn steps_per_frame(&self) -> usize {
        if let Some(waveform) = &self.waveform {
            return waveform.steps();
        }
        match (&self.settings.search, &self.annealed) {
            (SearchKind::Langevin(langevin), _) => langevin.steps,
            (SearchKind::Annealed(annealed), Some((_, ladder))) => annealed.steps_per_level * ladder.len(),
            _ => self.settings.iterations,
        }
    }

    /// Number of stems.
    pub fn stem_count(&self) -> usize {
        self.priors.len()
    }

    /// Iteration progress of the frame in work, readable from any thread.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Set this flag from any thread to cancel the frame in work (and every later one until the
    /// owner clears it: the separator never clears it itself, so a request made just before a
    /// frame starts is not lost).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// Polls `flag` instead of the separator's own cancel flag (a worker shares one flag across
    /// the separators it builds).
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = flag;
    }

    /// Records iterations in `progress` from now on instead of this separator's own record, so a
    /// reader that outlives separators (the plugin's watchdog and editor) keeps one record.
    pub fn set_progress(&mut self, progress: Arc<Progress>) {
        self.progress = progress;
    }

    /// Separate one frame: `frame[channel]` holds [`Self::frame_len`] host-rate samples (zero-pad a
    /// short last frame). The stems are then in [`Self::stems`].
    pub fn separate_frame(&mut self, frame: &[&[f32]]) -> Result<(), SeparationError> {
        crate::engine::fault::inject(crate::engine::fault::Site::Frame);
        let found_len = frame.iter().map(|c| c.len()).min().unwrap_or(0);
        if frame.len() != self.channels || found_len != self.frame_len {
            return Err(SeparationError::FrameShape {
                expected_channels: self.channels,
                expected_len: self.frame_len,
                found_channels: frame.len(),
                found_len,
            });
        }
        let peak = finite_peak(frame)?;
        let scale = 1.0 / self.channels as f32;
        self.downmix.iter_mut().for_each(|s| *s = 0.0);
        for channel in frame {
            for (d, &x) in self.downmix.iter_mut().zip(channel.iter()) {
                *d += x * scale;
            }
        }
        self.resampler
            .process_into(&self.downmix, &mut self.prior_rate_frame)?;
        self.stft
            .analyze_into(&self.prior_rate_frame, FRAMES, &mut self.spectrum);
        self.stft
            .magnitudes_bin_major_into(&self.spectrum, FRAMES, &mut self.mix_mag);

        let silent = peak < SILENCE_PEAK;
        if let Some(waveform) = &mut self.waveform {
            let mut scores = PriorScores {
                priors: &mut self.priors,
                threads: self.settings.stem_threads,
            };
            waveform.run(
                &mut scores,
                &self.prior_rate_frame,
                silent,
                &self.progress,
                &self.cancel,
            )?;
            if self.settings.mode == OutputMode::Waveform {
                waveform.write_stems(&mut self.stems)?;
                return Ok(());
            }
            for (chain, mags) in waveform.chains.stems().iter().zip(&mut waveform.stem_mags) {
                self.stft
                    .analyze_into(&chain[..FRAME_SAMPLES], FRAMES, &mut self.spectrum);
                self.stft.magnitudes_bin_major_into(&self.spectrum, FRAMES, mags);
            }
            let stems: Vec<&[f32]> = waveform.stem_mags.iter().map(Vec::as_slice).collect();
            self.resynth.process_into(
                &self.mix_mag,
                &stems,
                self.settings.mode,
                self.settings.mask_exponent,
                None,
                frame,
                &mut self.stems,
            );
            return Ok(());
        }
        if let (Some(expert), false) = (&mut self.expert, silent) {
            expert.fit(&self.prior_rate_frame);
        }
        let expert_alone = self.expert.is_some() && self.settings.nmf_alone();
        let stems: Vec<&[f32]> = if silent || expert_alone {
            let share = 1.0 / self.priors.len() as f32;
            for stem in &mut self.silent_stems {
                for (s, &x) in stem.iter_mut().zip(&self.mix_mag) {
                    *s = x * share + f32::MIN_POSITIVE;
                }
            }
            self.silent_stems.iter().map(Vec::as_slice).collect()
        } else if let Some(langevin) = &mut self.langevin {
            let mut scores = PriorScores {
                priors: &mut self.priors,
                threads: self.settings.stem_threads,
            };
            langevin.run(&mut scores, &self.mix_mag, &self.progress, &self.cancel)?;
            langevin.stems().iter().map(Vec::as_slice).collect()
        } else if let Some((annealed, ladder)) = &mut self.annealed {
            let mut scores = PriorScores {
                priors: &mut self.priors,
                threads: self.settings.stem_threads,
            };
            annealed.run(&mut scores, &self.mix_mag, ladder, &self.progress, &self.cancel)?;
            annealed.stems().iter().map(Vec::as_slice).collect()
        } else {
            self.search
                .run(&mut self.priors, &self.mix_mag, &self.progress, &self.cancel)?;
            self.search.stems().iter().map(Vec::as_slice).collect()
        };
        let expert = match (&self.expert, silent) {
            (Some(expert), false) => Some(ExpertMasks {
                masks: expert.masks(),
                weight: self.settings.nmf_weight,
            }),
            _ => None,
        };
        self.resynth.process_into(
            &self.mix_mag,
            &stems,
            self.settings.mode,
            self.settings.mask_exponent,
            expert,
            frame,
            &mut self.stems,
        );
        Ok(())
    }

    /// The stems of the last separated frame: stem × channel × [`Self::frame_len`] samples.
    pub fn stems(&self) -> &[Vec<Vec<f32>>] {
        &self.stems
    }
}

impl WaveformPath {
    /// Runs the chains on the mono frame `mix` (the mixture split evenly when `silent`).
    fn run(
        &mut self,
        scores: &mut PriorScores<'_>,
        mix: &[f32],
        silent: bool,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(), SeparationError> {
        self.padded_mix[..mix.len()].copy_from_slice(mix);
        self.padded_mix[mix.len()..].fill(0.0);
        let (chains, mix) = (&mut self.chains, &self.padded_mix);
        match (silent, self.schedule) {
            (true, _) => chains.split_evenly(mix)?,
            (false, WaveformSchedule::Langevin(settings)) => {
                chains.run_langevin(scores, mix, &settings, progress, cancel)?
            }
            (false, WaveformSchedule::Annealed(settings)) => {
                chains.run_annealed(scores, mix, &self.ladder, &settings, progress, cancel)?
            }
        }
        Ok(())
    }

    /// [`OutputMode::Waveform`]: each stem's chain (its first [`FRAME_SAMPLES`] samples)
    /// resampled to the host rate, on every channel of `stems` (stem × channel × frame length).
    fn write_stems(&mut self, stems: &mut [Vec<Vec<f32>>]) -> Result<(), SeparationError> {
        for (chain, channels) in self.chains.stems().iter().zip(stems.iter_mut()) {
            self.to_host
                .process_into(&chain[..FRAME_SAMPLES], &mut self.host_stem)?;
            for channel in channels.iter_mut() {
                let n = channel.len().min(self.host_stem.len());
                channel[..n].copy_from_slice(&self.host_stem[..n]);
                channel[n..].fill(0.0);
            }
        }
        Ok(())
    }
}

/// The NMF expert the settings ask for: none at weight 0, and none (with a warning) when a prior
/// has no dictionary, so priors trained before dictionaries existed still separate.
fn nmf_expert(priors: &[Prior], settings: &SeparationSettings) -> Result<Option<NmfExpert>, SeparationError> {
    if settings.nmf_weight <= 0.0 {
        return Ok(None);
    }
    let dictionaries: Option<Vec<_>> = priors
        .iter()
        .map(|p| p.nmf_dictionary().map(|d| (p.stem(), d)))
        .collect();
    let Some(dictionaries) = dictionaries else {
        let without: Vec<&str> = priors
            .iter()
            .filter(|p| p.nmf_dictionary().is_none())
            .map(Prior::stem)
            .collect();
        log::warn!(
            "no NMF dictionary in prior(s) {}: separating with the flows alone (re-train, or add one with `python -m stemflow_training.nmf`)",
            without.join(", ")
        );
        return Ok(None);
    };
    Ok(Some(NmfExpert::new(&dictionaries, settings.nmf_iterations)?))
}

/// The largest |sample| of `frame`, or where its first non-finite sample is.
fn finite_peak(frame: &[&[f32]]) -> Result<f32, SeparationError> {
    let mut peak = 0.0f32;
    for (channel, samples) in frame.iter().enumerate() {
        for (sample, &x) in samples.iter().enumerate() {
            if !x.is_finite() {
                return Err(SeparationError::NonFiniteInput {
                    channel,
                    sample,
                    found: x,
                });
            }
            peak = peak.max(x.abs());
        }
    }
    Ok(peak)
}

impl Separator {
    /// Give the priors back, e.g. to build a separator with other settings without reloading them.
    pub fn into_priors(self) -> Vec<Prior> {
        self.priors
    }
}
