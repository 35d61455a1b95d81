//! Resampling one whole mono frame between the host rate and the prior rate (22.05 kHz) with
//! rubato's synchronous FFT resampler, time-aligned and to an exact output length.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};
use thiserror::Error;

use crate::engine::limits::{check_sample_rate, FormatError};

/// Wanted FFT block size on the input side, in frames (rubato rounds it to a multiple of the
/// rate pair's minimum block); longer blocks give a longer, sharper anti-aliasing filter.
const TARGET_BLOCK: usize = 1024;

/// Why a [`FrameResampler`] cannot be made or run.
#[derive(Debug, Error)]
pub enum ResampleError {
    /// A rate outside what the engine supports (e.g. 0 Hz from a broken file header).
    #[error(transparent)]
    UnsupportedRate(#[from] FormatError),
    /// rubato refused the configuration.
    #[error("could not build a {in_rate} Hz → {out_rate} Hz resampler: {message}")]
    Construction {
        /// Input rate in Hz.
        in_rate: u32,
        /// Output rate in Hz.
        out_rate: u32,
        /// rubato's explanation.
        message: String,
    },
    /// rubato failed while processing (should not happen with the sizes checked here).
    #[error("resampling failed: {0}")]
    Process(String),
}

/// Resamples frames of up to `max_input_len` mono samples from `in_rate` to `out_rate`.
///
/// Output sample m sits at time m/out_rate, input sample n at n/in_rate (rubato's delay is
/// trimmed), and the output length is exactly `round(len·out_rate/in_rate)`. All buffers are
/// allocated in [`FrameResampler::new`].
pub struct FrameResampler {
    /// Input rate in Hz.
    in_rate: u32,
    /// Output rate in Hz.
    out_rate: u32,
    /// Longest input `process_into` accepts (the output buffer is sized for it).
    max_input_len: usize,
    /// rubato's FFT resampler; `None` when the rates are equal (plain copy).
    resampler: Option<Fft<f32>>,
    /// rubato's output including its padding; the first `output_len` samples are the result.
    scratch: Vec<f32>,
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("max_input_len", &self.max_input_len)
            .finish()
    }
}

impl FrameResampler {
    /// Plans a resampler for frames of at most `max_input_len` samples.
    pub fn new(in_rate: u32, out_rate: u32, max_input_len: usize) -> Result<Self, ResampleError> {
        check_sample_rate(in_rate)?;
        check_sample_rate(out_rate)?;
        if in_rate == out_rate {
            return Ok(FrameResampler {
                in_rate,
                out_rate,
                max_input_len,
                resampler: None,
                scratch: Vec::new(),
            });
        }
        // rubato's delay is half an output FFT block. Choosing an even number of minimum blocks
        // makes both block sizes even, so that delay is a whole number of samples on both sides
        // and `process_all_into_buffer` trims it exactly (an odd block would leave the output
        // half a sample late).
        let gcd = gcd(in_rate as usize, out_rate as usize);
        let min_block_in = in_rate as usize / gcd;
        let blocks = 2 * TARGET_BLOCK.div_ceil(2 * min_block_in);
        let mut resampler = Fft::<f32>::new_custom(
            in_rate as usize,
            out_rate as usize,
            blocks * min_block_in,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| ResampleError::Construction {
            in_rate,
            out_rate,
            message: e.to_string(),
        })?;
        let needed = resampler.process_all_needed_output_len(max_input_len.max(1));
        Ok(FrameResampler {
            in_rate,
            out_rate,
            max_input_len,
            resampler: Some(resampler),
            scratch: vec![0.0; needed],
        })
    }

    /// Input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Output samples for `input_len` input samples: `round(input_len·out_rate/in_rate)`.
    pub fn output_len(&self, input_len: usize) -> usize {
        output_len(input_len, self.in_rate, self.out_rate)
    }

