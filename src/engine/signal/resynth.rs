//! Turning separated magnitudes (prior grid: 22.05 kHz, 1024/256, 513 × 432) into full-band,
//! multichannel stem audio at the host rate: masks are built on the prior grid, interpolated
//! bilinearly onto a host STFT grid of the same time/frequency resolution, and applied to the
//! host-rate STFT of every channel; content above 11.025 kHz is shared out by each stem's share
//! of the top octave.

use realfft::num_complex::Complex;
use thiserror::Error;

use crate::engine::constants::{BINS, HOP, N_FFT, PRIOR_SAMPLE_RATE};
use crate::engine::limits::{check_sample_rate, FormatError};
use crate::engine::signal::stft::Stft;
use std::fmt;
use std::str::FromStr;

/// Mixture magnitudes at or below this count as silent: mixture-phase masks are 0 there.
pub const MIN_MIX_MAGNITUDE: f32 = 1e-8;
/// Largest gain a mixture-phase mask `sᵢ/|X|` may apply (a stem louder than the mixture by more
/// than 60 dB in one cell is clamped), so no Inf/NaN can reach the output.
pub const MAX_MIXTURE_PHASE_GAIN: f32 = 1000.0;
/// First prior bin of the top octave (5512.5 Hz); the top octave ends at bin 512 (11025 Hz).
const TOP_OCTAVE_FIRST_BIN: usize = BINS / 2;

/// How the separated magnitudes become audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Soft masks sᵢ^p / Σ sⱼ^p on the mix STFT (p the mask exponent): stems
    /// sum to the input (the default).
    Consistent,
    /// The paper's output: each stem's decoded magnitude with the mixture phase.
    MixturePhase,
    /// Time-domain priors only: each stem is its Langevin chain's waveform itself, resampled to
    /// the host rate on every channel; the stems need not sum to the input. The separator writes
    /// these without the masks; handed to [`ResynthPlan`] it masks as [`OutputMode::Consistent`].
    Waveform,
}

impl FromStr for OutputMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "consistent" => Ok(OutputMode::Consistent),
            "mixture-phase" => Ok(OutputMode::MixturePhase),
            "waveform" => Ok(OutputMode::Waveform),
            other => Err(format!(
                "expected `consistent`, `mixture-phase` or `waveform`, found `{other}`"
            )),
        }
    }
}

impl fmt::Display for OutputMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputMode::Consistent => "consistent",
            OutputMode::MixturePhase => "mixture-phase",
            OutputMode::Waveform => "waveform",
        })
    }
}

/// Why a [`ResynthPlan`] cannot be made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResynthError {
    /// A host rate outside the supported range.
    #[error(transparent)]
    UnsupportedRate(#[from] FormatError),
    /// Nothing to separate into.
    #[error("expected at least one stem, found 0")]
    NoStems,
    /// A frame without samples.
    #[error("expected a host frame of at least 1 sample, found 0")]
    EmptyFrame,
}

/// The host STFT grid for `host_rate`: `n_fft = even(round(1024·sr/22050))`, `hop = n_fft/4`, so
/// the host grid has the prior grid's time and frequency resolution (22050 → 1024/256,
/// 44100 → 2048/512, 48000 → 2228/557).
pub fn host_grid(host_rate: u32) -> (usize, usize) {
    host_grid_for(host_rate, N_FFT)
}

/// The host STFT grid with the time and frequency resolution of an `n_fft`-point STFT at 22.05
/// kHz: `n_fft·sr/22050` rounded to even, hop a quarter of it.
pub fn host_grid_for(host_rate: u32, n_fft_at_prior_rate: usize) -> (usize, usize) {
    let n = (n_fft_at_prior_rate as f64 * host_rate as f64 / PRIOR_SAMPLE_RATE as f64).round() as usize;
    let n_fft = (n & !1).max(8);
    (n_fft, n_fft / 4)
}

/// A grid of masks at the prior rate (22.05 kHz) other than the priors' own: the NMF expert's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskGrid {
    /// STFT size.
    pub n_fft: usize,
    /// STFT hop.
    pub hop: usize,
    /// Bins per frame (`n_fft / 2 + 1`).
    pub bins: usize,
    /// STFT frames of one 5-s frame.
    pub frames: usize,
}

/// A second set of masks to combine with the priors' in [`ResynthPlan::process_into`]: a
/// product of experts, mᵢ ∝ gᵢ^(1−w)·eᵢ^w of the priors' mask gᵢ and this mask eᵢ.
#[derive(Debug, Clone, Copy)]
pub struct ExpertMasks<'a> {
    /// One mask per stem, bin-major on the plan's [`MaskGrid`] (`[b * frames + t]`).
    pub masks: &'a [Vec<f32>],
    /// Its weight w in [0, 1].
    pub weight: f32,
}

