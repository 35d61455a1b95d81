//! Short-time Fourier transform with the prior contract's conventions (`models/CONTRACT.md`):
//! periodic Hann window (unnormalised), frames centred on `t·hop` with zero padding outside the
//! signal, unscaled forward FFT, and a weighted overlap-add inverse that is exact for any length.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// A planned STFT of one size and hop: window, FFT plans and scratch are allocated once in
/// [`Stft::new`], so the `*_into` methods allocate nothing.
pub struct Stft {
    /// FFT size in samples (even).
    n_fft: usize,
    /// Distance between frame centres in samples.
    hop: usize,
    /// Periodic Hann window, `w[n] = 0.5 − 0.5·cos(2πn/n_fft)`; applied on analysis and synthesis.
    window: Vec<f32>,
    /// Forward real FFT plan (unscaled).
    forward: Arc<dyn RealToComplex<f32>>,
    /// Inverse real FFT plan (unscaled: a round trip multiplies by `n_fft`).
    inverse: Arc<dyn ComplexToReal<f32>>,
    /// One windowed time frame; the FFTs also use it as input scratch.
    time_buf: Vec<f32>,
    /// One spectrum frame, copied here because the inverse FFT overwrites its input.
    freq_buf: Vec<Complex<f32>>,
    /// Scratch for the forward FFT.
    forward_scratch: Vec<Complex<f32>>,
    /// Scratch for the inverse FFT.
    inverse_scratch: Vec<Complex<f32>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("n_fft", &self.n_fft)
            .field("hop", &self.hop)
            .finish()
    }
}

