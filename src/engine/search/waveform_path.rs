//! The separator's method for time-domain priors: chains over the mono 22.05 kHz frame's samples
//! (SGLD, or annealed down the priors' common ladder), and the buffers that turn the chains back
//! into magnitudes for the masks or, in waveform output, into host-rate stems.

use super::chain_settings::AnnealedSettings;
use super::chain_settings::LangevinSettings;
use super::latent_search::Progress;
use super::prior_scores::PriorScores;
use super::separation_error::SeparationError;
use super::waveform_langevin::WaveformChains;
use crate::engine::constants::{BINS, PRIOR_SAMPLE_RATE};
use crate::engine::priors::prior::Prior;
use crate::engine::signal::frame_shape::FrameShape;
use crate::engine::signal::resample::FrameResampler;
use crate::engine::signal::stft::Stft;
use realfft::num_complex::Complex;
use std::sync::atomic::AtomicBool;

/// How time-domain priors' chains run.
#[derive(Debug, Clone)]
pub enum WaveformSchedule {
    /// SGLD with these settings.
    Langevin(LangevinSettings),
    /// Annealed down the priors' common noise ladder.
    Annealed {
        /// The chains' settings.
        settings: AnnealedSettings,
        /// The noise levels every prior's `annealing` section shares.
        ladder: Vec<f32>,
    },
}

/// What a separator with time-domain priors holds besides the spectrogram path's buffers.
pub struct WaveformPath {
    /// The chains over the padded mono 22.05 kHz frame.
    chains: WaveformChains,
    /// SGLD or annealed.
    schedule: WaveformSchedule,
    /// The mono 22.05 kHz frame zero-padded to a multiple of the priors' largest time multiple.
    padded_mix: Vec<f32>,
    /// Each stem's magnitudes from its chain's first frame's samples (bin-major).
    stem_mags: Vec<Vec<f32>>,
    /// 22.05 kHz → host rate, for waveform output.
    to_host: FrameResampler,
    /// One stem's chain at the host rate (the resampler's output length).
    host_stem: Vec<f32>,
    /// The frame's length in samples at the priors' rate and in STFT columns.
    shape: FrameShape,
}

impl WaveformPath {
    /// Buffers for `priors` (all waveform priors) running `schedule`, for stems at `host_rate`.
    pub fn new(
        priors: &[Prior],
        schedule: WaveformSchedule,
        host_rate: u32,
        shape: FrameShape,
    ) -> Result<Self, SeparationError> {
        let seed = match &schedule {
            WaveformSchedule::Langevin(langevin) => langevin.seed,
            WaveformSchedule::Annealed { settings, .. } => settings.seed,
        };
        let multiple = priors.iter().map(Prior::time_multiple).max().unwrap_or(1);
        let samples = shape.prior_samples.div_ceil(multiple) * multiple;
        let to_host = FrameResampler::new(PRIOR_SAMPLE_RATE, host_rate, shape.prior_samples)?;
        Ok(WaveformPath {
            chains: WaveformChains::new(priors.len(), samples, seed),
            schedule,
            padded_mix: vec![0.0; samples],
            stem_mags: vec![vec![0.0; BINS * shape.columns]; priors.len()],
            host_stem: vec![0.0; to_host.output_len(shape.prior_samples)],
            shape,
            to_host,
        })
    }

    /// Steps per frame.
    pub fn steps(&self) -> usize {
        match &self.schedule {
            WaveformSchedule::Langevin(langevin) => langevin.steps,
            WaveformSchedule::Annealed { settings, ladder } => settings.steps_per_level * ladder.len(),
        }
    }

    /// Runs the chains on the mono frame `mix` (the mixture split evenly when `silent`).
    pub fn run(
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
        match (silent, &self.schedule) {
            (true, _) => chains.split_evenly(mix)?,
            (false, WaveformSchedule::Langevin(settings)) => {
                chains.run_langevin(scores, mix, settings, progress, cancel)?
            }
            (false, WaveformSchedule::Annealed { settings, ladder }) => {
                chains.run_annealed(scores, mix, ladder, settings, progress, cancel)?
            }
        }
        Ok(())
    }

    /// Each stem's magnitudes (bin-major) from its chain's first frame's samples, with
    /// `stft` and its `spectrum` buffer.
    pub fn stem_magnitudes(&mut self, stft: &mut Stft, spectrum: &mut [Complex<f32>]) -> &[Vec<f32>] {
        for (chain, mags) in self.chains.stems().iter().zip(&mut self.stem_mags) {
            let (samples, columns) = (self.shape.prior_samples, self.shape.columns);
            stft.analyze_into(&chain[..samples], columns, spectrum);
            stft.magnitudes_bin_major_into(spectrum, columns, mags);
        }
        &self.stem_mags
    }

    /// Waveform output: each stem's chain (its first frame's samples) resampled to the
    /// host rate, on every channel of `stems` (stem × channel × frame length).
    pub fn write_stems(&mut self, stems: &mut [Vec<Vec<f32>>]) -> Result<(), SeparationError> {
        for (chain, channels) in self.chains.stems().iter().zip(stems.iter_mut()) {
            self.to_host
                .process_into(&chain[..self.shape.prior_samples], &mut self.host_stem)?;
            for channel in channels.iter_mut() {
                let n = channel.len().min(self.host_stem.len());
                channel[..n].copy_from_slice(&self.host_stem[..n]);
                channel[n..].fill(0.0);
            }
        }
        Ok(())
    }
}