/// Where each host cell below 11.025 kHz lies on an expert's grid.
#[derive(Debug, Clone)]
struct ExpertTaps {
    /// The expert's grid.
    grid: MaskGrid,
    /// For each host frame, the expert frames it lies between.
    time_taps: Vec<Tap>,
    /// For each host bin below `high_from`, the expert bins it lies between.
    bin_taps: Vec<Tap>,
}

/// Linear interpolation between two prior-grid indices.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    /// Lower index.
    lo: usize,
    /// Upper index (equal to `lo` at the clamped edge).
    hi: usize,
    /// Weight of `hi`; `lo` gets `1 − w`.
    w: f32,
}

impl Tap {
    /// The tap at the rational coordinate `num/den`, clamped to `[0, last]`.
    fn at(num: u128, den: u128, last: usize) -> Tap {
        let lo = (num / den) as usize;
        if lo >= last {
            return Tap {
                lo: last,
                hi: last,
                w: 0.0,
            };
        }
        Tap {
            lo,
            hi: lo + 1,
            w: ((num % den) as f64 / den as f64) as f32,
        }
    }
}

/// For each of `host_frames` host frames and each host bin below `bins_below`, the cells of
/// `grid` (at 22.05 kHz) it lies between: host frame t is at t·hop/sr seconds =
/// t·hop·22050/(sr·grid.hop) grid frames, host bin k at k·sr/n_fft Hz = k·sr·grid.n_fft/(n_fft·22050)
/// grid bins (exact rational coordinates, clamped at the grid's edges).
fn taps_onto(
    grid: MaskGrid,
    host_rate: u32,
    (n_fft, hop): (usize, usize),
    host_frames: usize,
    bins_below: usize,
) -> (Vec<Tap>, Vec<Tap>) {
    let (sr, prior_sr) = (host_rate as u128, PRIOR_SAMPLE_RATE as u128);
    let time_taps = (0..host_frames)
        .map(|t| {
            Tap::at(
                t as u128 * hop as u128 * prior_sr,
                sr * grid.hop as u128,
                grid.frames - 1,
            )
        })
        .collect();
    let bin_taps = (0..bins_below)
        .map(|k| {
            Tap::at(
                k as u128 * sr * grid.n_fft as u128,
                n_fft as u128 * prior_sr,
                grid.bins - 1,
            )
        })
        .collect();
    (time_taps, bin_taps)
}

/// The value of the bin-major grid `values` (`frames` per bin) between the bins and frames of two
/// taps, interpolated bilinearly.
fn bilinear(values: &[f32], frames: usize, bin: &Tap, time: &Tap) -> f32 {
    let at = |b: usize, t: usize| values[b * frames + t];
    let lo = (1.0 - bin.w) * at(bin.lo, time.lo) + bin.w * at(bin.hi, time.lo);
    let hi = (1.0 - bin.w) * at(bin.lo, time.hi) + bin.w * at(bin.hi, time.hi);
    (1.0 - time.w) * lo + time.w * hi
}

/// Everything to resynthesise one separation frame at one host rate and length, allocated once:
/// the host STFT, the interpolation taps from host grid to prior grid, and mask/spectrum buffers.
pub struct ResynthPlan {
    /// Host sample rate in Hz.
    host_rate: u32,
    /// Samples per channel of a host frame.
    host_len: usize,
    /// Number of stems.
    n_stems: usize,
    /// Host-grid STFT.
    stft: Stft,
    /// Host STFT frames covering `host_len`.
    host_frames: usize,
    /// Host STFT bins.
    host_bins: usize,
    /// For each host frame, the prior frames it lies between.
    time_taps: Vec<Tap>,
    /// For each host bin below `high_from`, the prior bins it lies between.
    bin_taps: Vec<Tap>,
    /// First host bin above 11025 Hz (the prior grid's Nyquist); from here the high-band shares
    /// apply. Equal to `host_bins` when the host rate is at most 22050 Hz.
    high_from: usize,
    /// STFT columns of the prior grid in one frame.
    columns: usize,
    /// Masks on the prior grid, per stem, bin-major `[b*columns + t]`.
    prior_masks: Vec<Vec<f32>>,
    /// Each stem's share of the top octave's energy per prior frame.
    high_share: Vec<Vec<f32>>,
    /// Top-octave energy per prior frame (denominator of `high_share`), f64 for accuracy.
    high_energy: Vec<f64>,
    /// Each stem's mask weight sᵢ^p (of sᵢ / maxⱼ sⱼ) in the cell being shared, computed once.
    cell_weights: Vec<f32>,
    /// Masks on the host grid, per stem, frame-major `[t*host_bins + k]` like the spectra.
    host_masks: Vec<Vec<f32>>,
    /// The host STFT of the current channel.
    mix_spec: Vec<Complex<f32>>,
    /// One masked stem spectrum.
    stem_spec: Vec<Complex<f32>>,
    /// The expert's taps, when the plan was made for one ([`ResynthPlan::with_expert`]).
    expert: Option<ExpertTaps>,
}

