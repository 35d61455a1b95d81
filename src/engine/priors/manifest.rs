//! `manifest.json`: what a prior folder claims to be, checked against the engine's constants and
//! the files on disk (see `models/CONTRACT.md`).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::constants::{BINS, FRAMES, FRAME_SECONDS, HOP, N_FFT, PRIOR_SAMPLE_RATE, TIME_MULTIPLE};
use crate::engine::limits::{MAX_MANIFEST_BYTES, MAX_PRIOR_BYTES, MAX_PRIOR_FILE_BYTES};
use crate::engine::priors::annealing::AnnealingSection;
use crate::engine::priors::nmf_dictionary::NmfSection;
use crate::engine::priors::onnx_checks::external_data_locations;

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

/// Everything that can be wrong with a prior's manifest or the files it lists.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file could not be read.
    #[error("could not read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `manifest.json` is not valid JSON or lacks a required field.
    #[error("{} is not a valid prior manifest: {message}", .path.display())]
    Parse {
        /// The manifest file.
        path: PathBuf,
        /// serde's message (names the field and line).
        message: String,
    },
    /// A manifest field has a value the engine cannot use.
    #[error("{}: field `{field}` must be {expected}, found {found}", .path.display())]
    FieldMismatch {
        /// The manifest file.
        path: PathBuf,
        /// The field, dotted for nested ones (`graphs.decode`).
        field: &'static str,
        /// What the engine needs.
        expected: String,
        /// What the manifest says.
        found: String,
    },
    /// A field the engine needs is absent.
    #[error("{}: required field `{field}` is missing", .path.display())]
    MissingField {
        /// The manifest file.
        path: PathBuf,
        /// The field.
        field: &'static str,
    },
    /// A graph named by the manifest does not exist.
    #[error("`{field}` names {}, which does not exist", .file.display())]
    MissingFile {
        /// The manifest field naming it.
        field: &'static str,
        /// The missing file.
        file: PathBuf,
    },
    /// A graph's content differs from the sha256 in the manifest.
    #[error("{} has sha256 {found}, but the manifest expects {expected}", .file.display())]
    HashMismatch {
        /// The graph file.
        file: PathBuf,
        /// sha256 from the manifest.
        expected: String,
        /// sha256 of the file on disk.
        found: String,
    },
    /// A graph file is not a readable ONNX model (checked before a session is made).
    #[error("{}: {source}", .file.display())]
    NotOnnx {
        /// The graph file.
        file: PathBuf,
        /// Where reading stopped.
        source: crate::engine::priors::onnx_checks::OnnxReadError,
    },
    /// A manifest or a file it lists is larger than the engine reads for a prior
    /// ([`MAX_MANIFEST_BYTES`], [`MAX_PRIOR_FILE_BYTES`]); refused by its size before it is read.
    #[error("{} has {size} bytes, more than the {cap} bytes a prior's {what} may have", .file.display())]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// Its size on disk (or, for a file that grew while it was read, the bytes read: cap + 1).
        size: u64,
        /// The cap it exceeds.
        cap: u64,
        /// "manifest" or "listed file".
        what: &'static str,
    },
    /// The files a manifest lists come to more than one prior may read ([`MAX_PRIOR_BYTES`]).
    #[error(
        "{}: with {} ({size} bytes) the prior's files come to {total} bytes, more than the {cap} bytes a prior may have in all",
        .manifest.display(), .file.display()
    )]
    PriorTooLarge {
        /// The manifest.
        manifest: PathBuf,
        /// The file that took the total past the cap.
        file: PathBuf,
        /// Its size.
        size: u64,
        /// The listed files' bytes up to and including it.
        total: u64,
        /// [`MAX_PRIOR_BYTES`].
        cap: u64,
    },
    /// A graph reads tensor data from a file the manifest does not list and hash.
    #[error(
        "{} reads tensor data from `{location}`, but the manifest lists {listed} for the graphs' weights",
        .file.display()
    )]
    UnlistedExternalData {
        /// The graph file.
        file: PathBuf,
        /// The external-data location the graph names.
        location: String,
        /// What the manifest's `graphs.weights` lists.
        listed: String,
    },
}

/// What a prior's graphs model (the manifest's `domain`): magnitude spectrograms on the engine's
/// STFT grid (the default, and every prior before the field existed) or raw mono waveforms at
/// 22.05 kHz (time-domain priors, which ship a `score` graph only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Domain {
    /// `spectrogram` (or no `domain` field): the Glow priors of CONTRACT.md.
    #[default]
    Spectrogram,
    /// `waveform`: a density over samples in [-1, 1].
    Waveform,
}

