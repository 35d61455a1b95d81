//! Adam, the optimizer the paper runs over each prior's latent.

use crate::engine::search::settings::AdamSettings;

/// Adam's state for one parameter vector (one prior's latent z). Allocated once per frame size;
/// [`Adam::reset`] starts a new frame without reallocating.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    /// Step size, moment decays and ε.
    settings: AdamSettings,
    /// First-moment (mean) estimate of the gradient, per parameter.
    m: Vec<f32>,
    /// Second-moment (uncentred variance) estimate of the gradient, per parameter.
    v: Vec<f32>,
    /// Steps taken since the last reset; drives the bias correction.
    t: u32,
}

impl Adam {
    /// Adam for `len` parameters, with zero moments.
    pub fn new(len: usize, settings: AdamSettings) -> Self {
        Adam {
            settings,
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    /// Zeroes the moments and the step count, for a new frame.
    pub fn reset(&mut self) {
        self.m.fill(0.0);
        self.v.fill(0.0);
        self.t = 0;
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.m.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.m.is_empty()
    }

    /// Steps taken since the last reset.
    pub fn steps(&self) -> u32 {
        self.t
    }

    /// The settings in use.
    pub fn settings(&self) -> &AdamSettings {
        &self.settings
    }

    /// One Adam step minimising the loss whose gradient is `grad`:
    /// m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),
    /// p ← p − lr·m̂/(√v̂ + ε). `params` and `grad` must have [`Adam::len`] values (only the
    /// common prefix is updated otherwise; debug builds assert).
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        debug_assert_eq!(params.len(), self.m.len());
        debug_assert_eq!(grad.len(), self.m.len());
        self.t = self.t.saturating_add(1);
        let AdamSettings {
            learning_rate,
            beta1,
            beta2,
            epsilon,
        } = self.settings;
        let t = self.t as i32;
        // Bias corrections in f64: 1 − β₂ᵗ is tiny for small t and loses digits in f32.
        let correction1 = (1.0 - (beta1 as f64).powi(t)) as f32;
        let correction2 = (1.0 - (beta2 as f64).powi(t)) as f32;
        let (one_minus_b1, one_minus_b2) = (1.0 - beta1, 1.0 - beta2);
        for (((p, &g), m), v) in params.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = beta1 * *m + one_minus_b1 * g;
            *v = beta2 * *v + one_minus_b2 * g * g;
            let m_hat = *m / correction1;
            let v_hat = *v / correction2;
            *p -= learning_rate * m_hat / (v_hat.sqrt() + epsilon);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AdamSettings {
        AdamSettings {
            learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }

    #[test]
    fn two_steps_match_a_hand_computation() {
        let mut adam = Adam::new(2, settings());
        let mut p = [1.0f32, -2.0];
        // Step 1, g = [0.5, -1]:
        //   m = 0.1·g = [0.05, -0.1];  v = 0.001·g² = [0.00025, 0.001]
        //   m̂ = m/(1−0.9) = [0.5, -1];  v̂ = v/(1−0.999) = [0.25, 1];  √v̂ = [0.5, 1]
        //   p = [1 − 0.1·0.5/0.5, −2 − 0.1·(−1)/1] = [0.9, −1.9]   (ε = 1e-8 shifts the 9th digit)
        adam.step(&mut p, &[0.5, -1.0]);
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] + 1.9).abs() < 1e-6, "{p:?}");
        // Step 2, g = [0.5, 3]:
        //   m = 0.9·m + 0.1·g = [0.045 + 0.05, −0.09 + 0.3] = [0.095, 0.21]
        //   v = 0.999·v + 0.001·g² = [0.00024975 + 0.00025, 0.000999 + 0.009] = [0.00049975, 0.009999]
        //   m̂ = m/(1−0.81) = [0.5, 1.1052632];  v̂ = v/(1−0.998001) = [0.25, 5.0020010]
        //   √v̂ = [0.5, 2.2365154]
        //   p = [0.9 − 0.1·0.5/0.5, −1.9 − 0.1·1.1052632/2.2365154] = [0.8, −1.9494190]
        adam.step(&mut p, &[0.5, 3.0]);
        assert!((p[0] - 0.8).abs() < 1e-6, "{p:?}");
        assert!((p[1] + 1.949_419).abs() < 1e-6, "{p:?}");
        assert_eq!(adam.steps(), 2);
    }

    #[test]
    fn reset_forgets_the_moments() {
        let mut adam = Adam::new(1, settings());
        let mut p = [0.0f32];
        adam.step(&mut p, &[3.0]);
        adam.step(&mut p, &[-1.0]);
        adam.reset();
        assert_eq!(adam.steps(), 0);
        // After a reset the first step is again lr·sign(g), whatever came before.
        let mut q = [0.0f32];
        adam.step(&mut q, &[7.0]);
        assert!((q[0] + 0.1).abs() < 1e-6, "{q:?}");
    }

    #[test]
    fn minimises_a_quadratic() {
        // f(p) = Σ (p − c)², ∇f = 2(p − c).
        let c = [1.5f32, -0.5, 0.25];
        let mut adam = Adam::new(
            3,
            AdamSettings {
                learning_rate: 0.05,
                ..settings()
            },
        );
        let mut p = [0.0f32; 3];
        let mut g = [0.0f32; 3];
        for _ in 0..2000 {
            for i in 0..3 {
                g[i] = 2.0 * (p[i] - c[i]);
            }
            adam.step(&mut p, &g);
        }
        for i in 0..3 {
            assert!((p[i] - c[i]).abs() < 1e-2, "{p:?}");
        }
    }
}
