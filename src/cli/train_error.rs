//! Why `train-prior` stopped: one error type shared by the command and the trainer it runs.

use crate::engine::priors::prior_error::PriorError;
use std::path::PathBuf;

/// Everything that can stop `train-prior`, each one line.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The stem name would not be accepted by the manifest check (or is a path).
    #[error(
        "`{name}` is not a valid stem name: use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
    )]
    BadStemName {
        /// The name given.
        name: String,
    },
    /// The recordings folder is missing or is not a folder.
    #[error("recordings folder {} {problem}", .path.display())]
    Recordings {
        /// The path given.
        path: PathBuf,
        /// "does not exist", "is not a folder", ...
        problem: String,
    },
    /// Nothing the trainer can read under the recordings folder.
    #[error("no audio files (.wav, .flac, .ogg, .aif, .aiff) under {}", .path.display())]
    NoAudio {
        /// The recordings folder.
        path: PathBuf,
    },
    /// The trainer reads `dir:A,B` as a training and a validation folder.
    #[error("the recordings folder's path {} contains `,`, which the trainer cannot take; rename or link it", .path.display())]
    CommaInPath {
        /// The recordings folder.
        path: PathBuf,
    },
    /// The destination already holds a prior (or anything else) of that name.
    #[error("{} already exists; pass --force to replace it", .dir.display())]
    AlreadyInstalled {
        /// DEST/<stem>.
        dir: PathBuf,
    },
    /// None of the variables that give the data folder is set.
    #[error("cannot find a data directory for {what}: set STEMFLOW_DATA_DIR or HOME")]
    NoDataDir {
        /// What it was needed for.
        what: &'static str,
    },
    /// This stem's checkpoints come from another recordings folder.
    #[error(
        "the checkpoints in {} were trained on {}, not {}; pass --fresh to start over",
        .ckpt_dir.display(), .other.display(), .recordings.display()
    )]
    OtherRecordings {
        /// The checkpoint folder.
        ckpt_dir: PathBuf,
        /// The folder they were trained on, as recorded (the OS's bytes).
        other: PathBuf,
        /// The folder given now.
        recordings: PathBuf,
    },
    /// No Python interpreter where one was looked for.
    #[error("Python interpreter not found; tried {}; {how}", .tried.join(", "))]
    PythonNotFound {
        /// Every place looked at, each with why it was not taken.
        tried: Vec<String>,
        /// What to do: the exact commands that make the environment, or the option to pass.
        how: String,
    },
    /// The trainer package is in none of the places looked at.
    #[error(
        "trainer not found: no stemflow_training/train.py in {}; a bundle carries it as `training/` beside the `stemflow` executable: copy that folder (or `models/training` of the Stemflow source of this version) to one of those places, or set $STEMFLOW_TRAINING_DIR to it",
        .tried.join(", ")
    )]
    TrainerNotFound {
        /// Every folder looked at, in order.
        tried: Vec<String>,
    },
    /// The interpreter cannot import the trainer or its requirements.
    #[error(
        "{} cannot import the trainer from {}: {reason}; install the trainer's requirements with `{install}`, or pass --python with an interpreter that has them",
        .python.display(), .trainer_dir.display()
    )]
    TrainerImport {
        /// The interpreter.
        python: PathBuf,
        /// The folder holding `stemflow_training`.
        trainer_dir: PathBuf,
        /// Python's last error line.
        reason: String,
        /// The exact command that installs the requirements into that interpreter.
        install: String,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "create".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The trainer exited with an error.
    #[error("the trainer failed ({status}): {message}; nothing installed, checkpoints kept in {}", .ckpt_dir.display())]
    TrainerFailed {
        /// Its exit status.
        status: String,
        /// Its last line on stderr.
        message: String,
        /// Where its checkpoints are.
        ckpt_dir: PathBuf,
    },
    /// Ctrl-C (or SIGTERM/SIGHUP) during training.
    #[error(
        "interrupted: nothing installed; checkpoints (written every 250 steps) are kept in {}: run the same command again to resume",
        .ckpt_dir.display()
    )]
    Interrupted {
        /// Where the checkpoints are.
        ckpt_dir: PathBuf,
    },
    /// The exported prior did not load or run in the engine.
    #[error("the trained prior failed validation, nothing installed: {0}")]
    Invalid(#[source] PriorError),
}