impl std::fmt::Debug for ResynthPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResynthPlan")
            .field("host_rate", &self.host_rate)
            .field("host_len", &self.host_len)
            .field("n_stems", &self.n_stems)
            .field("stft", &self.stft)
            .finish()
    }
}

impl ResynthPlan {
    /// Plans resynthesis of `n_stems` stems from host frames of `host_len` samples at
    /// `host_rate`.
    pub fn new(
        host_rate: u32,
        host_len: usize,
        columns: usize,
        n_stems: usize,
    ) -> Result<Self, ResynthError> {
        Self::plan(host_rate, host_len, columns, n_stems, host_grid(host_rate))
    }

    /// [`Self::new`] for stems that also have an expert's masks on `grid`: the host STFT takes
    /// the expert's resolution (`host_grid_for(host_rate, grid.n_fft)`), which is finer than the
    /// priors' for the NMF expert, and the priors' masks are interpolated onto it.
    pub fn with_expert(
        host_rate: u32,
        host_len: usize,
        columns: usize,
        n_stems: usize,
        grid: MaskGrid,
    ) -> Result<Self, ResynthError> {
        let mut plan = Self::plan(
            host_rate,
            host_len,
            columns,
            n_stems,
            host_grid_for(host_rate, grid.n_fft),
        )?;
        let (time_taps, bin_taps) = taps_onto(
            grid,
            host_rate,
            plan.host_grid(),
            plan.host_frames,
            plan.high_from,
        );
        plan.expert = Some(ExpertTaps {
            grid,
            time_taps,
            bin_taps,
        });
        Ok(plan)
    }

    /// The plan on the host grid `(n_fft, hop)`.
    fn plan(
        host_rate: u32,
        host_len: usize,
        columns: usize,
        n_stems: usize,
        (n_fft, hop): (usize, usize),
    ) -> Result<Self, ResynthError> {
        check_sample_rate(host_rate)?;
        if n_stems == 0 {
            return Err(ResynthError::NoStems);
        }
        if host_len == 0 {
            return Err(ResynthError::EmptyFrame);
        }
        let stft = Stft::new(n_fft, hop);
        let host_frames = stft.frame_count(host_len);
        let host_bins = stft.bins();
        // Host bin k is at k·sr/n_fft Hz; from the first one above 11025 Hz (the prior grid's
        // last bin, k·sr·1024/(n_fft·22050) > 512) the high-band shares apply.
        let (sr, prior_sr) = (host_rate as u128, PRIOR_SAMPLE_RATE as u128);
        let high_from = (0..host_bins)
            .find(|&k| k as u128 * sr * N_FFT as u128 > (BINS as u128 - 1) * n_fft as u128 * prior_sr)
            .unwrap_or(host_bins);
        let prior_grid = MaskGrid {
            n_fft: N_FFT,
            hop: HOP,
            bins: BINS,
            frames: columns,
        };
        let (time_taps, bin_taps) = taps_onto(prior_grid, host_rate, (n_fft, hop), host_frames, high_from);
        Ok(ResynthPlan {
            host_rate,
            host_len,
            n_stems,
            host_frames,
            host_bins,
            time_taps,
            bin_taps,
            high_from,
            columns,
            prior_masks: vec![vec![0.0; BINS * columns]; n_stems],
            high_share: vec![vec![0.0; columns]; n_stems],
            high_energy: vec![0.0; columns],
            cell_weights: vec![0.0; n_stems],
            host_masks: vec![vec![0.0; host_frames * host_bins]; n_stems],
            mix_spec: vec![Complex::new(0.0, 0.0); host_frames * host_bins],
            stem_spec: vec![Complex::new(0.0, 0.0); host_frames * host_bins],
            stft,
            expert: None,
        })
    }

    /// Host sample rate in Hz.
    pub fn host_rate(&self) -> u32 {
        self.host_rate
    }

    /// Samples per channel of a host frame.
    pub fn host_len(&self) -> usize {
        self.host_len
    }

    /// Number of stems.
    pub fn n_stems(&self) -> usize {
        self.n_stems
    }

    /// The host STFT's `(n_fft, hop)`.
    pub fn host_grid(&self) -> (usize, usize) {
        (self.stft.n_fft(), self.stft.hop())
    }

