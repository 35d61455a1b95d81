//! Per-bin level calibration of a prior: the ratio of its mean output to its output at z = 0.
//!
//! The search starts every latent at z = 0 and moves it only a little (Adam 0.01 × 150 steps), so
//! the split of the mixture is dominated by f(0). A flow over log-magnitudes decodes z = 0 to the
//! *mode* of the level distribution, which lies below the mean magnitude by a factor that grows
//! with the source's level spread: a drum kit (loud hits, quiet decays) decodes far quieter at
//! z = 0 than a sustained piano, and the drums lose their share of the mix. Scaling each prior's
//! output by gᵦ = E_z[f(z)]ᵦ / f(0)ᵦ (time-averaged per frequency bin, z ~ N(0, I)) puts every
//! prior at its mean level. The gain is a constant per bin, so the search optimises
//! sᵢ = gᵢ ⊙ fᵢ(zᵢ) with the same graphs (the cotangent is scaled by gᵢ), and log p changes only
//! by the constant −Σ ln g.

use crate::engine::constants::BINS;
use crate::engine::prior::{Prior, PriorError};

/// The seed of the latent samples, fixed so a prior always gets the same calibration.
const SEED: u64 = 0x5EED_57E4_F10A_0000;

/// Per-bin gains E[f(z)] / f(0) of `prior`, estimated from `samples` latents z ~ N(0, I) of
/// `frames` STFT frames, averaged over time. `samples == 0` gives gains of one (no calibration).
/// Costs `samples + 1` decodes.
pub fn level_gains(prior: &mut Prior, frames: usize, samples: usize) -> Result<Vec<f32>, PriorError> {
    if samples == 0 {
        return Ok(vec![1.0; BINS]);
    }
    let len = BINS * frames;
    let mut z = vec![0.0f32; len];
    let mut s = vec![0.0f32; len];
    prior.decode_into(&z, frames, &mut s)?;
    let at_zero = bin_means(&s, frames);
    let mut mean = vec![0.0f64; BINS];
    let mut normal = Normal::new(SEED);
    for _ in 0..samples {
        z.iter_mut().for_each(|v| *v = normal.sample());
        prior.decode_into(&z, frames, &mut s)?;
        for (m, v) in mean.iter_mut().zip(bin_means(&s, frames)) {
            *m += v / samples as f64;
        }
    }
    Ok(mean
        .iter()
        .zip(&at_zero)
        .map(|(&m, &zero)| {
            let gain = m / zero;
            if gain.is_finite() && gain > 0.0 {
                gain as f32
            } else {
                1.0
            }
        })
        .collect())
}

/// The time average of every bin of a `[513, frames]` bin-major buffer.
fn bin_means(s: &[f32], frames: usize) -> Vec<f64> {
    s.chunks_exact(frames)
        .map(|row| row.iter().map(|&v| f64::from(v)).sum::<f64>() / frames as f64)
        .collect()
}

/// A small deterministic N(0, 1) generator (splitmix64 + Box–Muller): the engine needs
/// reproducible latent samples and nothing more, so no RNG crate.
struct Normal {
    state: u64,
    spare: Option<f32>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Normal {
            state: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.state;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some((r * theta.sin()) as f32);
        (r * theta.cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runtime::{Runtime, RuntimeOptions, SessionOptions};
    use std::path::Path;

    #[test]
    fn normal_samples_have_unit_moments() {
        let mut normal = Normal::new(SEED);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| f64::from(normal.sample())).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    /// The toy prior decodes s = exp(a·z + b) per bin, so E[s] / s(0) = exp(a²/2) exactly.
    #[test]
    fn gains_match_the_log_normal_mean_of_the_toy_prior() {
        #[derive(serde::Deserialize)]
        struct Params {
            a: Vec<f32>,
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy_prior/toy");
        let params: Params =
            serde_json::from_str(&std::fs::read_to_string(dir.join("params.json")).unwrap()).unwrap();
        let runtime = Runtime::load(&RuntimeOptions::default()).unwrap();
        let mut prior = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        let frames = 432;
        let gains = level_gains(&mut prior, frames, 8).unwrap();
        assert_eq!(gains.len(), BINS);
        for (bin, (&gain, &a)) in gains.iter().zip(&params.a).enumerate() {
            let a2 = f64::from(a) * f64::from(a);
            let expected = (a2 / 2.0).exp();
            // The mean of 8 × 432 log-normal samples: within five of its standard errors.
            let standard_error = ((a2.exp() - 1.0) * a2.exp() / (8.0 * 432.0)).sqrt();
            let tolerance = 5.0 * standard_error;
            assert!(
                (f64::from(gain) - expected).abs() <= tolerance,
                "bin {bin}: gain {gain}, expected {expected} (a = {a})"
            );
        }
        assert_eq!(level_gains(&mut prior, frames, 0).unwrap(), vec![1.0; BINS]);
        // Deterministic: the same prior always gets the same gains.
        assert_eq!(level_gains(&mut prior, frames, 8).unwrap(), gains);
    }
}