impl Stft {
    /// Plans an STFT of size `n_fft` (even, any factorisation) and hop `hop` (`0 < hop < n_fft`).
    ///
    /// Panics if `n_fft` is odd or zero or `hop` is out of range: both are fixed by the engine's
    /// grids, never by user data.
    pub fn new(n_fft: usize, hop: usize) -> Self {
        assert!(
            n_fft >= 2 && n_fft.is_multiple_of(2),
            "n_fft must be even and ≥ 2, got {n_fft}"
        );
        assert!(
            hop > 0 && hop < n_fft,
            "hop must be in 1..n_fft ({n_fft}), got {hop}"
        );
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(n_fft);
        let inverse = planner.plan_fft_inverse(n_fft);
        let window = (0..n_fft)
            .map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos()) as f32)
            .collect();
        let forward_scratch = forward.make_scratch_vec();
        let inverse_scratch = inverse.make_scratch_vec();
        Stft {
            n_fft,
            hop,
            window,
            time_buf: vec![0.0; n_fft],
            freq_buf: vec![Complex::new(0.0, 0.0); n_fft / 2 + 1],
            forward,
            inverse,
            forward_scratch,
            inverse_scratch,
        }
    }

    /// FFT size in samples.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Hop in samples.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Frequency bins per frame: `n_fft/2 + 1`.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// The analysis/synthesis window.
    pub fn window(&self) -> &[f32] {
        &self.window
    }

    /// Frames whose centre lies inside a signal of `len` samples: `1 + len / hop`.
    pub fn frame_count(&self, len: usize) -> usize {
        1 + len / self.hop
    }

    /// Analyses `frames` frames of `signal` into `out` (frame-major, `out[t*bins + b]`).
    /// `frames` may exceed [`Stft::frame_count`]; samples past the end are zeros.
    ///
    /// Panics if `out.len() != frames * bins`.
    pub fn analyze_into(&mut self, signal: &[f32], frames: usize, out: &mut [Complex<f32>]) {
        let bins = self.bins();
        assert_eq!(
            out.len(),
            frames * bins,
            "analyze_into: out must hold frames × bins"
        );
        let half = (self.n_fft / 2) as isize;
        let len = signal.len() as isize;
        for (t, frame_out) in out.chunks_exact_mut(bins).enumerate() {
            let start = (t * self.hop) as isize - half;
            for (n, (slot, w)) in self.time_buf.iter_mut().zip(&self.window).enumerate() {
                let i = start + n as isize;
                *slot = if i >= 0 && i < len {
                    signal[i as usize] * w
                } else {
                    0.0
                };
            }
            self.forward
                .process_with_scratch(&mut self.time_buf, frame_out, &mut self.forward_scratch)
                .expect("buffer sizes are fixed by the plan");
        }
    }

    /// Allocating [`Stft::analyze_into`] over [`Stft::frame_count`] frames.
    pub fn analyze(&mut self, signal: &[f32]) -> Vec<Complex<f32>> {
        let frames = self.frame_count(signal.len());
        let mut out = vec![Complex::new(0.0, 0.0); frames * self.bins()];
        self.analyze_into(signal, frames, &mut out);
        out
    }

    /// Inverts `frames` frames of `spec` (frame-major) into exactly `out.len()` samples by
    /// weighted overlap-add normalised by Σ w² at each sample, the exact inverse of
    /// [`Stft::analyze_into`] when the frames cover the output. Samples no frame covers are 0.
    ///
    /// Panics if `spec.len() != frames * bins`.
    pub fn synthesize_into(&mut self, spec: &[Complex<f32>], frames: usize, out: &mut [f32]) {
        let bins = self.bins();
        assert_eq!(
            spec.len(),
            frames * bins,
            "synthesize_into: spec must hold frames × bins"
        );
        out.fill(0.0);
        let half = (self.n_fft / 2) as isize;
        let len = out.len() as isize;
        let scale = 1.0 / self.n_fft as f32;
        for (t, frame) in spec.chunks_exact(bins).enumerate() {
            let start = (t * self.hop) as isize - half;
            if start >= len {
                break;
            }
            self.freq_buf.copy_from_slice(frame);
            // A real signal's DC and Nyquist bins are real; the inverse FFT insists on it.
            self.freq_buf[0].im = 0.0;
            self.freq_buf[bins - 1].im = 0.0;
            self.inverse
                .process_with_scratch(&mut self.freq_buf, &mut self.time_buf, &mut self.inverse_scratch)
                .expect("buffer sizes are fixed by the plan");
            for (n, (x, w)) in self.time_buf.iter().zip(&self.window).enumerate() {
                let i = start + n as isize;
                if i >= 0 && i < len {
                    out[i as usize] += x * w * scale;
                }
            }
        }
        // Normalise by the summed squared window of the frames that reached each sample.
        let hop = self.hop as isize;
        let n_fft = self.n_fft as isize;
        for (i, sample) in out.iter_mut().enumerate() {
            let pos = i as isize + half; // position of sample i relative to frame 0's start
                                         // frames t with 0 ≤ pos − t·hop < n_fft
            let t_max = (pos / hop).min(frames as isize - 1);
            let t_min = ((pos - n_fft).div_euclid(hop) + 1).max(0);
            let mut norm = 0.0f32;
            for t in t_min..=t_max {
                let w = self.window[(pos - t * hop) as usize];
                norm += w * w;
            }
            *sample = if norm > 1e-10 { *sample / norm } else { 0.0 };
        }
    }

    /// Allocating [`Stft::synthesize_into`] producing `len` samples.
    pub fn synthesize(&mut self, spec: &[Complex<f32>], frames: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0.0; len];
        self.synthesize_into(spec, frames, &mut out);
        out
    }

    /// Writes |X| bin-major (`out[b*frames + t]`), the layout of the ONNX priors' tensors.
    ///
    /// Panics if `spec` or `out` does not hold `frames × bins` values.
    pub fn magnitudes_bin_major_into(&self, spec: &[Complex<f32>], frames: usize, out: &mut [f32]) {
        let bins = self.bins();
        assert_eq!(
            spec.len(),
            frames * bins,
            "magnitudes: spec must hold frames × bins"
        );
        assert_eq!(
            out.len(),
            frames * bins,
            "magnitudes: out must hold frames × bins"
        );
        for (t, frame) in spec.chunks_exact(bins).enumerate() {
            for (b, x) in frame.iter().enumerate() {
                out[b * frames + t] = x.norm();
            }
        }
    }

    /// Allocating [`Stft::magnitudes_bin_major_into`].
    pub fn magnitudes_bin_major(&self, spec: &[Complex<f32>], frames: usize) -> Vec<f32> {
        let mut out = vec![0.0; spec.len()];
        self.magnitudes_bin_major_into(spec, frames, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, mut seed: u64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    fn error_db(x: &[f32], y: &[f32]) -> f64 {
        let e: f64 = x.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let s: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
        10.0 * (e / s).log10()
    }

    fn round_trip(n_fft: usize, hop: usize, len: usize) -> f64 {
        let x = noise(len, n_fft as u64 + len as u64);
        let mut stft = Stft::new(n_fft, hop);
        let spec = stft.analyze(&x);
        let y = stft.synthesize(&spec, stft.frame_count(len), len);
        assert_eq!(y.len(), len);
        error_db(&x, &y)
    }

    #[test]
    fn round_trip_is_exact_for_odd_lengths_and_odd_sizes() {
        for (n_fft, hop, len) in [
            (1024, 256, 10_001),
            (1024, 256, 3),
            (2048, 512, 20_011),
            (2228, 557, 30_001),
        ] {
            let db = round_trip(n_fft, hop, len);
            assert!(db <= -100.0, "{n_fft}/{hop} len {len}: error {db} dB");
        }
    }

    #[test]
    fn round_trip_with_extra_frames() {
        let x = noise(110_250, 7);
        let mut stft = Stft::new(1024, 256);
        let mut spec = vec![Complex::new(0.0, 0.0); 432 * 513];
        stft.analyze_into(&x, 432, &mut spec);
        let mut y = vec![0.0; x.len()];
        stft.synthesize_into(&spec, 432, &mut y);
        assert!(error_db(&x, &y) <= -100.0);
    }

    #[test]
    fn sine_peak_matches_analytic_magnitude() {
        let (n_fft, hop) = (1024, 256);
        let k = 40usize;
        let amp = 0.5f32;
        let x: Vec<f32> = (0..8192)
            .map(|n| amp * (2.0 * std::f32::consts::PI * k as f32 * n as f32 / n_fft as f32).cos())
            .collect();
        let mut stft = Stft::new(n_fft, hop);
        let spec = stft.analyze(&x);
        let frames = stft.frame_count(x.len());
        let mags = stft.magnitudes_bin_major(&spec, frames);
        let t = frames / 2;
        let column: Vec<f32> = (0..513).map(|b| mags[b * frames + t]).collect();
        let peak = column
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(b, _)| b)
            .unwrap();
        assert_eq!(peak, k);
        let sum_w: f32 = stft.window().iter().sum();
        let expected = amp * sum_w / 2.0;
        assert!(
            (column[k] - expected).abs() / expected < 1e-4,
            "{} vs {expected}",
            column[k]
        );
    }

    #[test]
    fn frame_count_matches_contract() {
        let stft = Stft::new(1024, 256);
        assert_eq!(stft.frame_count(110_250), 431);
    }

    #[test]
    fn magnitudes_are_bin_major() {
        let mut stft = Stft::new(8, 2);
        let x = noise(10, 3);
        let spec = stft.analyze(&x);
        let frames = stft.frame_count(10);
        let mags = stft.magnitudes_bin_major(&spec, frames);
        for t in 0..frames {
            for b in 0..5 {
                assert_eq!(mags[b * frames + t], spec[t * 5 + b].norm());
            }
        }
    }
}
