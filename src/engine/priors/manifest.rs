//! `manifest.json`: what a prior folder claims to be, checked against the engine's constants and
//! the files on disk (see `models/CONTRACT.md`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::constants::{BINS, FRAMES, FRAME_SECONDS, HOP, N_FFT, PRIOR_SAMPLE_RATE, TIME_MULTIPLE};
use crate::engine::limits::{MAX_MANIFEST_BYTES, MAX_PRIOR_BYTES, MAX_PRIOR_FILE_BYTES};
use crate::engine::priors::annealing::AnnealingSection;
use crate::engine::priors::domain::{Domain, SPECTROGRAM_DOMAIN, WAVEFORM_DOMAIN, WAVEFORM_TIME_MULTIPLE};
use crate::engine::priors::graph_file::GraphFile;
use crate::engine::priors::level_gains_section::LevelGainsSection;
use crate::engine::priors::manifest_error::ManifestError;
use crate::engine::priors::nmf_dictionary::NmfSection;
use crate::engine::priors::verified_files::{
    read_capped, verify_annealing, verify_file, verify_graph, ExternalData, ReadBudget, VerifiedFiles,
};
use crate::engine::stem_name::is_valid_stem_name;

/// The manifest's file name inside a prior folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The value of `format` every prior carries.
pub const FORMAT: &str = "stemflow-prior";
/// The manifest layout this engine reads.
pub const FORMAT_VERSION: u32 = 1;
/// The STFT window every prior is trained on.
pub const WINDOW: &str = "hann-periodic";
/// The STFT framing every prior is trained on.
pub const CENTER: &str = "zero";

/// A prior's `manifest.json`. Unknown extra fields are ignored so newer trainers can add
/// descriptive data without breaking older engines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `stemflow-prior`: tells a prior folder from any other JSON.
    pub format: String,
    /// Layout version of this file; the engine reads version 1.
    pub format_version: u32,
    /// Instrument name; equals the folder name and is what users select with `--stems`.
    pub stem: String,
    /// What the graphs model: `spectrogram` (also when absent) or `waveform`
    /// ([`Manifest::domain`]; any other value is refused by [`Manifest::verify`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Signal representation the graphs expect; must equal the engine's constants.
    pub sample_rate: u32,
    /// The time axis must be a multiple of this: STFT frames for a spectrogram prior (the
    /// engine's constant), samples for a waveform prior (a power of two, 1–4096).
    pub time_multiple: usize,
    /// The STFT fields of a spectrogram prior. Required for one (a missing field is a parse
    /// error naming it, as before the domain existed); a waveform prior's are ignored (`None`
    /// after [`Manifest::load`], whatever the file holds).
    #[serde(flatten)]
    pub spectrogram: Option<SpectrogramFields>,
    /// Descriptive: the architecture, shown by `stemflow priors`.
    pub model: ModelInfo,
    /// The ONNX graphs this prior ships.
    pub graphs: Graphs,
    /// Descriptive: how the prior was trained, shown by `stemflow priors`.
    #[serde(default)]
    pub training: TrainingInfo,
    /// The prior's KL-NMF dictionary, when it has one (the separator's NMF expert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nmf: Option<NmfSection>,
    /// The prior's noise-conditioned flow, when it has one (the annealed Langevin separator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annealing: Option<AnnealingSection>,
    /// The level calibration's gains, computed once with the engine and stored, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_gains: Option<LevelGainsSection>,
}

/// The STFT grid and scaling a spectrogram prior's graphs were trained on; each must equal the
/// engine's constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrogramFields {
    /// STFT size.
    pub n_fft: usize,
    /// STFT hop.
    pub hop: usize,
    /// STFT window name.
    pub window: String,
    /// STFT framing convention.
    pub center: String,
    /// Length of one separation frame in seconds.
    pub frame_seconds: f64,
    /// STFT frames per separation frame.
    pub frames: usize,
    /// Frequency bins.
    pub bins: usize,
    /// How the flow's data space maps to magnitudes (applied inside the graphs).
    pub magnitude_scaling: MagnitudeScaling,
}

/// `magnitude_scaling`: recorded so a reader knows what the flow models; the engine never applies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagnitudeScaling {
    /// e.g. `log-standardized`.
    pub kind: String,
    /// The floor F in ln(|X| + F), when the kind has one.
    #[serde(default)]
    pub floor: Option<f64>,
}

