//! The record a finished track leaves in its output folder (`.stemflow.json`), so a batch run
//! again skips the tracks already done: it names the input (size and modification time), what
//! produced the stems (version, priors, settings, format) and each stem file's size. A track is
//! skipped only if all of that still matches; anything else (another setting, a changed input, a
//! stem deleted or cut short) separates it again.

use super::json_file::write_json_atomically;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// File name of the record inside a track's output folder.
pub const RECORD_FILE: &str = ".stemflow.json";

/// What identifies an input file without reading it all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputIdentity {
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 where the platform has none).
    pub modified_ns: u128,
}

impl InputIdentity {
    /// The identity of the file at `path`, if it can be read.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Some(InputIdentity {
            bytes: meta.len(),
            modified_ns,
        })
    }
}

/// One stem file and its size when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StemFileRecord {
    /// File name inside the track's folder.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The record of one finished track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRecord {
    /// The input it was made from.
    pub input: InputIdentity,
    /// Digest of everything else that decides the stems' content ([`job_fingerprint`]).
    pub fingerprint: String,
    /// The stem files, in stem order.
    pub stems: Vec<StemFileRecord>,
}

/// A digest of what decides the stems: Stemflow's version, each prior (stem name and the sha256
/// of its manifest, which holds the sha256 of every graph), the settings and the output format,
/// each given as text by the caller.
pub fn job_fingerprint(priors: &[(String, PathBuf)], settings: &str, format: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    for (stem, dir) in priors {
        hash.update(b"\0prior\0");
        hash.update(stem.as_bytes());
        let manifest = std::fs::read(dir.join("manifest.json")).unwrap_or_default();
        hash.update(Sha256::digest(&manifest));
    }
    hash.update(b"\0settings\0");
    hash.update(settings.as_bytes());
    hash.update(b"\0format\0");
    hash.update(format.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl TrackRecord {
    /// The record for `stems` (paths of the files just written) made from `input`.
    pub fn new(input: InputIdentity, fingerprint: String, stems: &[PathBuf]) -> Self {
        let stems = stems
            .iter()
            .map(|path| StemFileRecord {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
            })
            .collect();
        TrackRecord {
            input,
            fingerprint,
            stems,
        }
    }

    /// Whether `dir` holds a record equal to `self` in input and fingerprint, and every stem it
    /// lists is there at its recorded size.
    pub fn is_complete_in(dir: &Path, input: &InputIdentity, fingerprint: &str) -> bool {
        let Some(record) = Self::read(dir) else {
            return false;
        };
        record.input == *input
            && record.fingerprint == fingerprint
            && !record.stems.is_empty()
            && record.stems.iter().all(|stem| {
                std::fs::metadata(dir.join(&stem.file)).is_ok_and(|m| m.is_file() && m.len() == stem.bytes)
            })
    }

    /// The record in `dir`, if there is a readable one.
    fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the record into `dir` atomically (a temporary file renamed into place).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        write_json_atomically(&dir.join(RECORD_FILE), self)
    }

    /// Removes the record from `dir`, so stems being replaced are never taken as complete.
    pub fn remove(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(dir.join(RECORD_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_matches_only_the_same_input_job_and_stems() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("song.wav");
        std::fs::write(&input, b"mix").unwrap();
        let stem = dir.path().join("bass.wav");
        std::fs::write(&stem, b"bass").unwrap();
        let identity = InputIdentity::of(&input).unwrap();
        let fingerprint = job_fingerprint(&[], "settings", "32-bit float WAV");
        assert!(!TrackRecord::is_complete_in(dir.path(), &identity, &fingerprint));
        TrackRecord::new(identity.clone(), fingerprint.clone(), std::slice::from_ref(&stem))
            .write(dir.path())
            .unwrap();
        assert!(TrackRecord::is_complete_in(dir.path(), &identity, &fingerprint));
        let other = job_fingerprint(&[], "other settings", "32-bit float WAV");
        assert!(!TrackRecord::is_complete_in(dir.path(), &identity, &other));
        let changed = InputIdentity {
            bytes: identity.bytes + 1,
            ..identity.clone()
        };
        assert!(!TrackRecord::is_complete_in(dir.path(), &changed, &fingerprint));
        std::fs::write(&stem, b"cut").unwrap();
        assert!(!TrackRecord::is_complete_in(dir.path(), &identity, &fingerprint));
        TrackRecord::remove(dir.path()).unwrap();
        TrackRecord::remove(dir.path()).unwrap();
        assert!(!dir.path().join(RECORD_FILE).exists());
    }
}