/// The `domain` value of a waveform prior.
pub const WAVEFORM_DOMAIN: &str = "waveform";
/// The `domain` value of a spectrogram prior (also what an absent field means).
pub const SPECTROGRAM_DOMAIN: &str = "spectrogram";
/// The `time_multiple` values a waveform prior may declare: powers of two in this range.
pub const WAVEFORM_TIME_MULTIPLE: std::ops::RangeInclusive<usize> = 1..=4096;

impl Domain {
    /// The manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Spectrogram => SPECTROGRAM_DOMAIN,
            Domain::Waveform => WAVEFORM_DOMAIN,
        }
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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

/// A prior's files as [`Manifest::verify`] read and hashed them: what sessions are made from.
#[derive(Debug)]
pub struct VerifiedFiles {
    /// What the graphs model (the manifest's checked `domain`).
    pub domain: Domain,
    /// `graphs.decode`: always there for a spectrogram prior, never read for a waveform prior.
    pub decode: Option<VerifiedGraph>,
    /// `graphs.grad`: always there for a spectrogram prior, never read for a waveform prior.
    pub grad: Option<VerifiedGraph>,
    /// `graphs.encode`, if listed (spectrogram priors).
    pub encode: Option<VerifiedGraph>,
    /// `graphs.forward`, if listed (then `backward` is too).
    pub forward: Option<VerifiedGraph>,
    /// `graphs.backward`, if listed.
    pub backward: Option<VerifiedGraph>,
    /// `graphs.score`, if listed (always, for a waveform prior: it is the prior).
    pub score: Option<VerifiedGraph>,
    /// `graphs.weights`, the external data the graphs refer to, if listed.
    pub weights: Option<ExternalData>,
    /// `nmf.file`, the NMF dictionary's bytes, if the manifest has an `nmf` section.
    pub nmf: Option<Vec<u8>>,
    /// The noise-conditioned score graph, its weights and ladder, if the manifest has an
    /// `annealing` section.
    pub annealing: Option<VerifiedAnnealing>,
}

/// One verified graph: where it was read from (named in errors) and its content.
#[derive(Debug)]
pub struct VerifiedGraph {
    /// The file the bytes came from.
    pub path: PathBuf,
    /// The file's content, whose sha256 matched the manifest.
    pub bytes: Vec<u8>,
}

/// A verified external-data file, in memory: ONNX Runtime is given these bytes under the name the
/// graphs' tensors use, instead of opening the file itself. Shared by the prior's sessions.
#[derive(Debug, Clone)]
pub struct ExternalData {
    /// The name the graphs' `external_data` `location` entries use (the manifest's file name).
    pub location: String,
    /// The file's content, whose sha256 matched the manifest.
    pub bytes: std::sync::Arc<[u8]>,
}

/// The files of an `annealing` section, verified, and its checked ladder.
#[derive(Debug)]
pub struct VerifiedAnnealing {
    /// `annealing.score`: the `noisy_score` graph.
    pub score: VerifiedGraph,
    /// `annealing.weights`: the graph's external data (absent only for a waveform prior whose
    /// noisy graph embeds its weights).
    pub weights: Option<ExternalData>,
    /// `annealing.sigmas`, descending.
    pub ladder: Vec<f32>,
}

/// One graph file and its expected content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphFile {
    /// File name inside the prior folder.
    pub file: String,
    /// Lower-case hex sha256 of the file, so a truncated download or edited graph is refused.
    pub sha256: String,
}

