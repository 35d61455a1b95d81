//! A prior's level gains stored in its manifest (`level_gains`), so the level calibration
//! (`priors::calibration`) need not decode latent samples every time the prior is loaded.
//!
//! The gains are what [`level_gains`](crate::engine::priors::calibration::level_gains) computes
//! with the engine for the prior's own `decode` graph; the section names that graph's sha256 and
//! the weights' and is refused when they are not the manifest's, so changed graphs never run with
//! another graph's gains. Settings other than the stored ones (`samples`, `trim`) compute their
//! gains at run time as before.

use serde::{Deserialize, Serialize};

use crate::engine::constants::BINS;

/// The `level_gains` section of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelGainsSection {
    /// Latent samples the gains were drawn from.
    pub samples: usize,
    /// Fraction of each bin's loudest values left out of its level.
    pub trim: f32,
    /// sha256 of the `decode` graph the gains were computed with.
    pub decode_sha256: String,
    /// sha256 of the shared weights file, when the graphs have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// One gain per frequency bin (513), each finite and above 0.
    pub gains: Vec<f32>,
}

/// What is wrong with a section, as (field, expected, found).
pub type SectionProblem = (&'static str, String, String);

impl LevelGainsSection {
    /// `Ok` if the section was made from the graphs with these hashes and its values are usable.
    pub fn check(&self, decode_sha256: &str, weights_sha256: Option<&str>) -> Result<(), SectionProblem> {
        if self.decode_sha256 != decode_sha256 {
            return Err((
                "level_gains.decode_sha256",
                format!("`{decode_sha256}` (graphs.decode's)"),
                format!("`{}`", self.decode_sha256),
            ));
        }
        if self.weights_sha256.as_deref() != weights_sha256 {
            return Err((
                "level_gains.weights_sha256",
                format!("{weights_sha256:?} (graphs.weights')"),
                format!("{:?}", self.weights_sha256),
            ));
        }
        if self.samples == 0 {
            return Err(("level_gains.samples", "at least 1".into(), "0".into()));
        }
        if !(0.0..1.0).contains(&self.trim) {
            return Err(("level_gains.trim", "in [0, 1)".into(), self.trim.to_string()));
        }
        if self.gains.len() != BINS {
            return Err((
                "level_gains.gains",
                format!("{BINS} values"),
                self.gains.len().to_string(),
            ));
        }
        if let Some(bad) = self.gains.iter().find(|g| !(g.is_finite() && **g > 0.0)) {
            return Err((
                "level_gains.gains",
                "finite values above 0".into(),
                bad.to_string(),
            ));
        }
        Ok(())
    }
}