/// `model`: descriptive architecture facts; optional so non-Glow priors (tests, future models) load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// e.g. `glow-1d`.
    pub kind: String,
    /// Flow steps K.
    #[serde(default)]
    pub steps: Option<u64>,
    /// Hidden channels of the coupling networks.
    #[serde(default)]
    pub hidden: Option<u64>,
    /// Convolution layers per coupling network.
    #[serde(default)]
    pub coupling_layers: Option<u64>,
    /// Dilations of those layers.
    #[serde(default)]
    pub dilations: Option<Vec<u64>>,
    /// Channel group size of the grouped 1×1 convolutions.
    #[serde(default)]
    pub group_size: Option<u64>,
    /// Trainable parameters.
    #[serde(default)]
    pub parameters: Option<u64>,
}

/// `training`: descriptive provenance; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// What it was trained on.
    #[serde(default)]
    pub data: Option<String>,
    /// Optimizer steps.
    #[serde(default)]
    pub steps: Option<u64>,
    /// Final training loss in bits per dimension.
    #[serde(default)]
    pub train_bits_per_dim: Option<f64>,
    /// Final validation loss in bits per dimension.
    #[serde(default)]
    pub valid_bits_per_dim: Option<f64>,
}

/// `graphs`: the ONNX files by role. `decode` and `grad` are required by the engine for a
/// spectrogram prior, `score` for a waveform prior, whose other graphs are never read (checked in
/// [`Manifest::load_verified`] so the error names the field); `encode` is for warm starts;
/// `forward` and `backward` are the gradient split in two, which the search prefers when listed;
/// `score` is the density's gradient in the magnitude domain, for sampling there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Graphs {
    /// z → s.
    #[serde(default)]
    pub decode: Option<GraphFile>,
    /// (z, g, gamma) → (s, grad_z, logp).
    #[serde(default)]
    pub grad: Option<GraphFile>,
    /// s → (z, logp).
    #[serde(default)]
    pub encode: Option<GraphFile>,
    /// z → (s, logp, saved activations): the decode direction once, keeping what `backward`
    /// needs, so an iteration of the search runs the flow forward once instead of twice
    /// (`decode`, then `grad`'s own forward). Listed together with `backward` or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<GraphFile>,
    /// (z, s, g, gamma, saved activations) → grad_z: `grad`'s reverse pass alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backward: Option<GraphFile>,
    /// s → (score, logp): ∇ₛ log p(s), the encode direction with its reverse pass, so a sampler
    /// can move magnitudes along the prior's score without going through latents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<GraphFile>,
    /// The weights the graphs share (ONNX external data, CONTRACT.md "Shared weights"): stored
    /// once instead of inside each graph, so a prior can have three times the parameters within
    /// the size limit. Absent in priors whose graphs embed their weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<GraphFile>,
}

