//! The NMF expert: each prior's KL-NMF dictionary (learned from the same isolated recordings as
//! its flow) fitted to the frame's mixture, giving one soft mask per stem that the output stage
//! combines with the flow's masks (a product of experts, `signal::resynth`).
//!
//! With the dictionaries W fixed, the activations H ≥ 0 of V ≈ W·H are fitted by the KL
//! multiplicative updates H ← H ⊙ (Wᵀ(V ⊘ WH)) ⊘ (Wᵀ1) from a constant start, for a fixed number
//! of iterations (few iterations from a flat start regularise the fit; measurements:
//! models/EXPERIMENTS.md). Stem i's model is Vᵢ = Wᵢ·Hᵢ, its mask Vᵢ / Σⱼ Vⱼ.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2};
use thiserror::Error;

use crate::engine::priors::nmf_dictionary::NmfDictionary;
use crate::engine::signal::resynth::MaskGrid;
use crate::engine::signal::stft::Stft;
use realfft::num_complex::Complex;

/// Added to V and to W·H so the ratio V / W·H is finite in silent cells (as the trainer's NMF).
const NMF_EPSILON: f32 = 1e-9;
/// Dictionary values below this (of an atom summing to 1) are set to 0 at load, and activations
/// are kept at or above [`ACTIVATION_FLOOR`]: every product in the updates then stays a normal
/// float. Subnormal operands slow the matrix products down tenfold on x86, and the learned
/// dictionaries hold thousands of them; what is cut weighs less than 1e-15 of an atom.
const ATOM_FLOOR: f32 = 1e-15;
/// The smallest activation (see [`ATOM_FLOOR`]); a multiplicative update can still raise it.
const ACTIVATION_FLOOR: f32 = 1e-20;

/// Why the expert cannot be built from a set of dictionaries.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ExpertError {
    /// The dictionaries were learned on different STFTs, so one fit cannot use them together.
    #[error("the NMF dictionaries must share one STFT: prior `{first_stem}` uses {first_n_fft}/{first_hop}, prior `{stem}` {n_fft}/{hop}")]
    MixedGrids {
        /// The first prior.
        first_stem: String,
        /// Its STFT size.
        first_n_fft: usize,
        /// Its hop.
        first_hop: usize,
        /// The first prior that differs.
        stem: String,
        /// Its STFT size.
        n_fft: usize,
        /// Its hop.
        hop: usize,
    },
}

/// Fits every stem's dictionary to one frame at a time; every buffer is allocated in
/// [`NmfExpert::new`].
pub struct NmfExpert {
    /// The masks' grid.
    grid: MaskGrid,
    /// Multiplicative updates per frame.
    iterations: usize,
    /// The STFT the dictionaries were learned on.
    stft: Stft,
    /// The frame's complex spectrum, frame-major.
    spectrum: Vec<Complex<f32>>,
    /// Every stem's atoms side by side: bins × total atoms.
    atoms: Array2<f32>,
    /// Where each stem's atoms end in `atoms`' columns.
    atom_ends: Vec<usize>,
    /// Column sums of `atoms` (the updates' denominators).
    atom_sums: Vec<f32>,
    /// The mixture's magnitudes (plus ε): bins × frames.
    mix: Array2<f32>,
    /// The activations: total atoms × frames.
    activations: Array2<f32>,
    /// W·H, then V ⊘ W·H: bins × frames.
    model: Array2<f32>,
    /// Wᵀ(V ⊘ W·H): total atoms × frames.
    numerator: Array2<f32>,
    /// Each stem's model Wᵢ·Hᵢ, then its mask Vᵢ / Σⱼ Vⱼ, bin-major (`[b * frames + t]`).
    masks: Vec<Vec<f32>>,
}

impl std::fmt::Debug for NmfExpert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NmfExpert")
            .field("grid", &self.grid)
            .field("iterations", &self.iterations)
            .field("atom_ends", &self.atom_ends)
            .finish_non_exhaustive()
    }
}