    /// Resynthesises one frame. `mix_mag` and each `stems[i]` are 513 × 432 bin-major prior-grid
    /// magnitudes; `expert`, if given, the expert's masks to combine with the stems' (the plan
    /// must come from [`Self::with_expert`]); `input` is the host-rate frame (one slice of
    /// `host_len` samples per channel); `output[i][c]` (preallocated, `host_len` samples)
    /// receives stem `i`, channel `c`. Allocates nothing.
    ///
    /// Panics if any buffer has the wrong size, or if `expert` is given to a plan without one.
    #[allow(clippy::too_many_arguments)]
    pub fn process_into(
        &mut self,
        mix_mag: &[f32],
        stems: &[&[f32]],
        mode: OutputMode,
        mask_exponent: f32,
        expert: Option<ExpertMasks<'_>>,
        input: &[&[f32]],
        output: &mut [Vec<Vec<f32>>],
    ) {
        let columns = self.columns;
        assert_eq!(
            mix_mag.len(),
            BINS * columns,
            "mix_mag must be {BINS} × {columns}"
        );
        assert_eq!(stems.len(), self.n_stems, "expected one magnitude per stem");
        assert!(
            stems.iter().all(|s| s.len() == BINS * columns),
            "stems must be {BINS} × {columns}"
        );
        assert_eq!(output.len(), self.n_stems, "expected one output per stem");
        for out in output.iter() {
            assert_eq!(
                out.len(),
                input.len(),
                "expected one output channel per input channel"
            );
            assert!(
                out.iter().all(|c| c.len() == self.host_len),
                "output channels need host_len"
            );
        }
        assert!(
            input.iter().all(|c| c.len() == self.host_len),
            "input channels need host_len"
        );

        self.prior_masks_from(mix_mag, stems, mode, mask_exponent);
        self.interpolate_masks();
        if let Some(expert) = expert {
            self.combine_with_expert(expert, mode);
        }
        for (c, channel) in input.iter().enumerate() {
            self.stft
                .analyze_into(channel, self.host_frames, &mut self.mix_spec);
            for (mask, out) in self.host_masks.iter().zip(output.iter_mut()) {
                for ((y, x), m) in self.stem_spec.iter_mut().zip(&self.mix_spec).zip(mask) {
                    *y = x * m;
                }
                self.stft
                    .synthesize_into(&self.stem_spec, self.host_frames, &mut out[c]);
            }
        }
    }

    /// Allocating [`Self::process_into`]: returns `stems × channels × host_len` audio.
    pub fn process(
        &mut self,
        mix_mag: &[f32],
        stems: &[&[f32]],
        mode: OutputMode,
        mask_exponent: f32,
        input: &[&[f32]],
    ) -> Vec<Vec<Vec<f32>>> {
        let mut out = vec![vec![vec![0.0; self.host_len]; input.len()]; self.n_stems];
        self.process_into(mix_mag, stems, mode, mask_exponent, None, input, &mut out);
        out
    }

    /// Fills `prior_masks` for `mode` and `high_share` (always from consistent masks
    /// sᵢ^p / Σⱼ sⱼ^p, p = `mask_exponent`; p = 1 is computed as sᵢ / Σⱼ sⱼ exactly).
    fn prior_masks_from(&mut self, mix_mag: &[f32], stems: &[&[f32]], mode: OutputMode, mask_exponent: f32) {
        let n = self.n_stems as f32;
        let clean = |x: f32| if x.is_finite() && x > 0.0 { x } else { 0.0 };
        self.high_energy.fill(0.0);
        for share in &mut self.high_share {
            share.fill(0.0);
        }
        let columns = self.columns;
        for b in 0..BINS {
            for t in 0..columns {
                let idx = b * columns + t;
                // Powers are taken of sᵢ / maxⱼ sⱼ ∈ [0, 1], so no exponent can overflow.
                let peak = stems.iter().map(|s| clean(s[idx])).fold(0.0f32, f32::max);
                for (w, s) in self.cell_weights.iter_mut().zip(stems) {
                    let v = clean(s[idx]);
                    *w = if mask_exponent == 1.0 {
                        v
                    } else if peak > 0.0 {
                        (v / peak).powf(mask_exponent)
                    } else {
                        0.0
                    };
                }
                let sum: f32 = self.cell_weights.iter().sum();
                let x = clean(mix_mag[idx]);
                let energy = (x as f64) * (x as f64);
                if b >= TOP_OCTAVE_FIRST_BIN {
                    self.high_energy[t] += energy;
                }
                for (i, s) in stems.iter().enumerate() {
                    let s = clean(s[idx]);
                    let consistent = if sum > 0.0 && sum.is_finite() {
                        self.cell_weights[i] / sum
                    } else {
                        1.0 / n
                    };
                    if b >= TOP_OCTAVE_FIRST_BIN {
                        self.high_share[i][t] += (consistent as f64 * energy) as f32;
                    }
                    self.prior_masks[i][idx] = match mode {
                        OutputMode::Consistent | OutputMode::Waveform => consistent,
                        OutputMode::MixturePhase if x > MIN_MIX_MAGNITUDE => {
                            (s / x).min(MAX_MIXTURE_PHASE_GAIN)
                        }
                        OutputMode::MixturePhase => 0.0,
                    };
                }
            }
        }
        for t in 0..columns {
            let total: f32 = self.high_share.iter().map(|h| h[t]).sum();
            let silent = !(self.high_energy[t] > 0.0 && total > 0.0 && total.is_finite());
            for share in &mut self.high_share {
                // Normalising by the shares' own sum keeps Σᵢ Hᵢ = 1 despite rounding.
                share[t] = if silent { 1.0 / n } else { share[t] / total };
            }
        }
    }

