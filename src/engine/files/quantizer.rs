//! Float samples to integer file samples: scaled to the depth's full scale, TPDF-dithered at
//! 16 bit (so quantisation noise is a steady hiss, not distortion that follows the music),
//! rounded, and clipped to the integer range, counting what was clipped.

use super::stem_format::SampleDepth;

/// Converts one stem's samples for an integer format; deterministic for a given seed, so two runs
/// write the same file.
#[derive(Debug, Clone)]
pub struct Quantizer {
    /// 2^(bits−1): a float sample of 1.0 maps to this.
    full_scale: f64,
    /// Largest integer sample (full scale − 1).
    max: i32,
    /// Whether triangular dither of ±1 LSB is added before rounding.
    dither: bool,
    /// xorshift64* state for the dither.
    state: u64,
    /// Samples that did not fit the integer range and were clipped.
    clipped: u64,
}

impl Quantizer {
    /// A quantizer for `depth` (an integer depth; float needs none), its dither seeded by `seed`.
    ///
    /// Panics if `depth` is [`SampleDepth::Float32`].
    pub fn new(depth: SampleDepth, seed: u64) -> Self {
        let full_scale = depth.full_scale().expect("an integer sample depth");
        Quantizer {
            full_scale,
            max: full_scale as i32 - 1,
            dither: depth == SampleDepth::Int16,
            // Any odd, non-zero state works; the constant spreads small seeds.
            state: (seed ^ 0x9E37_79B9_7F4A_7C15) | 1,
            clipped: 0,
        }
    }

    /// One sample as an integer of the depth.
    pub fn quantize(&mut self, x: f32) -> i32 {
        let mut scaled = f64::from(x) * self.full_scale;
        if self.dither {
            scaled += self.uniform() - self.uniform();
        }
        let rounded = scaled.round();
        let min = -(self.max as f64) - 1.0;
        if rounded > self.max as f64 || rounded < min || rounded.is_nan() {
            self.clipped += 1;
        }
        // `as` saturates and maps NaN to 0.
        (rounded as i32).clamp(-self.max - 1, self.max)
    }

    /// Samples clipped so far.
    pub fn clipped(&self) -> u64 {
        self.clipped
    }

    /// A uniform number in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_is_dithered_within_one_step_and_unbiased() {
        let mut q = Quantizer::new(SampleDepth::Int16, 7);
        let x = 0.3f32;
        let exact = f64::from(x) * 32768.0;
        let values: Vec<i32> = (0..20_000).map(|_| q.quantize(x)).collect();
        assert!(values.iter().all(|&v| (f64::from(v) - exact).abs() <= 1.5));
        assert!(values.iter().any(|&v| v != values[0]), "dither varies the value");
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
        assert!((mean - exact).abs() < 0.02, "mean {mean} vs {exact}");
        assert_eq!(q.clipped(), 0);
    }

    #[test]
    fn twenty_four_bit_rounds_without_dither() {
        let mut q = Quantizer::new(SampleDepth::Int24, 7);
        assert_eq!(q.quantize(0.5), 1 << 22);
        assert_eq!(q.quantize(-1.0), -(1 << 23));
        assert_eq!(q.quantize(0.5), 1 << 22);
    }

    #[test]
    fn out_of_range_samples_are_clipped_and_counted() {
        let mut q = Quantizer::new(SampleDepth::Int16, 1);
        assert_eq!(q.quantize(2.0), 32767);
        assert_eq!(q.quantize(-2.0), -32768);
        assert_eq!(q.quantize(f32::NAN), 0);
        assert_eq!(q.clipped(), 3);
    }

    #[test]
    fn the_same_seed_gives_the_same_samples() {
        let run = |seed| {
            let mut q = Quantizer::new(SampleDepth::Int16, seed);
            (0..100)
                .map(|i| q.quantize(i as f32 / 1000.0))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