impl NmfExpert {
    /// An expert over `dictionaries` (one per stem, in output order, with their stem names for
    /// errors), fitting each frame of `frame_samples` mono samples at 22.05 kHz with
    /// `iterations` updates.
    pub fn new(
        dictionaries: &[(&str, &NmfDictionary)],
        iterations: usize,
        frame_samples: usize,
    ) -> Result<Self, ExpertError> {
        let (first_stem, first) = dictionaries[0];
        if let Some((stem, d)) = dictionaries
            .iter()
            .find(|(_, d)| (d.n_fft, d.hop) != (first.n_fft, first.hop))
        {
            return Err(ExpertError::MixedGrids {
                first_stem: first_stem.to_string(),
                first_n_fft: first.n_fft,
                first_hop: first.hop,
                stem: stem.to_string(),
                n_fft: d.n_fft,
                hop: d.hop,
            });
        }
        let stft = Stft::new(first.n_fft, first.hop);
        let bins = stft.bins();
        let frames = stft.frame_count(frame_samples);
        let total: usize = dictionaries.iter().map(|(_, d)| d.atoms).sum();
        let mut atoms = Array2::zeros((bins, total));
        let mut atom_ends = Vec::with_capacity(dictionaries.len());
        let mut start = 0;
        for (_, d) in dictionaries {
            let view = ArrayView2::from_shape((d.bins, d.atoms), &d.values).expect("checked at load");
            atoms.slice_mut(s![.., start..start + d.atoms]).assign(&view);
            start += d.atoms;
            atom_ends.push(start);
        }
        atoms.mapv_inplace(|v| if v < ATOM_FLOOR { 0.0 } else { v });
        let atom_sums = atoms.sum_axis(ndarray::Axis(0)).to_vec();
        Ok(NmfExpert {
            grid: MaskGrid {
                n_fft: first.n_fft,
                hop: first.hop,
                bins,
                frames,
            },
            iterations,
            spectrum: vec![Complex::new(0.0, 0.0); frames * bins],
            mix: Array2::zeros((bins, frames)),
            activations: Array2::zeros((total, frames)),
            model: Array2::zeros((bins, frames)),
            numerator: Array2::zeros((total, frames)),
            masks: vec![vec![0.0; bins * frames]; dictionaries.len()],
            atoms,
            atom_ends,
            atom_sums,
            stft,
        })
    }

    /// The grid of [`Self::masks`].
    pub fn grid(&self) -> MaskGrid {
        self.grid
    }

    /// Fits the dictionaries to `frame` (the mono frame at 22.05 kHz, of the length the expert
    /// was made for) and fills [`Self::masks`]. Runs on the worker, never on the audio thread:
    /// its buffers are the expert's own, but the matrix products allocate their packing scratch.
    pub fn fit(&mut self, frame: &[f32]) {
        self.analyse(frame);
        self.start_activations();
        for _ in 0..self.iterations {
            self.update_activations();
        }
        self.fill_masks();
    }

    /// Each stem's mask of the last fitted frame, bin-major on [`Self::grid`]; in every cell the
    /// masks sum to 1.
    pub fn masks(&self) -> &[Vec<f32>] {
        &self.masks
    }

    /// The mixture's magnitudes on the dictionaries' STFT, plus ε.
    fn analyse(&mut self, frame: &[f32]) {
        let frames = self.grid.frames;
        self.stft.analyze_into(frame, frames, &mut self.spectrum);
        let mix = self.mix.as_slice_mut().expect("a new Array2 is contiguous");
        self.stft.magnitudes_bin_major_into(&self.spectrum, frames, mix);
        mix.iter_mut().for_each(|v| *v += NMF_EPSILON);
    }

    /// H = mean column sum of V / (mean column sum of W · atoms): a flat start at the mixture's
    /// level.
    fn start_activations(&mut self) {
        let total = self.atom_sums.len() as f32;
        let mix_level = self.mix.sum() / self.grid.frames as f32;
        let atom_level = self.atom_sums.iter().sum::<f32>() / total;
        self.activations
            .fill(mix_level / atom_level / total + NMF_EPSILON);
    }

    /// One multiplicative update of H.
    fn update_activations(&mut self) {
        general_mat_mul(1.0, &self.atoms, &self.activations, 0.0, &mut self.model);
        ndarray::Zip::from(&mut self.model)
            .and(&self.mix)
            .for_each(|m, &v| *m = v / (*m + NMF_EPSILON));
        general_mat_mul(1.0, &self.atoms.t(), &self.model, 0.0, &mut self.numerator);
        for ((mut h, n), &sum) in self
            .activations
            .rows_mut()
            .into_iter()
            .zip(self.numerator.rows())
            .zip(&self.atom_sums)
        {
            let inverse = 1.0 / (sum + 1e-12);
            h.zip_mut_with(&n, |h, &n| *h = (*h * n * inverse).max(ACTIVATION_FLOOR));
        }
    }