/// Whether `name` is a valid stem name: `[a-z0-9][a-z0-9_-]*`.
pub fn is_valid_stem_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
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
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(io_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of a digest.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
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

/// [`verify_file`] for a graph, which must also name no external-data file other than `listed`
/// (the manifest's `graphs.weights`, hashed) and none when nothing is listed: ONNX Runtime loads
/// whatever file a graph names for its tensors. The file is read once for both checks.
fn verify_graph(
    dir: &Path,
    manifest: &Path,
    field: &'static str,
    graph: &GraphFile,
    listed: Option<&str>,
    budget: &ReadBudget,
) -> Result<VerifiedGraph, ManifestError> {
    let (file, bytes) = verify_file(dir, manifest, field, graph, budget)?;
    let locations = external_data_locations(&bytes).map_err(|source| ManifestError::NotOnnx {
        file: file.clone(),
        source,
    })?;
    match locations.into_iter().find(|l| Some(l.as_str()) != listed) {
        None => Ok(VerifiedGraph { path: file, bytes }),
        Some(location) => Err(ManifestError::UnlistedExternalData {
            file,
            location,
            listed: listed.map_or("no file (`graphs.weights` is absent)".into(), |l| {
                format!("`{l}`")
            }),
        }),
    }
}

/// The `annealing` section's ladder and files: its weights hashed, its graph hashed and reading
/// tensor data from those weights only.
fn verify_annealing(
    dir: &Path,
    manifest: &Path,
    section: &AnnealingSection,
    domain: Domain,
    budget: &ReadBudget,
) -> Result<VerifiedAnnealing, ManifestError> {
    let ladder = section.ladder(domain).map_err(|e| ManifestError::FieldMismatch {
        path: manifest.to_path_buf(),
        field: e.field,
        expected: e.expected,
        found: e.found,
    })?;
    let weights = match (&section.weights, domain) {
        (Some(file), _) => {
            let (_, bytes) = verify_file(dir, manifest, "annealing.weights", file, budget)?;
            Some(ExternalData {
                location: file.file.clone(),
                bytes: bytes.into(),
            })
        }
        (None, Domain::Waveform) => None,
        (None, Domain::Spectrogram) => {
            return Err(ManifestError::MissingField {
                path: manifest.to_path_buf(),
                field: "annealing.weights",
            })
        }
    };
    let score = verify_graph(
        dir,
        manifest,
        "annealing.score",
        &section.score,
        weights.as_ref().map(|w| w.location.as_str()),
        budget,
    )?;
    Ok(VerifiedAnnealing {
        score,
        weights,
        ladder,
    })
}

/// The last component of `dir` (resolving `.` and relative paths).
fn folder_name(dir: &Path) -> Option<String> {
    let resolved = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    resolved.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// How much one verification may read: each listed file at most `file_cap` bytes, all of them
/// together at most `total_cap` ([`MAX_PRIOR_FILE_BYTES`], [`MAX_PRIOR_BYTES`]).
#[derive(Debug)]
struct ReadBudget {
    /// Most bytes of one file.
    file_cap: u64,
    /// Most bytes of all files.
    total_cap: u64,
    /// Bytes read so far.
    used: std::cell::Cell<u64>,
}

impl ReadBudget {
    fn new(file_cap: u64, total_cap: u64) -> ReadBudget {
        ReadBudget {
            file_cap,
            total_cap,
            used: std::cell::Cell::new(0),
        }
    }

    /// Reads `file` within both caps: a file past either is refused by its size on disk before
    /// it is read.
    fn read(&self, manifest: &Path, file: &Path) -> Result<Vec<u8>, ManifestError> {
        let too_much = |size: u64| {
            let total = self.used.get() + size;
            (total > self.total_cap).then(|| ManifestError::PriorTooLarge {
                manifest: manifest.to_path_buf(),
                file: file.to_path_buf(),
                size,
                total,
                cap: self.total_cap,
            })
        };
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if size <= self.file_cap {
            if let Some(error) = too_much(size) {
                return Err(error);
            }
        }
        let bytes = read_capped(file, self.file_cap, "listed file")?;
        let size = bytes.len() as u64;
        if let Some(error) = too_much(size) {
            return Err(error);
        }
        self.used.set(self.used.get() + size);
        Ok(bytes)
    }
}

/// Reads the regular file `path` whole if it has at most `cap` bytes. A larger one is refused by
/// its size on disk before anything is allocated for it, and at most `cap + 1` bytes are ever read
/// (a file that grows meanwhile is refused too); a device or pipe is refused unread.
fn read_capped(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, ManifestError> {
    use std::io::Read;
    let io_error = |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Opening a FIFO for reading would wait for a writer; regular files ignore the flag.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected a regular file, found a folder, device or pipe",
        )));
    }
    let too_large = |size| ManifestError::TooLarge {
        file: path.to_path_buf(),
        size,
        cap,
        what,
    };
    if metadata.len() > cap {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Checks that the file a manifest field names is a plain name inside `dir`, exists, fits the
/// read budget and has the listed sha256; returns its path and content.
fn verify_file(
    dir: &Path,
    manifest: &Path,
    field: &'static str,
    graph: &GraphFile,
    budget: &ReadBudget,
) -> Result<(PathBuf, Vec<u8>), ManifestError> {
    let plain_name = {
        let mut components = Path::new(&graph.file).components();
        matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none()
    };
    if !plain_name {
        return Err(ManifestError::FieldMismatch {
            path: manifest.to_path_buf(),
            field,
            expected: "a file name inside the prior folder".into(),
            found: format!("`{}`", graph.file),
        });
    }
    let file = dir.join(&graph.file);
    if !file.is_file() {
        return Err(ManifestError::MissingFile { field, file });
    }
    let bytes = budget.read(manifest, &file)?;
    let found = hex(&Sha256::digest(&bytes));
    let expected = graph.sha256.to_ascii_lowercase();
    if found != expected {
        return Err(ManifestError::HashMismatch {
            file,
            expected,
            found,
        });
    }
    Ok((file, bytes))
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

    #[test]
    fn stem_names_follow_the_pattern() {
        for ok in ["bass", "drums2", "e-guitar", "0_x"] {
            assert!(is_valid_stem_name(ok), "{ok}");
        }
        for bad in ["", "Bass", "-bass", "_x", "bass guitar", "bäss"] {
            assert!(!is_valid_stem_name(bad), "{bad}");
        }
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