    /// Interpolates `prior_masks`/`high_share` onto the host grid (`host_masks`).
    fn interpolate_masks(&mut self) {
        let bins = self.host_bins;
        for (i, host) in self.host_masks.iter_mut().enumerate() {
            let prior = &self.prior_masks[i];
            let high = &self.high_share[i];
            for (t, tt) in self.time_taps.iter().enumerate() {
                let row = &mut host[t * bins..(t + 1) * bins];
                let (wt0, wt1) = (1.0 - tt.w, tt.w);
                for (k, bt) in self.bin_taps.iter().enumerate() {
                    row[k] = bilinear(prior, self.columns, bt, tt);
                }
                let h = wt0 * high[tt.lo] + wt1 * high[tt.hi];
                row[self.high_from..].fill(h);
            }
        }
    }

    /// Replaces each host mask below 11.025 kHz by gᵢ^(1−w)·eᵢ^w (gᵢ the priors' mask there, eᵢ
    /// the expert's, interpolated), normalised to sum 1 in consistent mode; a cell where every
    /// product is 0 keeps the priors' masks. The top octave keeps the priors' shares (the expert
    /// does not reach above 11.025 kHz).
    fn combine_with_expert(&mut self, expert: ExpertMasks<'_>, mode: OutputMode) {
        let taps = self
            .expert
            .as_ref()
            .expect("expert masks need a plan made with ResynthPlan::with_expert");
        let grid = taps.grid;
        assert_eq!(
            expert.masks.len(),
            self.n_stems,
            "expected one expert mask per stem"
        );
        assert!(
            expert.masks.iter().all(|m| m.len() == grid.bins * grid.frames),
            "expert masks must be {} × {}",
            grid.bins,
            grid.frames
        );
        let w = expert.weight.clamp(0.0, 1.0);
        let bins = self.host_bins;
        for (t, tt) in taps.time_taps.iter().enumerate() {
            for (k, bt) in taps.bin_taps.iter().enumerate() {
                let idx = t * bins + k;
                let mut sum = 0.0f32;
                for (i, m) in expert.masks.iter().enumerate() {
                    let e = bilinear(m, grid.frames, bt, tt).max(0.0);
                    let g = self.host_masks[i][idx].max(0.0);
                    let product = g.powf(1.0 - w) * e.powf(w);
                    self.cell_weights[i] = product;
                    sum += product;
                }
                let normalise = mode != OutputMode::MixturePhase;
                if normalise && !(sum > 0.0 && sum.is_finite()) {
                    continue;
                }
                for (host, &product) in self.host_masks.iter_mut().zip(&self.cell_weights) {
                    host[idx] = if normalise { product / sum } else { product };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::constants::FRAMES;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32) / (1u64 << 24) as f32
        }
    }

    fn error_db(x: &[f32], y: &[f32]) -> f64 {
        let e: f64 = x.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let s: f64 = y.iter().map(|b| (*b as f64).powi(2)).sum();
        10.0 * (e / s).log10()
    }

    fn host_len(rate: u32) -> usize {
        (rate as f64 * 5.0).round() as usize
    }

    #[test]
    fn host_grid_matches_the_formula() {
        assert_eq!(host_grid(22_050), (1024, 256));
        assert_eq!(host_grid(44_100), (2048, 512));
        assert_eq!(host_grid(48_000), (2228, 557));
        assert_eq!(host_grid(96_000), (4458, 1114));
    }

    #[test]
    fn consistent_stems_sum_to_the_input() {
        for rate in [22_050u32, 44_100, 48_000, 96_000, 384_000] {
            for channels in [1usize, 2] {
                let len = host_len(rate);
                let mut rng = Rng(rate as u64 + channels as u64);
                let input: Vec<Vec<f32>> = (0..channels)
                    .map(|_| (0..len).map(|_| rng.next() - 0.5).collect())
                    .collect();
                let stems: Vec<Vec<f32>> = (0..3)
                    .map(|_| (0..BINS * FRAMES).map(|_| rng.next() + 1e-3).collect())
                    .collect();
                let mix: Vec<f32> = (0..BINS * FRAMES).map(|_| rng.next()).collect();
                let mut plan = ResynthPlan::new(rate, len, FRAMES, 3).unwrap();
                let in_refs: Vec<&[f32]> = input.iter().map(|c| c.as_slice()).collect();
                let s_refs: Vec<&[f32]> = stems.iter().map(|c| c.as_slice()).collect();
                for p in [1.0f32, 0.5, 2.0] {
                    let out = plan.process(&mix, &s_refs, OutputMode::Consistent, p, &in_refs);
                    for c in 0..channels {
                        let sum: Vec<f32> = (0..len).map(|n| out.iter().map(|s| s[c][n]).sum()).collect();
                        let db = error_db(&sum, &input[c]);
                        assert!(db < -60.0, "rate {rate}, channel {c}, p {p}: {db} dB");
                        // Each stem really is a part, not a copy.
                        assert!(error_db(&out[0][c], &input[c]) > -20.0);
                    }
                }
            }
        }
    }

    /// The NMF expert's grid: 2048 / 512 at 22.05 kHz over one 5-s frame.
    const EXPERT_GRID: MaskGrid = MaskGrid {
        n_fft: 2048,
        hop: 512,
        bins: 1025,
        frames: 1 + 110_250 / 512,
    };

    /// Random expert masks that sum to 1 in every cell; with `owner`, stem `owner` gets 1.
    fn expert_masks(rng: &mut Rng, stems: usize, owner: Option<usize>) -> Vec<Vec<f32>> {
        let cells = EXPERT_GRID.bins * EXPERT_GRID.frames;
        let mut masks: Vec<Vec<f32>> = (0..stems)
            .map(|i| match owner {
                Some(o) => vec![if i == o { 1.0 } else { 0.0 }; cells],
                None => (0..cells).map(|_| rng.next() + 1e-3).collect(),
            })
            .collect();
        for idx in 0..cells {
            let sum: f32 = masks.iter().map(|m| m[idx]).sum();
            masks.iter_mut().for_each(|m| m[idx] /= sum);
        }
        masks
    }

    #[test]
    fn with_an_expert_the_stems_still_sum_to_the_input_on_the_experts_finer_grid() {
        for rate in [22_050u32, 44_100, 48_000] {
            let len = host_len(rate);
            let mut rng = Rng(rate as u64);
            let input: Vec<f32> = (0..len).map(|_| rng.next() - 0.5).collect();
            let stems: Vec<Vec<f32>> = (0..3)
                .map(|_| (0..BINS * FRAMES).map(|_| rng.next() + 1e-3).collect())
                .collect();
            let mix: Vec<f32> = (0..BINS * FRAMES).map(|_| rng.next()).collect();
            let masks = expert_masks(&mut rng, 3, None);
            let mut plan = ResynthPlan::with_expert(rate, len, FRAMES, 3, EXPERT_GRID).unwrap();
            assert_eq!(plan.host_grid(), host_grid_for(rate, 2048));
            let s_refs: Vec<&[f32]> = stems.iter().map(|c| c.as_slice()).collect();
            let mut out = vec![vec![vec![0.0; len]]; 3];
            for weight in [0.25f32, 0.5, 1.0] {
                let expert = ExpertMasks {
                    masks: &masks,
                    weight,
                };
                plan.process_into(
                    &mix,
                    &s_refs,
                    OutputMode::Consistent,
                    0.5,
                    Some(expert),
                    &[&input],
                    &mut out,
                );
                let sum: Vec<f32> = (0..len).map(|n| out.iter().map(|s| s[0][n]).sum()).collect();
                let db = error_db(&sum, &input);
                assert!(db < -60.0, "rate {rate}, weight {weight}: {db} dB");
                assert!(out.iter().flatten().flatten().all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn the_experts_weight_moves_the_masks_from_the_priors_to_the_expert() {
        let len = host_len(22_050);
        let mut rng = Rng(7);
        let input: Vec<f32> = (0..len).map(|_| rng.next() - 0.5).collect();
        let stems: Vec<Vec<f32>> = (0..2)
            .map(|_| (0..BINS * FRAMES).map(|_| rng.next() + 1e-3).collect())
            .collect();
        let mix: Vec<f32> = (0..BINS * FRAMES).map(|_| rng.next()).collect();
        let s_refs: Vec<&[f32]> = stems.iter().map(|c| c.as_slice()).collect();
        let mut plan = ResynthPlan::with_expert(22_050, len, FRAMES, 2, EXPERT_GRID).unwrap();
        let run = |plan: &mut ResynthPlan, expert: Option<ExpertMasks<'_>>| {
            let mut out = vec![vec![vec![0.0; len]]; 2];
            plan.process_into(
                &mix,
                &s_refs,
                OutputMode::Consistent,
                1.0,
                expert,
                &[&input],
                &mut out,
            );
            out
        };
        // The expert gives every cell to stem 1.
        let owned = expert_masks(&mut rng, 2, Some(1));
        let alone = run(&mut plan, None);
        let weight_0 = run(
            &mut plan,
            Some(ExpertMasks {
                masks: &owned,
                weight: 0.0,
            }),
        );
        assert!(error_db(&weight_0[0][0], &alone[0][0]) < -100.0);
        let weight_1 = run(
            &mut plan,
            Some(ExpertMasks {
                masks: &owned,
                weight: 1.0,
            }),
        );
        assert!(error_db(&weight_1[1][0], &input) < -60.0);
        assert!(weight_1[0][0].iter().all(|x| x.abs() < 1e-4));
        // A product of experts: any weight above 0 lets the expert veto, so the cells it gives
        // wholly to stem 1 go to stem 1.
        let half = run(
            &mut plan,
            Some(ExpertMasks {
                masks: &owned,
                weight: 0.5,
            }),
        );
        assert!(error_db(&half[1][0], &input) < -60.0);
        assert!(error_db(&alone[1][0], &input) > -20.0);
    }

    #[test]
    fn mask_exponent_shapes_the_consistent_masks() {
        let len = host_len(22_050);
        let x = vec![0.1f32; len];
        let mix = vec![1.0f32; BINS * FRAMES];
        let mut plan = ResynthPlan::new(22_050, len, FRAMES, 2).unwrap();
        // Stem b explains three times as much as stem a everywhere; at 1e30 a fourth power
        // would overflow f32 if it were taken of the magnitudes themselves.
        for scale in [1.0f32, 1e30] {
            let a = vec![scale; BINS * FRAMES];
            let b = vec![3.0 * scale; BINS * FRAMES];
            for (p, share_a) in [
                (1.0f32, 0.25f32),
                (2.0, 0.1),
                (0.5, 1.0 / (1.0 + 3f32.sqrt())),
                (4.0, 1.0 / 82.0),
            ] {
                plan.process(&mix, &[&a, &b], OutputMode::Consistent, p, &[&x]);
                for idx in [0, BINS * FRAMES / 2, BINS * FRAMES - 1] {
                    let (ma, mb) = (plan.prior_masks[0][idx], plan.prior_masks[1][idx]);
                    assert!(
                        (ma - share_a).abs() < 1e-6,
                        "scale {scale}, p {p}: {ma} vs {share_a}"
                    );
                    assert!((ma + mb - 1.0).abs() < 1e-6);
                }
            }
        }
        // Mixture-phase output is sᵢ/|X| whatever the exponent.
        let a = vec![0.5f32; BINS * FRAMES];
        plan.process(&mix, &[&a, &a], OutputMode::MixturePhase, 2.0, &[&x]);
        assert_eq!(plan.prior_masks[0][7], 0.5);
    }

    /// Magnitudes of `x` on the prior grid (22.05 kHz), 513 × 432 bin-major.
    fn prior_magnitudes(x: &[f32]) -> Vec<f32> {
        let mut stft = Stft::new(N_FFT, HOP);
        let mut spec = vec![Complex::new(0.0, 0.0); FRAMES * BINS];
        stft.analyze_into(x, FRAMES, &mut spec);
        stft.magnitudes_bin_major(&spec, FRAMES)
    }

    #[test]
    fn mixture_phase_masked_spectra_have_the_stem_magnitudes() {
        let len = 110_250;
        let mut rng = Rng(5);
        let x: Vec<f32> = (0..len).map(|_| rng.next() - 0.5).collect();
        let mix = prior_magnitudes(&x);
        let stems: Vec<Vec<f32>> = (0..2)
            .map(|_| mix.iter().map(|m| m * (0.1 + 1.5 * rng.next())).collect())
            .collect();
        let s_refs: Vec<&[f32]> = stems.iter().map(|c| c.as_slice()).collect();
        let mut plan = ResynthPlan::new(22_050, len, FRAMES, 2).unwrap();
        plan.process(&mix, &s_refs, OutputMode::MixturePhase, 1.0, &[&x]);
        // The masked host spectrum (before the inverse STFT) is sᵢ·e^{j∠X}.
        let bins = plan.host_bins;
        let mut checked = 0;
        for (i, s) in stems.iter().enumerate() {
            for t in 0..plan.host_frames {
                for k in 0..bins {
                    let x_tk = plan.mix_spec[t * bins + k];
                    if x_tk.norm() < 1e-3 {
                        continue;
                    }
                    let y = x_tk * plan.host_masks[i][t * bins + k];
                    let want = s[k * FRAMES + t];
                    assert!((y.norm() - want).abs() <= 1e-4 * want, "stem {i} t {t} k {k}");
                    assert!((y.arg() - x_tk.arg()).abs() < 1e-4 || y.norm() < 1e-6);
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn mixture_phase_with_scaled_mixture_stems_gives_scaled_audio() {
        let len = 110_250;
        let mut rng = Rng(9);
        let x: Vec<f32> = (0..len).map(|_| rng.next() - 0.5).collect();
        let mix = prior_magnitudes(&x);
        let gains = [0.3f32, 1.2];
        let stems: Vec<Vec<f32>> = gains
            .iter()
            .map(|g| mix.iter().map(|m| m * g).collect())
            .collect();
        let s_refs: Vec<&[f32]> = stems.iter().map(|c| c.as_slice()).collect();
        let mut plan = ResynthPlan::new(22_050, len, FRAMES, 2).unwrap();
        let out = plan.process(&mix, &s_refs, OutputMode::MixturePhase, 1.0, &[&x]);
        for (i, g) in gains.iter().enumerate() {
            let want: Vec<f32> = x.iter().map(|v| v * g).collect();
            assert!(error_db(&out[i][0], &want) < -60.0);
            // Re-analysed, the stem's magnitude is sᵢ.
            let got = prior_magnitudes(&out[i][0]);
            let err: f64 = got
                .iter()
                .zip(&stems[i])
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            let pow: f64 = stems[i].iter().map(|b| (*b as f64).powi(2)).sum();
            assert!(10.0 * (err / pow).log10() < -60.0);
        }
    }

    #[test]
    fn content_above_11k_is_shared_by_top_octave_ownership() {
        let rate = 44_100;
        let len = host_len(rate);
        // A 15 kHz sine with 0.1-s fades, so no broadband onset leaks below 11 kHz.
        let fade = 4410.0;
        let x: Vec<f32> = (0..len)
            .map(|n| {
                let edge = (n.min(len - 1 - n) as f32 / fade).min(1.0);
                let env = 0.5 - 0.5 * (std::f32::consts::PI * edge).cos();
                let phase = 2.0 * std::f64::consts::PI * 15_000.0 * n as f64 / rate as f64;
                env * 0.5 * phase.sin() as f32
            })
            .collect();
        let mix = vec![1.0f32; BINS * FRAMES];
        let low_owner = vec![1.0f32; BINS * FRAMES];
        let high_owner: Vec<f32> = (0..BINS * FRAMES)
            .map(|i| if i / FRAMES >= 256 { 3.0 } else { 1.0 })
            .collect();
        for mode in [OutputMode::Consistent, OutputMode::MixturePhase] {
            let mut plan = ResynthPlan::new(rate, len, FRAMES, 2).unwrap();
            let out = plan.process(&mix, &[&low_owner, &high_owner], mode, 1.0, &[&x]);
            let share0: Vec<f32> = x.iter().map(|v| v * 0.25).collect();
            let share1: Vec<f32> = x.iter().map(|v| v * 0.75).collect();
            let db0 = error_db(&out[0][0], &share0);
            assert!(db0 < -40.0, "{mode}: {db0} dB");
            assert!(error_db(&out[1][0], &share1) < -40.0, "{mode}");
            let sum: Vec<f32> = (0..len).map(|n| out[0][0][n] + out[1][0][n]).collect();
            assert!(error_db(&sum, &x) < -60.0, "{mode}");
        }
    }

    #[test]
    fn silence_and_garbage_give_finite_output() {
        for rate in [22_050u32, 48_000] {
            let len = host_len(rate);
            let zeros = vec![0.0f32; len];
            let zero_mag = vec![0.0f32; BINS * FRAMES];
            let nan_mag = vec![f32::NAN; BINS * FRAMES];
            let inf_mag = vec![f32::INFINITY; BINS * FRAMES];
            let mut plan = ResynthPlan::new(rate, len, FRAMES, 2).unwrap();
            for mode in [OutputMode::Consistent, OutputMode::MixturePhase] {
                for (mix, a, b) in [
                    (&zero_mag, &zero_mag, &zero_mag),
                    (&zero_mag, &nan_mag, &inf_mag),
                    (&nan_mag, &inf_mag, &zero_mag),
                ] {
                    let out = plan.process(mix, &[a, b], mode, 1.0, &[&zeros, &zeros]);
                    assert!(out.iter().flatten().flatten().all(|v| *v == 0.0), "{mode}");
                }
            }
            // Non-silent input with silent stems stays finite too.
            let x: Vec<f32> = (0..len).map(|n| ((n % 17) as f32 - 8.0) / 8.0).collect();
            for mode in [OutputMode::Consistent, OutputMode::MixturePhase] {
                let out = plan.process(&zero_mag, &[&nan_mag, &inf_mag], mode, 1.0, &[&x]);
                assert!(out.iter().flatten().flatten().all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn bad_plans_are_errors() {
        assert_eq!(
            ResynthPlan::new(0, 10, FRAMES, 1).unwrap_err(),
            ResynthError::UnsupportedRate(FormatError::SampleRate { found: 0 })
        );
        assert_eq!(
            ResynthPlan::new(44_100, 10, FRAMES, 0).unwrap_err(),
            ResynthError::NoStems
        );
        assert_eq!(
            ResynthPlan::new(44_100, 0, FRAMES, 2).unwrap_err(),
            ResynthError::EmptyFrame
        );
    }
}