    /// Masks Vᵢ / Σⱼ Vⱼ from the fitted activations (an even split where every model is 0).
    fn fill_masks(&mut self) {
        let shape = (self.grid.bins, self.grid.frames);
        let mut start = 0;
        for (mask, &end) in self.masks.iter_mut().zip(&self.atom_ends) {
            let mut model = ArrayViewMut2::from_shape(shape, mask).expect("sized in new");
            general_mat_mul(
                1.0,
                &self.atoms.slice(s![.., start..end]),
                &self.activations.slice(s![start..end, ..]),
                0.0,
                &mut model,
            );
            start = end;
        }
        let n = self.masks.len();
        for idx in 0..self.grid.bins * self.grid.frames {
            let sum: f32 = self.masks.iter().map(|m| m[idx]).sum();
            for mask in &mut self.masks {
                mask[idx] = if sum > 0.0 && sum.is_finite() {
                    mask[idx] / sum
                } else {
                    1.0 / n as f32
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::constants::FRAME_SAMPLES;
    use crate::engine::constants::PRIOR_SAMPLE_RATE;

    /// A dictionary of `atoms` atoms, each a bump around its own bin.
    fn bumps(n_fft: usize, centres: &[usize]) -> NmfDictionary {
        let bins = n_fft / 2 + 1;
        let mut values = vec![0.0f32; bins * centres.len()];
        for (k, &c) in centres.iter().enumerate() {
            for b in 0..bins {
                let d = b as f32 - c as f32;
                values[b * centres.len() + k] = (-d * d / 8.0).exp() + 1e-6;
            }
            let sum: f32 = (0..bins).map(|b| values[b * centres.len() + k]).sum();
            for b in 0..bins {
                values[b * centres.len() + k] /= sum;
            }
        }
        NmfDictionary {
            n_fft,
            hop: n_fft / 4,
            bins,
            atoms: centres.len(),
            values,
        }
    }

    fn tone(freq_bin: f32, n_fft: usize, amplitude: f32) -> Vec<f32> {
        let f = freq_bin * PRIOR_SAMPLE_RATE as f32 / n_fft as f32;
        (0..FRAME_SAMPLES)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * f * i as f32 / PRIOR_SAMPLE_RATE as f32).sin())
            .collect()
    }

    #[test]
    fn each_stems_atoms_claim_its_own_partials() {
        let low = bumps(256, &[10, 14]);
        let high = bumps(256, &[60, 80]);
        let mut expert = NmfExpert::new(&[("low", &low), ("high", &high)], 50, FRAME_SAMPLES).unwrap();
        let mix: Vec<f32> = tone(10.0, 256, 0.3)
            .iter()
            .zip(tone(80.0, 256, 0.1))
            .map(|(a, b)| a + b)
            .collect();
        expert.fit(&mix);
        let grid = expert.grid();
        assert_eq!((grid.bins, grid.frames), (129, 1 + FRAME_SAMPLES / 64));
        let t = grid.frames / 2;
        let at = |stem: usize, bin: usize| expert.masks()[stem][bin * grid.frames + t];
        assert!(at(0, 10) > 0.95, "{}", at(0, 10));
        assert!(at(1, 80) > 0.95, "{}", at(1, 80));
        for idx in 0..grid.bins * grid.frames {
            let sum = expert.masks()[0][idx] + expert.masks()[1][idx];
            assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        }
    }

    #[test]
    fn silence_splits_evenly() {
        let a = bumps(256, &[10]);
        let b = bumps(256, &[60]);
        let mut expert = NmfExpert::new(&[("a", &a), ("b", &b)], 10, FRAME_SAMPLES).unwrap();
        expert.fit(&vec![0.0; FRAME_SAMPLES]);
        assert!(expert
            .masks()
            .iter()
            .flatten()
            .all(|m| m.is_finite() && (0.0..=1.0).contains(m)));
    }

    #[test]
    fn dictionaries_on_different_stfts_are_refused_by_name() {
        let a = bumps(256, &[10]);
        let b = bumps(512, &[60]);
        let err = NmfExpert::new(&[("a", &a), ("b", &b)], 10, FRAME_SAMPLES).unwrap_err();
        assert!(err.to_string().contains("prior `b` 512/128"), "{err}");
    }
}
