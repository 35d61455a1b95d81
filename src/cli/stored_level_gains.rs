//! Storing a prior's level gains in its manifest (`stemflow priors --store-level-gains`, and
//! `train-prior` before it installs a prior), so every later load reads them instead of decoding
//! latent samples (`engine::priors::level_gains_section`).

use super::json_file::write_json_atomically;
use super::train_error::TrainError;
use crate::engine::priors::calibration::level_gains_section;
use crate::engine::priors::domain::Domain;
use crate::engine::priors::manifest::MANIFEST_FILE;
use crate::engine::priors::prior::Prior;
use crate::engine::priors::runtime::{Runtime, SessionOptions};
use crate::engine::search::settings::{CALIBRATION_SAMPLES, DEFAULT_CALIBRATION_TRIM};
use std::path::Path;

/// The manifest key of the section.
const SECTION: &str = "level_gains";

/// Computes the level gains of the prior in `dir` for the default calibration (its samples and
/// trim) with the engine and writes them into `dir/manifest.json` as its `level_gains` section,
/// keeping every other field of the file as it is. A spectrogram prior only; a waveform prior is
/// left unchanged (it has no calibration); returns whether the manifest was written.
pub fn store_level_gains(
    runtime: &Runtime,
    dir: &Path,
    options: &SessionOptions,
) -> Result<bool, TrainError> {
    let mut prior = Prior::load(runtime, dir, options).map_err(TrainError::Invalid)?;
    if prior.domain() != Domain::Spectrogram {
        return Ok(false);
    }
    let section = level_gains_section(&mut prior, CALIBRATION_SAMPLES, DEFAULT_CALIBRATION_TRIM)
        .map_err(TrainError::Invalid)?;
    let path = dir.join(MANIFEST_FILE);
    let io_error = |action: &'static str| {
        let path = path.clone();
        move |source: std::io::Error| TrainError::Io { action, path, source }
    };
    let text = std::fs::read_to_string(&path).map_err(io_error("read"))?;
    let mut manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| io_error("parse")(std::io::Error::other(e)))?;
    let fields = manifest
        .as_object_mut()
        .ok_or_else(|| io_error("parse")(std::io::Error::other("not a JSON object")))?;
    // Through text, so each f32 is written in its shortest form (0.1, not 0.10000000149011612).
    let value = serde_json::to_string(&section)
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text))
        .map_err(|e| io_error("write")(std::io::Error::other(e)))?;
    fields.insert(SECTION.to_string(), value);
    write_json_atomically(&path, &manifest).map_err(io_error("write"))?;
    Ok(true)
}
