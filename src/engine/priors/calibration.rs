//! Per-bin level calibration of a prior: the ratio of its typical output level to its output at
//! z = 0.
//!
//! The search starts every latent at z = 0 and moves it only a little (a few short Adam steps), so
//! the split of the mixture is dominated by f(0). A flow over log-magnitudes decodes z = 0 to the
//! *mode* of the level distribution, which lies below the mean magnitude by a factor that grows
//! with the source's level spread: a drum kit (loud hits, quiet decays) decodes far quieter at
//! z = 0 than a sustained piano, and the drums lose their share of the mix. Scaling each prior's
//! output by gᵦ = L_z[f(z)]ᵦ / f(0)ᵦ (time-averaged per frequency bin, z ~ N(0, I)), where L is
//! the mean or a trimmed mean of the bin's level, puts every prior at that level. The gain is a constant per bin, so the search optimises
//! sᵢ = gᵢ ⊙ fᵢ(zᵢ) with the same graphs (the cotangent is scaled by gᵢ), and log p changes only
//! by the constant −Σ ln g.

use crate::engine::constants::{BINS, FRAMES};
use crate::engine::priors::level_gains_section::LevelGainsSection;
use crate::engine::priors::prior::{CachedLevelGains, Prior};
use crate::engine::priors::prior_error::PriorError;

/// The seed of the latent samples, fixed so a prior always gets the same calibration.
const SEED: u64 = 0x5EED_57E4_F10A_0000;

/// [`level_gains`] of `prior` over whole 5-s frames: the ones its manifest stores or an earlier
/// call computed when they are for `samples` and `trim`, else computed now and kept in the prior
/// (so a separator rebuilt with the same priors does not decode them again).
pub fn frame_level_gains(prior: &mut Prior, samples: usize, trim: f32) -> Result<Vec<f32>, PriorError> {
    if let Some(cached) = prior.cached_level_gains() {
        if (cached.samples, cached.trim) == (samples, trim) {
            return Ok(cached.gains.clone());
        }
    }
    let gains = level_gains(prior, FRAMES, samples, trim)?;
    prior.cache_level_gains(CachedLevelGains {
        samples,
        trim,
        gains: gains.clone(),
    });
    Ok(gains)
}

/// The `level_gains` section that stores [`level_gains`] of `prior` over whole 5-s frames for
/// `samples` and `trim` in its manifest, naming the graphs it was computed with. Always
/// computes, whatever the prior already stores.
pub fn level_gains_section(
    prior: &mut Prior,
    samples: usize,
    trim: f32,
) -> Result<LevelGainsSection, PriorError> {
    let gains = level_gains(prior, FRAMES, samples, trim)?;
    let graphs = &prior.manifest().graphs;
    let decode_sha256 =
        graphs
            .decode
            .as_ref()
            .map(|decode| decode.sha256.clone())
            .ok_or(PriorError::Run {
                graph: "decode",
                reason: "the prior lists no `decode` graph".into(),
            })?;
    Ok(LevelGainsSection {
        samples,
        trim,
        decode_sha256,
        weights_sha256: graphs.weights.as_ref().map(|w| w.sha256.clone()),
        gains,
    })
}

/// Per-bin gains L[f(z)] / f(0) of `prior`, where L is each bin's level over `samples` latents
/// z ~ N(0, I) of `frames` STFT frames and f(0) its time average at z = 0. L is the mean of the
/// bin's `samples × frames` values after the highest fraction `trim` of them is dropped (0 gives
/// the plain mean): a level distribution as wide as a drum kit's has a mean set by rare loud
/// events, and the trimmed mean is the level most of the source sits at. `samples == 0` gives
/// gains of one (no calibration). Costs `samples + 1` decodes. Panics if `trim` is outside
/// [0, 1) (callers validate their settings first).
pub fn level_gains(
    prior: &mut Prior,
    frames: usize,
    samples: usize,
    trim: f32,
) -> Result<Vec<f32>, PriorError> {
    assert!(
        (0.0..1.0).contains(&trim),
        "trim must lie in [0, 1), found {trim}"
    );
    if samples == 0 {
        return Ok(vec![1.0; BINS]);
    }
    let len = BINS * frames;
    let mut z = vec![0.0f32; len];
    let mut s = vec![0.0f32; len];
    prior.decode_into(&z, frames, &mut s)?;
    let at_zero = bin_means(&s, frames);
    // Every bin's values over all samples, bin-major: [BINS][samples × frames].
    let per_bin = samples * frames;
    let mut values = vec![0.0f32; BINS * per_bin];
    let mut normal = Normal::new(SEED);
    for k in 0..samples {
        z.iter_mut().for_each(|v| *v = normal.sample());
        prior.decode_into(&z, frames, &mut s)?;
        for (bin, row) in s.chunks_exact(frames).enumerate() {
            values[bin * per_bin + k * frames..][..frames].copy_from_slice(row);
        }
    }
    Ok(values
        .chunks_exact_mut(per_bin)
        .zip(&at_zero)
        .map(|(bin_values, &zero)| {
            let gain = trimmed_mean(bin_values, trim) / zero;
            if gain.is_finite() && gain > 0.0 {
                gain as f32
            } else {
                1.0
            }
        })
        .collect())
}

