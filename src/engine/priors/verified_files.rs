//! A prior's files as verification read them: each listed file read once within the size caps,
//! hashed against the manifest, and its bytes kept, so the sessions are made from exactly what was
//! checked (never a file changed on disk since).

use std::path::{Component, Path, PathBuf};

use crate::engine::hex_digest::sha256_hex;
use crate::engine::priors::annealing::AnnealingSection;
use crate::engine::priors::domain::Domain;
use crate::engine::priors::graph_file::GraphFile;
use crate::engine::priors::manifest_error::ManifestError;
use crate::engine::priors::onnx_checks::external_data_locations;

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

/// [`verify_file`] for a graph, which must also name no external-data file other than `listed`
/// (the manifest's `graphs.weights`, hashed) and none when nothing is listed: ONNX Runtime loads
/// whatever file a graph names for its tensors. The file is read once for both checks.
pub(crate) fn verify_graph(
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
pub(crate) fn verify_annealing(
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

/// How much one verification may read: each listed file at most `file_cap` bytes, all of them
/// together at most `total_cap` ([`crate::engine::limits::MAX_PRIOR_FILE_BYTES`], [`crate::engine::limits::MAX_PRIOR_BYTES`]).
#[derive(Debug)]
pub(crate) struct ReadBudget {
    /// Most bytes of one file.
    file_cap: u64,
    /// Most bytes of all files.
    total_cap: u64,
    /// Bytes read so far.
    used: std::cell::Cell<u64>,
}

impl ReadBudget {
    pub(crate) fn new(file_cap: u64, total_cap: u64) -> ReadBudget {
        ReadBudget {
            file_cap,
            total_cap,
            used: std::cell::Cell::new(0),
        }
    }

    /// Reads `file` within both caps: a file past either is refused by its size on disk before
    /// it is read.
    pub(crate) fn read(&self, manifest: &Path, file: &Path) -> Result<Vec<u8>, ManifestError> {
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
pub(crate) fn read_capped(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, ManifestError> {
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
pub(crate) fn verify_file(
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
    let found = sha256_hex(&bytes);
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