/// Lower-case hex sha256 of a file's content (tests make manifests with it).
#[cfg(test)]
pub(crate) fn sha256_file(path: &Path) -> Result<String, ManifestError> {
    use std::fs::File;
    use std::io::Read;
    let io_error = |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(io_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(crate::engine::hex_digest::hex(&hasher.finalize()))
}

impl Manifest {
    /// Parses `dir/manifest.json` without checking it against anything.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        Manifest::load_within(dir, MAX_MANIFEST_BYTES)
    }

    /// [`Manifest::load`] with the manifest's size cap given (tests use small ones).
    fn load_within(dir: &Path, cap: u64) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = read_capped(&path, cap, "manifest")?;
        let text = String::from_utf8(bytes).map_err(|e| ManifestError::Parse {
            path: path.clone(),
            message: format!("expected UTF-8 text, found {e}"),
        })?;
        let parse_error = |e: serde_json::Error| ManifestError::Parse {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut manifest: Manifest = serde_json::from_str(&text).map_err(parse_error)?;
        match manifest.domain.as_deref() {
            Some(WAVEFORM_DOMAIN) => manifest.spectrogram = None,
            // A spectrogram prior needs its STFT fields: parsed on their own, serde names the
            // first missing or malformed one (the flattened `Option` above only says "none").
            None | Some(SPECTROGRAM_DOMAIN) if manifest.spectrogram.is_none() => {
                serde_json::from_str::<SpectrogramFields>(&text).map_err(parse_error)?;
            }
            // Any other domain is named by `verify`.
            _ => {}
        }
        Ok(manifest)
    }

    /// What the graphs model. A verified manifest's `domain` is one of the two; an unverified one
    /// with another value reads as a spectrogram prior here ([`Manifest::verify`] refuses it).
    pub fn domain(&self) -> Domain {
        match self.domain.as_deref() {
            Some(WAVEFORM_DOMAIN) => Domain::Waveform,
            _ => Domain::Spectrogram,
        }
    }

    /// Parses `dir/manifest.json` and checks everything the contract requires: format and
    /// version, the `domain`, every signal field against the engine's constants (for a waveform
    /// prior: the sample rate, and `time_multiple` a power of two from 1 to 4096), the stem name
    /// against the folder name, and that the `decode` and `grad` graphs (and `encode`, `forward`,
    /// `backward` and `score`, when listed; `forward` and `backward` only together) exist with the
    /// listed sha256 — for a waveform prior the `score` graph alone, required.
    pub fn load_verified(dir: &Path) -> Result<Manifest, ManifestError> {
        Ok(Manifest::load_with_files(dir)?.0)
    }

    /// [`Manifest::load_verified`], also returning the graphs and weights as they were read and
    /// hashed, so that sessions are made from exactly those bytes (a file replaced on disk after
    /// the check is never what ONNX Runtime runs).
    pub fn load_with_files(dir: &Path) -> Result<(Manifest, VerifiedFiles), ManifestError> {
        let manifest = Manifest::load(dir)?;
        let files = manifest.verify(dir)?;
        Ok((manifest, files))
    }

    /// The checks of [`Manifest::load_verified`] on an already parsed manifest; returns the
    /// verified files' contents.
    pub fn verify(&self, dir: &Path) -> Result<VerifiedFiles, ManifestError> {
        self.verify_within(dir, &ReadBudget::new(MAX_PRIOR_FILE_BYTES, MAX_PRIOR_BYTES))
    }

    /// [`Manifest::verify`] reading the listed files within `budget`.
    fn verify_within(&self, dir: &Path, budget: &ReadBudget) -> Result<VerifiedFiles, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let mismatch = |field: &'static str, expected: String, found: String| ManifestError::FieldMismatch {
            path: path.clone(),
            field,
            expected,
            found,
        };
        let check_str = |field, expected: &str, found: &str| {
            if expected == found {
                Ok(())
            } else {
                Err(mismatch(field, format!("`{expected}`"), format!("`{found}`")))
            }
        };
        let check_num = |field, expected: usize, found: usize| {
            if expected == found {
                Ok(())
            } else {
                Err(mismatch(field, expected.to_string(), found.to_string()))
            }
        };
        check_str("format", FORMAT, &self.format)?;
        check_num(
            "format_version",
            FORMAT_VERSION as usize,
            self.format_version as usize,
        )?;
        let domain = match self.domain.as_deref() {
            None | Some(SPECTROGRAM_DOMAIN) => Domain::Spectrogram,
            Some(WAVEFORM_DOMAIN) => Domain::Waveform,
            Some(other) => {
                return Err(mismatch(
                    "domain",
                    format!("`{SPECTROGRAM_DOMAIN}` (or absent) or `{WAVEFORM_DOMAIN}`"),
                    format!("`{other}`"),
                ))
            }
        };
        check_num(
            "sample_rate",
            PRIOR_SAMPLE_RATE as usize,
            self.sample_rate as usize,
        )?;
        match (domain, &self.spectrogram) {
            (Domain::Spectrogram, Some(stft)) => {
                check_num("n_fft", N_FFT, stft.n_fft)?;
                check_num("hop", HOP, stft.hop)?;
                check_str("window", WINDOW, &stft.window)?;
                check_str("center", CENTER, &stft.center)?;
                if (stft.frame_seconds - FRAME_SECONDS).abs() > 1e-9 {
                    return Err(mismatch(
                        "frame_seconds",
                        FRAME_SECONDS.to_string(),
                        stft.frame_seconds.to_string(),
                    ));
                }
                check_num("frames", FRAMES, stft.frames)?;
                check_num("bins", BINS, stft.bins)?;
                check_num("time_multiple", TIME_MULTIPLE, self.time_multiple)?;
            }
            (Domain::Spectrogram, None) => {
                // `load` refuses this; a manifest built in code may still lack them.
                return Err(ManifestError::MissingField {
                    path: path.clone(),
                    field: "n_fft",
                });
            }
            (Domain::Waveform, _) => {
                let multiple = self.time_multiple;
                if !WAVEFORM_TIME_MULTIPLE.contains(&multiple) || !multiple.is_power_of_two() {
                    return Err(mismatch(
                        "time_multiple",
                        format!(
                            "a power of two from {} to {} (samples)",
                            WAVEFORM_TIME_MULTIPLE.start(),
                            WAVEFORM_TIME_MULTIPLE.end()
                        ),
                        multiple.to_string(),
                    ));
                }
            }
        }

        if !is_valid_stem_name(&self.stem) {
            return Err(mismatch(
                "stem",
                "a name matching [a-z0-9][a-z0-9_-]*".into(),
                format!("`{}`", self.stem),
            ));
        }
        let folder = folder_name(dir);
        if folder.as_deref() != Some(self.stem.as_str()) {
            let folder = folder.unwrap_or_default();
            return Err(mismatch(
                "stem",
                format!("`{folder}` (the folder name)"),
                format!("`{}`", self.stem),
            ));
        }

        if let (Some(section), Some(decode)) = (&self.level_gains, &self.graphs.decode) {
            let weights = self.graphs.weights.as_ref().map(|w| w.sha256.as_str());
            section
                .check(&decode.sha256, weights)
                .map_err(|(field, expected, found)| mismatch(field, expected, found))?;
        }
        let weights = match &self.graphs.weights {
            Some(weights) => {
                let (_, bytes) = verify_file(dir, &path, "graphs.weights", weights, budget)?;
                Some(ExternalData {
                    location: weights.file.clone(),
                    bytes: bytes.into(),
                })
            }
            None => None,
        };
        let listed = self.graphs.weights.as_ref().map(|w| w.file.as_str());
        let required = |field, graph: &Option<GraphFile>| {
            let graph = graph.as_ref().ok_or(ManifestError::MissingField {
                path: path.clone(),
                field,
            })?;
            verify_graph(dir, &path, field, graph, listed, budget)
        };
        let optional = |field, graph: &Option<GraphFile>| {
            graph
                .as_ref()
                .map(|graph| verify_graph(dir, &path, field, graph, listed, budget))
                .transpose()
        };
        // A waveform prior runs its `score` graph alone; the flow's graphs, if listed, are not
        // used and so not read.
        let spectrogram = domain == Domain::Spectrogram;
        let files = VerifiedFiles {
            domain,
            decode: spectrogram
                .then(|| required("graphs.decode", &self.graphs.decode))
                .transpose()?,
            grad: spectrogram
                .then(|| required("graphs.grad", &self.graphs.grad))
                .transpose()?,
            encode: spectrogram
                .then(|| optional("graphs.encode", &self.graphs.encode))
                .transpose()?
                .flatten(),
            forward: spectrogram
                .then(|| optional("graphs.forward", &self.graphs.forward))
                .transpose()?
                .flatten(),
            backward: spectrogram
                .then(|| optional("graphs.backward", &self.graphs.backward))
                .transpose()?
                .flatten(),
            score: if spectrogram {
                optional("graphs.score", &self.graphs.score)?
            } else {
                Some(required("graphs.score", &self.graphs.score)?)
            },
            weights,
            nmf: self
                .nmf
                .as_ref()
                .map(|nmf| {
                    let file = GraphFile {
                        file: nmf.file.clone(),
                        sha256: nmf.sha256.clone(),
                    };
                    verify_file(dir, &path, "nmf.file", &file, budget).map(|(_, bytes)| bytes)
                })
                .transpose()?,
            annealing: self
                .annealing
                .as_ref()
                .map(|section| verify_annealing(dir, &path, section, domain, budget))
                .transpose()?,
        };
        match (&files.forward, &files.backward) {
            (Some(_), None) => Err(mismatch(
                "graphs.backward",
                "a `backward` graph, since `forward` is listed".into(),
                "none".into(),
            )),
            (None, Some(_)) => Err(mismatch(
                "graphs.forward",
                "a `forward` graph, since `backward` is listed".into(),
                "none".into(),
            )),
            _ => Ok(files),
        }
    }

    /// The path of a graph listed in this manifest, inside `dir`.
    pub fn graph_path(dir: &Path, graph: &GraphFile) -> PathBuf {
        dir.join(&graph.file)
    }
}

