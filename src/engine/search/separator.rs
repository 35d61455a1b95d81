//! One 5-s frame in, stems out: the unit of work a worker thread drives.
//!
//! A [`Separator`] owns the loaded priors and every buffer one frame needs, allocated once in
//! [`Separator::new`]. [`Separator::separate_frame`] takes a host-rate multichannel frame, makes a
//! mono 22.05 kHz copy, searches every prior's latent for the mixture's magnitudes (or runs
//! Langevin chains over them, or, with time-domain priors, over the mono copy's samples), and
//! turns the result into per-stem audio at the host rate and channel count
//! ([`Separator::stems`]). Progress and cancellation travel through atomics that another thread
//! may hold.

use super::method::Method;
use super::separation_error::SeparationError;
use crate::engine::constants::{BINS, HOP, N_FFT, PRIOR_SAMPLE_RATE};
use crate::engine::limits::check_format;
use crate::engine::priors::prior::Prior;
use crate::engine::search::latent_search::Progress;
use crate::engine::search::nmf_expert::NmfExpert;
use crate::engine::search::prior_scores::PriorScores;
use crate::engine::search::settings::{OutputMode, SeparationSettings};
use crate::engine::signal::frame_shape::FrameShape;
use crate::engine::signal::resample::FrameResampler;
use crate::engine::signal::resynth::{ExpertMasks, ResynthPlan};
use crate::engine::signal::stft::Stft;
use realfft::num_complex::Complex;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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
    /// The frame's length at the host rate, the priors' rate and grid.
    shape: FrameShape,
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
    /// The search every frame runs, chosen once.
    method: Method,
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
        let shape = FrameShape::new(settings.frame_seconds, host_rate);
        let (frame_len, columns) = (shape.host_samples, shape.columns);
        let n_stems = priors.len();
        let method = Method::choose(priors, &settings, host_rate, shape)?;
        // Time-domain priors have no dictionary.
        let expert = match method.is_waveform() {
            false => nmf_expert(priors, &settings, shape)?,
            true => None,
        };
        let resynth = match &expert {
            Some(expert) => ResynthPlan::with_expert(host_rate, frame_len, columns, n_stems, expert.grid())?,
            None => ResynthPlan::new(host_rate, frame_len, columns, n_stems)?,
        };
        Ok(Separator {
            settings,
            host_rate,
            channels,
            shape,
            downmix: vec![0.0; frame_len],
            resampler: FrameResampler::new(host_rate, PRIOR_SAMPLE_RATE, frame_len)?,
            prior_rate_frame: vec![0.0; shape.prior_samples],
            stft: Stft::new(N_FFT, HOP),
            spectrum: vec![Complex::new(0.0, 0.0); columns * BINS],
            mix_mag: vec![0.0; BINS * columns],
            method,
            silent_stems: vec![vec![0.0; BINS * columns]; n_stems],
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
        self.shape.host_samples
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
        self.method.steps_per_frame(&self.settings)
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
        let frame_len = self.frame_len();
        if frame.len() != self.channels || found_len != frame_len {
            return Err(SeparationError::FrameShape {
                expected_channels: self.channels,
                expected_len: frame_len,
                found_channels: frame.len(),
                found_len,
            });
        }
        let silent = finite_peak(frame)? < SILENCE_PEAK;
        self.analyze_mono(frame)?;
        match &mut self.method {
            Method::Waveform(_) => self.separate_waveform(frame, silent),
            Method::Spectrogram(_) => self.separate_magnitudes(frame, silent),
        }
    }

    /// The frame's mono downmix at 22.05 kHz ([`Self::prior_rate_frame`]) and its magnitudes
    /// ([`Self::mix_mag`]).
    fn analyze_mono(&mut self, frame: &[&[f32]]) -> Result<(), SeparationError> {
        let scale = 1.0 / self.channels as f32;
        self.downmix.iter_mut().for_each(|s| *s = 0.0);
        for channel in frame {
            for (d, &x) in self.downmix.iter_mut().zip(channel.iter()) {
                *d += x * scale;
            }
        }
        self.resampler
            .process_into(&self.downmix, &mut self.prior_rate_frame)?;
        let columns = self.shape.columns;
        self.stft
            .analyze_into(&self.prior_rate_frame, columns, &mut self.spectrum);
        self.stft
            .magnitudes_bin_major_into(&self.spectrum, columns, &mut self.mix_mag);
        Ok(())
    }

    /// Time-domain priors: the chains over the mono frame, then their own waveforms or masks from
    /// their magnitudes.
    fn separate_waveform(&mut self, frame: &[&[f32]], silent: bool) -> Result<(), SeparationError> {
        let Method::Waveform(waveform) = &mut self.method else {
            unreachable!("called for time-domain priors only");
        };
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
            return waveform.write_stems(&mut self.stems);
        }
        let stems: Vec<&[f32]> = waveform
            .stem_magnitudes(&mut self.stft, &mut self.spectrum)
            .iter()
            .map(Vec::as_slice)
            .collect();
        self.resynth.process_into(
            &self.mix_mag,
            &stems,
            self.settings.mode,
            self.settings.mask_exponent,
            None,
            frame,
            &mut self.stems,
        );
        Ok(())
    }

    /// Spectrogram priors: the NMF expert's fit, the search's stem magnitudes (the mix split
    /// evenly for a silent frame or the expert alone), and the masks of both.
    fn separate_magnitudes(&mut self, frame: &[&[f32]], silent: bool) -> Result<(), SeparationError> {
        let Method::Spectrogram(search) = &mut self.method else {
            unreachable!("called for spectrogram priors only");
        };
        if let (Some(expert), false) = (&mut self.expert, silent) {
            expert.fit(&self.prior_rate_frame);
        }
        let expert_alone = self.expert.is_some() && self.settings.nmf_alone();
        let stems: Vec<&[f32]> = if silent || expert_alone {
            split_evenly(&self.mix_mag, &mut self.silent_stems)
        } else {
            search
                .run(
                    &mut self.priors,
                    self.settings.stem_threads,
                    &self.mix_mag,
                    &self.progress,
                    &self.cancel,
                )?
                .iter()
                .map(Vec::as_slice)
                .collect()
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

/// `mix_mag` split evenly over `stems` (each floored above 0, so masks stay defined).
fn split_evenly<'a>(mix_mag: &[f32], stems: &'a mut [Vec<f32>]) -> Vec<&'a [f32]> {
    let share = 1.0 / stems.len() as f32;
    for stem in stems.iter_mut() {
        for (s, &x) in stem.iter_mut().zip(mix_mag) {
            *s = x * share + f32::MIN_POSITIVE;
        }
    }
    stems.iter().map(Vec::as_slice).collect()
}

/// The NMF expert the settings ask for: none at weight 0, and none (with a warning) when a prior
/// has no dictionary, so priors trained before dictionaries existed still separate.
fn nmf_expert(
    priors: &[Prior],
    settings: &SeparationSettings,
    shape: FrameShape,
) -> Result<Option<NmfExpert>, SeparationError> {
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
    Ok(Some(NmfExpert::new(
        &dictionaries,
        settings.nmf_iterations,
        shape.prior_samples,
    )?))
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
