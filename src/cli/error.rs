//! The command line's error: one variant per engine boundary, each printed as one line.

use super::track_lock::LockError;
use super::train_error::TrainError;
use crate::engine::files::audio_file::AudioError;
use crate::engine::files::separate_file::SeparateFileError;
use crate::engine::priors::catalog::CatalogError;
use crate::engine::priors::prior_error::PriorError;
use crate::engine::priors::runtime::RuntimeError;
use crate::engine::search::separation_error::SeparationError;
use thiserror::Error;

/// Everything that can stop a command.
#[derive(Debug, Error)]
pub enum CliError {
    /// The ONNX Runtime library could not be found or used.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A prior is missing, corrupt or unknown.
    #[error(transparent)]
    Prior(#[from] PriorError),
    /// A stem was asked for that no installed prior offers.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The input could not be read or the output could not be written.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Separation of a file failed.
    #[error(transparent)]
    Separate(#[from] SeparateFileError),
    /// A frame could not be separated.
    #[error(transparent)]
    Separation(#[from] SeparationError),
    /// Training or installing a new prior failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Another run is writing a track's output folder, or the folder could not be locked.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A bug: the track's work panicked (the batch goes on without it).
    #[error("internal error (a bug; please report it): {0}")]
    Panic(String),
    /// A batch was stopped (Ctrl-C) after some of its tracks were written.
    #[error(
        "stopped before the end; {separated} of {total} tracks were separated and are complete, \
         the track in work left nothing (run again to go on)"
    )]
    StoppedInBatch {
        /// Tracks separated before the stop.
        separated: usize,
        /// Tracks in the run.
        total: usize,
    },
    /// The arguments make no sense together.
    #[error("{0}")]
    Usage(String),
    /// Some tracks of a batch did not separate (each was reported when it failed).
    #[error("{} of {total} tracks failed: {}", failed.len(), failed.join(", "))]
    Batch {
        /// The inputs that failed, in run order.
        failed: Vec<String>,
        /// Tracks in the run.
        total: usize,
    },
}