/// The last component of `dir` (resolving `.` and relative paths).
fn folder_name(dir: &Path) -> Option<String> {
    let resolved = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    resolved.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Test support: a copy of the prior folder `source` (same folder name) in a new temporary
/// folder, its manifest edited by `edit`. Returns the temporary root (deleted when dropped) and
/// the copy.
#[cfg(test)]
pub(crate) fn edited_prior_copy(
    source: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(source.file_name().unwrap());
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut json);
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    (root, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn toy_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy_prior/toy")
    }

    /// A copy of the toy prior in a temp dir, folder named `toy`, with `edit` applied to its JSON.
    fn edited_copy(edit: impl FnOnce(&mut serde_json::Value)) -> (tempfile::TempDir, PathBuf) {
        edited_prior_copy(&toy_dir(), edit)
    }

    fn field_of(result: Result<Manifest, ManifestError>) -> &'static str {
        match result {
            Err(ManifestError::FieldMismatch { field, .. } | ManifestError::MissingField { field, .. }) => {
                field
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn the_toy_manifest_passes() {
        let manifest = Manifest::load_verified(&toy_dir()).unwrap();
        assert_eq!(manifest.stem, "toy");
        assert_eq!(manifest.spectrogram.as_ref().unwrap().frames, FRAMES);
        assert!(manifest.graphs.encode.is_some());
        assert_eq!(manifest.model.kind, "toy-elementwise");
    }

    #[test]
    fn unknown_fields_are_allowed() {
        let (_root, dir) = edited_copy(|j| j["something_new"] = serde_json::json!({"x": 1}));
        Manifest::load_verified(&dir).unwrap();
    }

    #[test]
    fn each_broken_field_is_named() {
        use serde_json::json;
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("format", json!("something-else")),
            ("format_version", json!(2)),
            ("sample_rate", json!(44100)),
            ("n_fft", json!(2048)),
            ("hop", json!(512)),
            ("window", json!("hann")),
            ("center", json!("reflect")),
            ("frame_seconds", json!(4.0)),
            ("frames", json!(431)),
            ("bins", json!(1025)),
            ("time_multiple", json!(4)),
            ("stem", json!("Bass")),
            ("stem", json!("bass")),
        ];
        for (field, value) in cases {
            let (_root, dir) = edited_copy(|j| j[field] = value.clone());
            assert_eq!(
                field_of(Manifest::load_verified(&dir)),
                field,
                "{field} = {value}"
            );
        }
        for graph in ["decode", "grad"] {
            let (_root, dir) = edited_copy(|j| {
                j["graphs"].as_object_mut().unwrap().remove(graph);
            });
            assert_eq!(field_of(Manifest::load_verified(&dir)), format!("graphs.{graph}"));
        }
        let (_root, dir) = edited_copy(|j| j["graphs"]["decode"]["file"] = json!("../toy_b/decode.onnx"));
        assert_eq!(field_of(Manifest::load_verified(&dir)), "graphs.decode");
    }

    #[test]
    fn a_missing_required_field_is_a_parse_error_naming_it() {
        let (_root, dir) = edited_copy(|j| {
            j.as_object_mut().unwrap().remove("hop");
        });
        match Manifest::load_verified(&dir) {
            Err(ManifestError::Parse { path, message }) => {
                assert!(path.ends_with("toy/manifest.json"));
                assert!(message.contains("hop"), "{message}");
            }
            other => panic!("expected Parse, got {other:?}"),
        }
    }

    #[test]
    fn a_modified_graph_byte_is_a_hash_mismatch() {
        let (_root, dir) = edited_copy(|_| {});
        let graph = dir.join("grad.onnx");
        let mut bytes = fs::read(&graph).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&graph, bytes).unwrap();
        match Manifest::load_verified(&dir) {
            Err(ManifestError::HashMismatch {
                file,
                expected,
                found,
            }) => {
                assert_eq!(file, graph);
                assert_ne!(expected, found);
                assert_eq!(found.len(), 64);
            }
            other => panic!("expected HashMismatch, got {other:?}"),
        }
    }

    /// A minimal ONNX model (protobuf) whose one initializer reads from `location`.
    fn model_reading(location: &str) -> Vec<u8> {
        let field = |number: u8, payload: &[u8]| {
            let mut out = vec![number << 3 | 2, payload.len() as u8];
            out.extend_from_slice(payload);
            out
        };
        let mut entry = field(1, b"location");
        entry.extend(field(2, location.as_bytes()));
        let tensor = field(13, &entry);
        field(7, &field(5, &tensor))
    }

    #[test]
    fn a_graph_may_read_external_data_only_from_the_listed_weight_file() {
        let write = |dir: &Path, bytes: &[u8]| -> String {
            fs::write(dir.join("decode.onnx"), bytes).unwrap();
            sha256_file(&dir.join("decode.onnx")).unwrap()
        };
        let (_root, dir) = edited_copy(|_| {});
        fs::write(dir.join("weights.bin"), b"w").unwrap();
        let weights_sha = sha256_file(&dir.join("weights.bin")).unwrap();
        let cases = [
            ("weights.bin", true, true),   // listed and hashed: accepted
            ("unlisted.bin", true, false), // another file in the folder: refused
            ("weights.bin", false, false), // nothing listed: refused
        ];
        for (location, list_weights, ok) in cases {
            let sha = write(&dir, &model_reading(location));
            let text = fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            json["graphs"]["decode"]["sha256"] = sha.into();
            json["graphs"]["weights"] = if list_weights {
                serde_json::json!({"file": "weights.bin", "sha256": weights_sha})
            } else {
                serde_json::Value::Null
            };
            if !list_weights {
                json["graphs"].as_object_mut().unwrap().remove("weights");
            }
            fs::write(dir.join(MANIFEST_FILE), json.to_string()).unwrap();
            match Manifest::load_verified(&dir) {
                Ok(_) => assert!(ok, "{location} accepted"),
                Err(ManifestError::UnlistedExternalData { location: found, .. }) => {
                    assert!(!ok, "{location} refused");
                    assert_eq!(found, location);
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_listed_weight_file_is_verified_like_a_graph() {
        let weights = b"shared weights: any bytes the graphs reference";
        let sha = {
            let root = tempfile::tempdir().unwrap();
            let path = root.path().join("w.bin");
            fs::write(&path, weights).unwrap();
            sha256_file(&path).unwrap()
        };
        let (_root, dir) = edited_copy(|j| {
            j["graphs"]["weights"] = serde_json::json!({"file": "weights.bin", "sha256": sha});
        });
        // Listed but absent: named.
        match Manifest::load_verified(&dir) {
            Err(ManifestError::MissingFile { field, .. }) => assert_eq!(field, "graphs.weights"),
            other => panic!("expected MissingFile, got {other:?}"),
        }
        fs::write(dir.join("weights.bin"), weights).unwrap();
        let manifest = Manifest::load_verified(&dir).unwrap();
        assert_eq!(manifest.graphs.weights.unwrap().file, "weights.bin");
        // One changed byte: refused.
        let mut bytes = weights.to_vec();
        bytes[3] ^= 1;
        fs::write(dir.join("weights.bin"), bytes).unwrap();
        assert!(matches!(
            Manifest::load_verified(&dir),
            Err(ManifestError::HashMismatch { .. })
        ));
    }

    /// An `nmf` section's file is read and hashed like a graph: absent, changed or listed with a
    /// wrong sha256, the prior is refused naming `nmf.file`; intact, its bytes are verified files.
    #[test]
    fn a_listed_nmf_dictionary_is_verified_like_a_graph() {
        let atoms: Vec<u8> = (0..9 * 2).flat_map(|i| (i as f32 + 1.0).to_le_bytes()).collect();
        let sha = {
            let root = tempfile::tempdir().unwrap();
            let path = root.path().join("nmf.bin");
            fs::write(&path, &atoms).unwrap();
            sha256_file(&path).unwrap()
        };
        let (_root, dir) = edited_copy(|j| {
            j["nmf"] = serde_json::json!({"file": "nmf.bin", "sha256": sha, "n_fft": 16, "hop": 4,
                "window": "hann-periodic", "center": "zero", "atoms": 2, "bins": 9});
        });
        match Manifest::load_verified(&dir) {
            Err(ManifestError::MissingFile { field, .. }) => assert_eq!(field, "nmf.file"),
            other => panic!("expected MissingFile, got {other:?}"),
        }
        fs::write(dir.join("nmf.bin"), &atoms).unwrap();
        let (manifest, files) = Manifest::load_with_files(&dir).unwrap();
        assert_eq!(manifest.nmf.unwrap().atoms, 2);
        assert_eq!(files.nmf.as_deref(), Some(atoms.as_slice()));
        let mut changed = atoms.clone();
        changed[0] ^= 1;
        fs::write(dir.join("nmf.bin"), changed).unwrap();
        assert!(matches!(
            Manifest::load_verified(&dir),
            Err(ManifestError::HashMismatch { .. })
        ));
    }

    /// An optional `score` graph, when listed, is checked like the other graphs: it must exist,
    /// match its sha256 and read no unlisted external data; it is then among the verified files.
    #[test]
    fn a_listed_score_graph_is_verified_like_the_others() {
        let set_score = |dir: &Path, sha: String| {
            let text = fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            json["graphs"]["score"] = serde_json::json!({"file": "score.onnx", "sha256": sha});
            fs::write(dir.join(MANIFEST_FILE), json.to_string()).unwrap();
        };
        let (_root, dir) = edited_copy(|_| {});
        assert!(Manifest::load_with_files(&dir).unwrap().1.score.is_none());
        set_score(&dir, "00".into());
        match Manifest::load_verified(&dir) {
            Err(ManifestError::MissingFile { field, .. }) => assert_eq!(field, "graphs.score"),
            other => panic!("expected MissingFile, got {other:?}"),
        }
        fs::write(dir.join("score.onnx"), model_reading("unlisted.bin")).unwrap();
        assert!(matches!(
            Manifest::load_verified(&dir),
            Err(ManifestError::HashMismatch { .. })
        ));
        set_score(&dir, sha256_file(&dir.join("score.onnx")).unwrap());
        match Manifest::load_verified(&dir) {
            Err(ManifestError::UnlistedExternalData { file, location, .. }) => {
                assert_eq!(
                    (file, location.as_str()),
                    (dir.join("score.onnx"), "unlisted.bin")
                )
            }
            other => panic!("expected UnlistedExternalData, got {other:?}"),
        }
        fs::copy(dir.join("encode.onnx"), dir.join("score.onnx")).unwrap();
        set_score(&dir, sha256_file(&dir.join("score.onnx")).unwrap());
        let (manifest, files) = Manifest::load_with_files(&dir).unwrap();
        assert_eq!(manifest.graphs.score.unwrap().file, "score.onnx");
        assert_eq!(files.score.unwrap().path, dir.join("score.onnx"));
    }

    #[test]
    fn a_missing_graph_file_is_reported() {
        let (_root, dir) = edited_copy(|_| {});
        fs::remove_file(dir.join("decode.onnx")).unwrap();
        match Manifest::load_verified(&dir) {
            Err(ManifestError::MissingFile { field, file }) => {
                assert_eq!(field, "graphs.decode");
                assert_eq!(file, dir.join("decode.onnx"));
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }
    }

    #[test]
    fn invalid_json_names_the_file() {
        let (_root, dir) = edited_copy(|_| {});
        fs::write(dir.join(MANIFEST_FILE), "{ \"format\": ").unwrap();
        match Manifest::load_verified(&dir) {
            Err(e @ ManifestError::Parse { .. }) => assert!(e.to_string().contains("manifest.json")),
            other => panic!("expected Parse, got {other:?}"),
        }
        fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
        assert!(matches!(
            Manifest::load_verified(&dir),
            Err(ManifestError::Io { .. })
        ));
    }

    /// `forward` and `backward` are the gradient cut in two: listing one without the other is
    /// refused, naming the missing one.
    #[test]
    fn forward_and_backward_come_together() {
        let (_root, dir) = edited_copy(|j| {
            let decode = j["graphs"]["decode"].clone();
            j["graphs"]["forward"] = decode;
        });
        assert_eq!(field_of(Manifest::load_verified(&dir)), "graphs.backward");
        let (_root, dir) = edited_copy(|j| {
            let grad = j["graphs"]["grad"].clone();
            j["graphs"]["backward"] = grad;
        });
        assert_eq!(field_of(Manifest::load_verified(&dir)), "graphs.forward");
        let (_root, dir) = edited_copy(|j| {
            j["graphs"]["forward"] = serde_json::json!({"file": "forward.onnx", "sha256": "00"});
            let grad = j["graphs"]["grad"].clone();
            j["graphs"]["backward"] = grad;
        });
        assert!(matches!(
            Manifest::load_verified(&dir),
            Err(ManifestError::MissingFile {
                field: "graphs.forward",
                ..
            })
        ));
    }

    /// `path` made `size` bytes long without writing them (a sparse file).
    fn grow_sparse(path: &Path, size: u64) {
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(size)
            .unwrap();
    }

    /// A manifest past its cap is refused by its size on disk, naming the file, its size and the
    /// cap: it is not read or parsed.
    #[test]
    fn a_manifest_past_its_cap_is_refused_by_its_size() {
        let (_root, dir) = edited_copy(|_| {});
        let manifest = dir.join(MANIFEST_FILE);
        grow_sparse(&manifest, MAX_MANIFEST_BYTES + 1);
        let err = Manifest::load_verified(&dir).unwrap_err();
        assert!(
            matches!(err, ManifestError::TooLarge { what: "manifest", .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&manifest.display().to_string())
                && text.contains(&format!("{} bytes", MAX_MANIFEST_BYTES + 1))
                && text.contains(&format!("{MAX_MANIFEST_BYTES} bytes")),
            "{text}"
        );
    }

    /// A listed file past its cap is refused by its size before it is read or hashed.
    #[test]
    fn a_listed_file_past_its_cap_is_refused_by_its_size() {
        let (_root, dir) = edited_copy(|_| {});
        let graph = dir.join("decode.onnx");
        let size = MAX_PRIOR_FILE_BYTES + 1;
        grow_sparse(&graph, size);
        let err = Manifest::load_verified(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                ManifestError::TooLarge {
                    what: "listed file",
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&graph.display().to_string())
                && text.contains(&format!("{size} bytes"))
                && text.contains(&format!("{MAX_PRIOR_FILE_BYTES} bytes")),
            "{text}"
        );
    }

    /// Asserts that `result` is [`ManifestError::TooLarge`] with these fields.
    fn assert_too_large<T: std::fmt::Debug>(
        result: Result<T, ManifestError>,
        expected: (PathBuf, u64, u64, &'static str),
    ) {
        match result {
            Err(ManifestError::TooLarge {
                file,
                size,
                cap,
                what,
            }) => assert_eq!((file, size, cap, what), expected),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    /// The caps are typed errors: the manifest's, one listed file's, and all listed files'
    /// together, each naming the file, its size and the cap (small caps on the toy prior).
    #[test]
    fn each_cap_is_a_typed_error_naming_file_size_and_cap() {
        let (_root, dir) = edited_copy(|_| {});
        let manifest = dir.join(MANIFEST_FILE);
        let manifest_size = fs::metadata(&manifest).unwrap().len();
        assert_too_large(
            Manifest::load_within(&dir, manifest_size - 1),
            (manifest.clone(), manifest_size, manifest_size - 1, "manifest"),
        );
        let parsed = Manifest::load_within(&dir, manifest_size).unwrap();
        let size = |name: &str| fs::metadata(dir.join(name)).unwrap().len();
        let (decode, grad, encode) = (size("decode.onnx"), size("grad.onnx"), size("encode.onnx"));
        assert_too_large(
            parsed.verify_within(&dir, &ReadBudget::new(decode - 1, u64::MAX)),
            (dir.join("decode.onnx"), decode, decode - 1, "listed file"),
        );
        let file_cap = decode.max(grad).max(encode);
        match parsed.verify_within(&dir, &ReadBudget::new(file_cap, decode + grad)) {
            Err(e @ ManifestError::PriorTooLarge { .. }) => {
                let ManifestError::PriorTooLarge {
                    ref file,
                    size,
                    total,
                    cap,
                    ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(
                    (file, size, total, cap),
                    (
                        &dir.join("encode.onnx"),
                        encode,
                        decode + grad + encode,
                        decode + grad
                    )
                );
                assert!(e.to_string().contains("encode.onnx"), "{e}");
            }
            other => panic!("expected PriorTooLarge, got {other:?}"),
        }
        parsed
            .verify_within(&dir, &ReadBudget::new(file_cap, decode + grad + encode))
            .unwrap();
    }

    /// A manifest that is a link to an endless device is refused unread, never read until memory
    /// runs out.
    #[cfg(unix)]
    #[test]
    fn a_manifest_that_is_a_device_is_refused_unread() {
        let (_root, dir) = edited_copy(|_| {});
        let manifest = dir.join(MANIFEST_FILE);
        fs::remove_file(&manifest).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &manifest).unwrap();
        match Manifest::load_verified(&dir) {
            Err(e @ ManifestError::Io { .. }) => assert!(e.to_string().contains("regular file"), "{e}"),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    /// A byte edit of a file: overwrite, delete a run, or cut the end.
    #[derive(Debug, Clone)]
    enum ByteEdit {
        Set(usize, u8),
        Delete(usize, usize),
        Truncate(usize),
    }

    fn byte_edits() -> impl proptest::strategy::Strategy<Value = Vec<ByteEdit>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
                (any::<usize>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
                any::<usize>().prop_map(ByteEdit::Truncate),
            ],
            1..6,
        )
    }

    /// `bytes` with `edits` applied (positions taken modulo the length).
    fn apply_edits(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
        for edit in edits {
            if bytes.is_empty() {
                break;
            }
            match *edit {
                ByteEdit::Set(i, b) => {
                    let n = bytes.len();
                    bytes[i % n] = b;
                }
                ByteEdit::Delete(i, k) => {
                    let start = i % bytes.len();
                    let end = (start + k).min(bytes.len());
                    bytes.drain(start..end);
                }
                ByteEdit::Truncate(i) => {
                    let n = bytes.len();
                    bytes.truncate(i % n);
                }
            }
        }
        bytes
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// A damaged manifest is an error (or, if the damage left it valid, a manifest): never a
        /// panic.
        #[test]
        fn a_damaged_manifest_is_an_error_never_a_panic(edits in byte_edits()) {
            let (_root, dir) = edited_copy(|_| {});
            let bytes = fs::read(dir.join("manifest.json")).unwrap();
            fs::write(dir.join("manifest.json"), apply_edits(bytes, &edits)).unwrap();
            let _ = Manifest::load_verified(&dir);
        }

        /// So is a damaged graph the manifest hashes and walks.
        #[test]
        fn a_damaged_graph_is_an_error_never_a_panic(edits in byte_edits()) {
            let (_root, dir) = edited_copy(|_| {});
            let bytes = fs::read(dir.join("decode.onnx")).unwrap();
            let damaged = apply_edits(bytes, &edits);
            let _ = crate::engine::priors::onnx_checks::external_data_locations(&damaged);
            fs::write(dir.join("decode.onnx"), damaged).unwrap();
            let _ = Manifest::load_verified(&dir);
        }
    }
}
