//! What a `separate` run did to each track, for `--report FILE` (JSON) and `--json` progress:
//! status, wall time and real-time factor per track, and the counts.

use super::json_file::write_json_atomically;
use serde::Serialize;
use std::path::Path;

/// What became of one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackStatus {
    /// Its stems were written.
    Separated,
    /// Complete stems from the same priors and settings were already there.
    Skipped,
    /// It could not be separated (see `error`); the batch went on.
    Failed,
    /// The run was stopped (Ctrl-C) while it was in work; nothing of it was written.
    Stopped,
    /// The run stopped before it was reached.
    Pending,
}

/// One track's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackReport {
    /// The input file, as found.
    pub input: String,
    /// Its output folder.
    pub output: String,
    /// What became of it.
    pub status: TrackStatus,
    /// Wall time spent on it, in seconds (0 if skipped or pending).
    pub wall_seconds: f64,
    /// Length of the audio in seconds, when it was separated.
    pub audio_seconds: Option<f64>,
    /// Wall time per second of audio, when it was separated.
    pub real_time_factor: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// What the run warned about the track (damaged input packets, clipped stems).
    pub warnings: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    /// Stemflow's version.
    pub stemflow: &'static str,
    /// `K/N` when the run was one shard of a catalogue.
    pub shard: Option<String>,
    /// Every track of this run, in the order they were taken.
    pub tracks: Vec<TrackReport>,
    /// Tracks separated.
    pub separated: usize,
    /// Tracks skipped as already complete.
    pub skipped: usize,
    /// Tracks that failed.
    pub failed: usize,
}

impl BatchReport {
    /// The report of `tracks`, counted.
    pub fn new(shard: Option<String>, tracks: Vec<TrackReport>) -> Self {
        let count = |status| tracks.iter().filter(|t| t.status == status).count();
        BatchReport {
            stemflow: env!("CARGO_PKG_VERSION"),
            shard,
            separated: count(TrackStatus::Separated),
            skipped: count(TrackStatus::Skipped),
            failed: count(TrackStatus::Failed),
            tracks,
        }
    }

    /// Writes the report to `path` atomically (a temporary file in the same folder, renamed).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_json_atomically(path, self)
    }
}
