//! The separation data term: the generalised Kullback–Leibler divergence between the mixture
//! magnitude X and the sum of the decoded stems, and its gradient with respect to each stem.

/// Added to Σs in the cotangent so X/Σs stays finite. The contract guarantees decoded stems
/// are positive, so this only matters where every stem has decoded to almost nothing; 1e-6 is far below
/// any audible magnitude (|X| of a full-scale sine is ~256 in this unscaled STFT).
pub const KL_EPSILON: f32 = 1e-6;

/// D(x ‖ y) = Σ x·ln(x/y) − x + y, accumulated in f64. Terms with x = 0 contribute y; a term
/// with x > 0 and y = 0 makes the divergence +∞. `x` and `y` must have the same length (extra
/// values of the longer one are ignored).
pub fn kl_divergence(x: &[f32], y: &[f32]) -> f64 {
    debug_assert_eq!(x.len(), y.len());
    x.iter()
        .zip(y)
        .map(|(&x, &y)| {
            let (x, y) = (x as f64, y as f64);
            if x > 0.0 {
                x * (x / y).ln() - x + y
            } else {
                y
            }
        })
        .sum()
}

/// The cotangent ∂D(x ‖ Σs)/∂sᵢ, the same for every stem i: g = 1 − x/(Σs + ε), with
/// ε = [`KL_EPSILON`]. Written into `g`; all three slices have one value per bin and frame.
pub fn kl_cotangent_into(x: &[f32], stems_sum: &[f32], g: &mut [f32]) {
    debug_assert_eq!(x.len(), stems_sum.len());
    debug_assert_eq!(x.len(), g.len());
    for ((g, &x), &sum) in g.iter_mut().zip(x).zip(stems_sum) {
        *g = 1.0 - x / (sum + KL_EPSILON);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_is_zero_at_equality_and_positive_elsewhere() {
        let x = [0.5f32, 2.0, 0.0, 7.0];
        assert!(kl_divergence(&x, &x).abs() < 1e-12);
        assert!(kl_divergence(&x, &[0.6, 1.5, 0.1, 7.0]) > 0.0);
        // x = 0 terms give y.
        assert!((kl_divergence(&[0.0], &[0.25]) - 0.25).abs() < 1e-12);
        // Hand value: x = 2, y = 1 → 2·ln 2 − 2 + 1.
        assert!((kl_divergence(&[2.0], &[1.0]) - (2.0 * 2f64.ln() - 1.0)).abs() < 1e-12);
        assert_eq!(kl_divergence(&[1.0], &[0.0]), f64::INFINITY);
    }

    #[test]
    fn cotangent_matches_finite_differences() {
        let x: Vec<f32> = (0..50)
            .map(|i| {
                if i % 7 == 0 {
                    0.0
                } else {
                    0.1 + (i as f32 * 0.31).sin().abs() * 3.0
                }
            })
            .collect();
        let y: Vec<f32> = (0..50)
            .map(|i| 0.2 + (i as f32 * 0.17).cos().abs() * 2.0)
            .collect();
        let mut g = vec![0.0f32; x.len()];
        kl_cotangent_into(&x, &y, &mut g);
        for i in 0..x.len() {
            let h = 1e-3 * y[i];
            let (mut plus, mut minus) = (y.clone(), y.clone());
            plus[i] += h;
            minus[i] -= h;
            let step = plus[i] as f64 - minus[i] as f64;
            let fd = (kl_divergence(&x, &plus) - kl_divergence(&x, &minus)) / step;
            assert!(
                (fd - g[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                "bin {i}: fd {fd} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn cotangent_is_finite_when_stems_vanish() {
        let mut g = [0.0f32; 2];
        kl_cotangent_into(&[1.0, 0.0], &[0.0, 0.0], &mut g);
        assert!(g.iter().all(|v| v.is_finite()));
        assert_eq!(g[1], 1.0);
    }
}
