//! Everything that can be wrong with a prior's manifest or the files it lists, each naming the
//! file or field and what was expected and found.

use std::path::PathBuf;

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
