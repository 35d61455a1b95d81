//! Seeded standard-normal noise for Langevin separation: the same seed gives the same stems on
//! every machine and in every host (the plugin's offline bounce equals the command line's run).
//! xoshiro256++ seeded through SplitMix64, and the Box–Muller transform.

/// A deterministic stream of independent N(0, 1) samples.
#[derive(Debug, Clone)]
pub struct GaussianNoise {
    /// xoshiro256++ state.
    state: [u64; 4],
    /// The second sample of the last Box–Muller pair, not handed out yet.
    spare: Option<f32>,
}

impl GaussianNoise {
    /// The stream for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            // SplitMix64: spreads any seed over the whole state (never all zeros).
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        GaussianNoise {
            state: [next(), next(), next(), next()],
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1]: 53 random bits, never 0 (Box–Muller takes its logarithm).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// The next N(0, 1) sample.
    pub fn sample(&mut self) -> f32 {
        if let Some(spare) = self.spare.take() {
            return spare;
        }
        let radius = (-2.0 * self.uniform().ln()).sqrt();
        let angle = std::f64::consts::TAU * self.uniform();
        self.spare = Some((radius * angle.sin()) as f32);
        (radius * angle.cos()) as f32
    }

    /// Fills `out` with N(0, 1) samples.
    pub fn fill(&mut self, out: &mut [f32]) {
        out.iter_mut().for_each(|v| *v = self.sample());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_samples_and_they_are_standard_normal() {
        let (mut a, mut b) = (GaussianNoise::new(7), GaussianNoise::new(7));
        let mut x = vec![0.0; 200_000];
        a.fill(&mut x);
        let mut y = vec![0.0; 200_000];
        b.fill(&mut y);
        assert_eq!(x, y);
        let mut other = vec![0.0; 16];
        GaussianNoise::new(8).fill(&mut other);
        assert_ne!(&x[..16], &other[..]);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        let within_one = x.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!((within_one - 0.6827).abs() < 0.005, "P(|x| < 1) = {within_one}");
    }
}