    /// Resamples `input` into `out`, which must hold exactly [`Self::output_len`] samples.
    /// Allocates nothing.
    ///
    /// Panics if `input` is longer than `max_input_len` or `out` has the wrong length.
    pub fn process_into(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), ResampleError> {
        assert!(
            input.len() <= self.max_input_len,
            "input of {} samples exceeds max_input_len {}",
            input.len(),
            self.max_input_len
        );
        assert_eq!(
            out.len(),
            self.output_len(input.len()),
            "out must hold output_len samples"
        );
        let Some(resampler) = self.resampler.as_mut() else {
            out.copy_from_slice(input);
            return Ok(());
        };
        if input.is_empty() {
            return Ok(());
        }
        resampler.reset();
        let process = |e: &dyn std::fmt::Display| ResampleError::Process(e.to_string());
        let adapter_in = SequentialSlice::new(input, 1, input.len()).map_err(|e| process(&e))?;
        let frames = self.scratch.len();
        let mut adapter_out =
            SequentialSlice::new_mut(&mut self.scratch, 1, frames).map_err(|e| process(&e))?;
        let (_, produced) = resampler
            .process_all_into_buffer(&adapter_in, &mut adapter_out, input.len(), None)
            .map_err(|e| process(&e))?;
        debug_assert!(produced >= out.len());
        out.copy_from_slice(&self.scratch[..out.len()]);
        Ok(())
    }

    /// Allocating [`Self::process_into`].
    pub fn process(&mut self, input: &[f32]) -> Result<Vec<f32>, ResampleError> {
        let mut out = vec![0.0; self.output_len(input.len())];
        self.process_into(input, &mut out)?;
        Ok(out)
    }
}

/// Greatest common divisor.
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `round(len·out_rate/in_rate)` in exact integer arithmetic.
pub fn output_len(len: usize, in_rate: u32, out_rate: u32) -> usize {
    let num = len as u128 * out_rate as u128;
    let den = in_rate as u128;
    ((2 * num + den) / (2 * den)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tones(rate: u32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| {
                let t = n as f64 / rate as f64;
                (0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    + 0.25 * (2.0 * std::f64::consts::PI * 3000.0 * t + 0.3).sin()) as f32
            })
            .collect()
    }

    fn interior_error_db(a: &[f32], b: &[f32]) -> f64 {
        let skip = 1000;
        let (a, b) = (&a[skip..a.len() - skip], &b[skip..b.len() - skip]);
        let e: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let s: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        10.0 * (e / s).log10()
    }

    #[test]
    fn downsampled_tones_match_direct_generation() {
        for rate in [
            44_100u32, 48_000, 96_000, 44_056, 192_000, 352_800, 384_000, 8_000,
        ] {
            let len = rate as usize * 5;
            let mut rs = FrameResampler::new(rate, 22_050, len).unwrap();
            let out = rs.process(&tones(rate, len)).unwrap();
            assert_eq!(out.len(), 110_250, "rate {rate}");
            let db = interior_error_db(&out, &tones(22_050, out.len()));
            eprintln!("{rate} Hz → 22050 Hz: interior error {db:.1} dB");
            assert!(db < -40.0, "rate {rate}: error {db} dB");
        }
    }

    #[test]
    fn upsampled_tones_match_direct_generation() {
        for rate in [44_100u32, 48_000, 88_200] {
            let mut rs = FrameResampler::new(22_050, rate, 110_250).unwrap();
            let out = rs.process(&tones(22_050, 110_250)).unwrap();
            assert_eq!(out.len(), rate as usize * 5);
            let db = interior_error_db(&out, &tones(rate, out.len()));
            assert!(db < -40.0, "rate {rate}: error {db} dB");
        }
    }

    #[test]
    fn shorter_frames_and_repeated_use_are_consistent() {
        let mut rs = FrameResampler::new(48_000, 22_050, 240_000).unwrap();
        let x = tones(48_000, 100_001);
        let a = rs.process(&x).unwrap();
        let b = rs.process(&x).unwrap();
        assert_eq!(a, b, "state must not leak between frames");
        assert_eq!(a.len(), output_len(100_001, 48_000, 22_050));
        assert!(interior_error_db(&a, &tones(22_050, a.len())) < -40.0);
    }

    #[test]
    fn equal_rates_copy() {
        let mut rs = FrameResampler::new(22_050, 22_050, 10).unwrap();
        let x = [1.0, 2.0, 3.0];
        assert_eq!(rs.process(&x).unwrap(), x.to_vec());
    }

    #[test]
    fn output_len_rounds() {
        assert_eq!(output_len(220_500, 44_100, 22_050), 110_250);
        assert_eq!(output_len(3, 44_100, 22_050), 2);
        assert_eq!(output_len(240_000, 48_000, 22_050), 110_250);
    }

    #[test]
    fn rejects_bad_rates() {
        assert!(matches!(
            FrameResampler::new(0, 22_050, 10),
            Err(ResampleError::UnsupportedRate(FormatError::SampleRate {
                found: 0
            }))
        ));
        assert!(FrameResampler::new(400_000, 22_050, 10).is_err());
    }
}