/// The mean of the values at or below the (1 − `trim`) quantile of `values` (linear
/// interpolation between order statistics, as numpy's default quantile). Sorts `values`.
fn trimmed_mean(values: &mut [f32], trim: f32) -> f64 {
    if trim == 0.0 {
        return values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
    }
    values.sort_unstable_by(f32::total_cmp);
    let position = (values.len() - 1) as f64 * (1.0 - f64::from(trim));
    let below = position.floor() as usize;
    let above = (below + 1).min(values.len() - 1);
    let fraction = position - below as f64;
    let cut = f64::from(values[below]) * (1.0 - fraction) + f64::from(values[above]) * fraction;
    // Sorted, so the kept values are a prefix; it holds at least values[below] ≤ cut.
    let (sum, count) = values
        .iter()
        .map(|&v| f64::from(v))
        .take_while(|&v| v <= cut)
        .fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    sum / count as f64
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
    use crate::engine::priors::runtime::{Runtime, RuntimeOptions, SessionOptions};
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

    /// The toy prior's per-bin `a` (it decodes s = exp(a·z + b) per bin).
    fn toy_prior() -> (Prior, Vec<f64>) {
        #[derive(serde::Deserialize)]
        struct Params {
            a: Vec<f32>,
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy_prior/toy");
        let params: Params =
            serde_json::from_str(&std::fs::read_to_string(dir.join("params.json")).unwrap()).unwrap();
        let runtime = Runtime::load(&RuntimeOptions::default()).unwrap();
        let prior = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        (prior, params.a.iter().map(|&a| f64::from(a)).collect())
    }

    /// The standard error of the mean of `n` samples of exp(a·z), z ~ N(0, 1), relative to s(0).
    fn log_normal_standard_error(a: f64, n: f64) -> f64 {
        let a2 = a * a;
        ((a2.exp() - 1.0) * a2.exp() / n).sqrt()
    }

    /// The toy prior decodes s = exp(a·z + b) per bin, so E[s] / s(0) = exp(a²/2) exactly.
    #[test]
    fn gains_match_the_log_normal_mean_of_the_toy_prior() {
        let (mut prior, a) = toy_prior();
        let frames = 432;
        let gains = level_gains(&mut prior, frames, 8, 0.0).unwrap();
        assert_eq!(gains.len(), BINS);
        for (bin, (&gain, &a)) in gains.iter().zip(&a).enumerate() {
            let expected = (a * a / 2.0).exp();
            // The mean of 8 × 432 log-normal samples: within five of its standard errors.
            let tolerance = 5.0 * log_normal_standard_error(a, 8.0 * 432.0) + 1e-6;
            assert!(
                (f64::from(gain) - expected).abs() <= tolerance,
                "bin {bin}: gain {gain}, expected {expected} (a = {a})"
            );
        }
        assert_eq!(level_gains(&mut prior, frames, 0, 0.0).unwrap(), vec![1.0; BINS]);
        // Deterministic: the same prior always gets the same gains.
        assert_eq!(level_gains(&mut prior, frames, 8, 0.0).unwrap(), gains);
    }

    /// With the top 10 % dropped, the level of exp(a·z) is its mean below the 0.9 quantile
    /// c = exp(|a|·q₀.₉): E[s·1{s ≤ c}] / 0.9 = exp(a²/2)·Φ(q₀.₉ − |a|) / 0.9.
    #[test]
    fn trimmed_gains_match_the_log_normal_trimmed_mean_of_the_toy_prior() {
        let (mut prior, a) = toy_prior();
        let frames = 432;
        let trim = 0.1;
        let q90 = 1.281_551_565_545; // Φ⁻¹(0.9)
        let gains = level_gains(&mut prior, frames, 8, trim).unwrap();
        let plain = level_gains(&mut prior, frames, 8, 0.0).unwrap();
        for (bin, ((&gain, &plain), &a)) in gains.iter().zip(&plain).zip(&a).enumerate() {
            let expected = (a * a / 2.0).exp() * normal_cdf(q90 - a.abs()) / (1.0 - f64::from(trim));
            // Dropping the top of a right-skewed sample shrinks its spread: the untrimmed mean's
            // standard error bounds the trimmed one's.
            let tolerance = 5.0 * log_normal_standard_error(a, 8.0 * 432.0) + 1e-6;
            assert!(
                (f64::from(gain) - expected).abs() <= tolerance,
                "bin {bin}: gain {gain}, expected {expected} (a = {a})"
            );
            assert!(
                gain <= plain * (1.0 + 1e-6),
                "bin {bin}: trimmed {gain} above mean {plain}"
            );
        }
    }

    #[test]
    fn trimmed_mean_drops_the_top_fraction() {
        let mut values: Vec<f32> = (1..=10).map(|v| v as f32).collect();
        // 0.9 quantile of 1..=10 is 9.1: 1..=9 kept.
        assert!((trimmed_mean(&mut values, 0.1) - 5.0).abs() < 1e-12);
        let mut values: Vec<f32> = (1..=10).rev().map(|v| v as f32).collect();
        assert!((trimmed_mean(&mut values, 0.0) - 5.5).abs() < 1e-12);
        let mut constant = vec![3.0f32; 7];
        assert_eq!(trimmed_mean(&mut constant, 0.25), 3.0);
    }

    /// Φ(x) from erfc (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7).
    fn normal_cdf(x: f64) -> f64 {
        let y = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * y);
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erfc = poly * (-y * y).exp();
        if x >= 0.0 {
            1.0 - 0.5 * erfc
        } else {
            0.5 * erfc
        }
    }
}
