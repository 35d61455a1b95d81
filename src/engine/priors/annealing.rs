//! A prior's optional noise-conditioned flow (CONTRACT.md, "Noise-conditioned score"): the same
//! flow with a noise level σ as an extra input of its couplings, fine-tuned on data with Gaussian
//! noise of that level added, whose score at large σ is informative far from clean data. The
//! annealed Langevin separator walks down its ladder of levels.

use super::domain::Domain;
use super::graph_file::GraphFile;
use serde::{Deserialize, Serialize};

/// The domain a spectrogram prior's noise is defined in: the flow's standardised log-magnitudes.
pub const ANNEALING_DOMAIN: &str = "standardised-log-magnitude";
/// The domain a waveform prior's noise is defined in: waveform amplitude (σ is the standard
/// deviation of the Gaussian noise added to every sample).
pub const WAVEFORM_ANNEALING_DOMAIN: &str = "waveform";
/// Levels a ladder may hold.
pub const LADDER_LEVELS: std::ops::RangeInclusive<usize> = 1..=64;

/// The manifest's `annealing` section: the noise-conditioned score graph, its weights and the
/// ladder of noise levels it was fine-tuned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnealingSection {
    /// The `noisy_score` graph: (s, sigma) → (∇ₛ log p_σ(s), log p_σ(s)).
    pub score: GraphFile,
    /// The external-data file the graph's weights are in (not the prior's `graphs.weights`).
    /// Required for a spectrogram prior; a waveform prior's graph may embed its weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<GraphFile>,
    /// The noise levels of the fine-tuning, descending, in standardised units (waveform
    /// amplitude for a waveform prior).
    pub sigmas: Vec<f64>,
    /// Where σ is measured: [`ANNEALING_DOMAIN`], or [`WAVEFORM_ANNEALING_DOMAIN`] for a
    /// waveform prior.
    pub domain: String,
    /// Descriptive: parameter count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<u64>,
    /// Descriptive: how the flow was fine-tuned.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub training: serde_json::Value,
}

/// Why an `annealing` section cannot be used: the field and what was expected and found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("manifest field `{field}`: expected {expected}, found {found}")]
pub struct AnnealingError {
    /// The field (`annealing.…`).
    pub field: &'static str,
    /// What the engine needs.
    pub expected: String,
    /// What the manifest says.
    pub found: String,
}

impl AnnealingSection {
    /// The ladder as the searches use it, after checking the domain (the one of a prior of
    /// `prior_domain`) and that the levels are finite, positive, strictly descending and between
    /// 1 and 64 of them.
    pub fn ladder(&self, prior_domain: Domain) -> Result<Vec<f32>, AnnealingError> {
        let expected = match prior_domain {
            Domain::Spectrogram => ANNEALING_DOMAIN,
            Domain::Waveform => WAVEFORM_ANNEALING_DOMAIN,
        };
        if self.domain != expected {
            return Err(AnnealingError {
                field: "annealing.domain",
                expected: format!("`{expected}`"),
                found: format!("`{}`", self.domain),
            });
        }
        let descending = self.sigmas.windows(2).all(|w| w[0] > w[1]);
        let positive = self.sigmas.iter().all(|s| s.is_finite() && *s > 0.0 && *s <= 1e3);
        if !LADDER_LEVELS.contains(&self.sigmas.len()) || !descending || !positive {
            return Err(AnnealingError {
                field: "annealing.sigmas",
                expected: format!(
                    "{}–{} finite noise levels in (0, 1000], strictly descending",
                    LADDER_LEVELS.start(),
                    LADDER_LEVELS.end()
                ),
                found: format!("{:?}", self.sigmas),
            });
        }
        Ok(self.sigmas.iter().map(|&s| s as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(sigmas: Vec<f64>, domain: &str) -> AnnealingSection {
        let file = |name: &str| GraphFile {
            file: name.into(),
            sha256: "0".repeat(64),
        };
        AnnealingSection {
            score: file("noisy_score.onnx"),
            weights: Some(file("noisy_weights.bin")),
            sigmas,
            domain: domain.into(),
            parameters: None,
            training: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_descending_ladder_passes() {
        let ladder = section(vec![1.0, 0.1, 0.01], ANNEALING_DOMAIN)
            .ladder(Domain::Spectrogram)
            .unwrap();
        assert_eq!(ladder, vec![1.0, 0.1, 0.01]);
    }

    #[test]
    fn bad_ladders_and_domains_are_named() {
        for sigmas in [
            vec![],
            vec![0.1, 1.0],
            vec![1.0, 1.0],
            vec![1.0, 0.0],
            vec![1.0, -0.1],
            vec![f64::NAN],
            vec![f64::INFINITY, 1.0],
            vec![0.5; 65],
        ] {
            let err = section(sigmas.clone(), ANNEALING_DOMAIN)
                .ladder(Domain::Spectrogram)
                .unwrap_err();
            assert_eq!(err.field, "annealing.sigmas", "{sigmas:?}");
        }
        let err = section(vec![1.0], "magnitude")
            .ladder(Domain::Spectrogram)
            .unwrap_err();
        assert_eq!(err.field, "annealing.domain");
        assert!(err.to_string().contains("`magnitude`"));
        // Each prior domain has its own noise domain.
        let waveform = section(vec![0.3, 0.1], WAVEFORM_ANNEALING_DOMAIN);
        assert_eq!(waveform.ladder(Domain::Waveform).unwrap(), vec![0.3, 0.1]);
        let err = waveform.ladder(Domain::Spectrogram).unwrap_err();
        assert_eq!(err.field, "annealing.domain");
        let err = section(vec![1.0], ANNEALING_DOMAIN)
            .ladder(Domain::Waveform)
            .unwrap_err();
        assert!(err.to_string().contains("`waveform`"), "{err}");
    }
}
