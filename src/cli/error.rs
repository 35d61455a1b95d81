//! The command line's error: one variant per engine boundary, each printed as one line.

use super::train_prior::TrainError;
use crate::engine::audio_file::AudioError;
use crate::engine::prior::PriorError;
use crate::engine::runtime::RuntimeError;
use crate::engine::separate_file::SeparateFileError;
use crate::engine::separator::SeparationError;
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
    /// The arguments make no sense together.
    #[error("{0}")]
    Usage(String),
}
