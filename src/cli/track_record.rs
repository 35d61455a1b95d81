//! The record a finished track leaves in its output folder (`.stemflow.json`), so a batch run
//! again skips the tracks already done: it names the input (size and SHA-256 of its content), what
//! produced the stems (version, priors, settings, format) and each stem file's size. A track is
//! skipped only if all of that still matches; anything else (another setting, a changed input, a
//! stem deleted or cut short) separates it again.

use super::json_file::write_json_atomically;
use crate::engine::hex_digest::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// File name of the record inside a track's output folder.
pub const RECORD_FILE: &str = ".stemflow.json";

/// What identifies an input file: its content, so a file replaced by other audio is separated
/// again whatever its size and modification time (hashing a file is cheap next to separating it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputIdentity {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

impl InputIdentity {
    /// The identity of the file at `path`, read whole.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let mut hash = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hash.update(&buffer[..n]);
            bytes += n as u64;
        }
        Ok(InputIdentity {
            bytes,
            sha256: hex(&hash.finalize()),
        })
    }
}

/// What decides the stems besides the input, as [`job_fingerprint`] hashes it.
#[derive(Debug, Clone, Copy)]
pub struct JobIdentity<'a> {
    /// The ONNX Runtime's version (another version may compute other stems).
    pub runtime: &'a str,
    /// Each prior: its stem name, the device its graphs run on, and its verified manifest (which
    /// holds the sha256 of every graph, weights and dictionary file), serialised.
    pub priors: &'a [(String, String, Vec<u8>)],
    /// The settings, as text.
    pub settings: &'a str,
    /// The output format, as text.
    pub format: &'a str,
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

/// A digest of what decides the stems: Stemflow's version, the runtime's, each prior (stem name,
/// device and the sha256 of its verified manifest), the settings and the output format.
pub fn job_fingerprint(job: &JobIdentity) -> String {
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    hash.update(b"\0runtime\0");
    hash.update(job.runtime.as_bytes());
    for (stem, device, manifest) in job.priors {
        hash.update(b"\0prior\0");
        hash.update(stem.as_bytes());
        hash.update(b"\0device\0");
        hash.update(device.as_bytes());
        hash.update(b"\0manifest\0");
        hash.update(Sha256::digest(manifest));
    }
    hash.update(b"\0settings\0");
    hash.update(job.settings.as_bytes());
    hash.update(b"\0format\0");
    hash.update(job.format.as_bytes());
    hex(&hash.finalize())
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

    fn job<'a>(settings: &'a str, priors: &'a [(String, String, Vec<u8>)], runtime: &'a str) -> String {
        job_fingerprint(&JobIdentity {
            runtime,
            priors,
            settings,
            format: "32-bit float WAV",
        })
    }

    #[test]
    fn a_record_matches_only_the_same_input_job_and_stems() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("song.wav");
        std::fs::write(&input, b"mix").unwrap();
        let stem = dir.path().join("bass.wav");
        std::fs::write(&stem, b"bass").unwrap();
        let identity = InputIdentity::of(&input).unwrap();
        let fingerprint = job("settings", &[], "1.22.0");
        assert!(!TrackRecord::is_complete_in(dir.path(), &identity, &fingerprint));
        TrackRecord::new(identity.clone(), fingerprint.clone(), std::slice::from_ref(&stem))
            .write(dir.path())
            .unwrap();
        assert!(TrackRecord::is_complete_in(dir.path(), &identity, &fingerprint));
        let other = job("other settings", &[], "1.22.0");
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

    /// Other audio of the same size and modification time is another input.
    #[test]
    fn an_input_is_known_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("song.wav");
        std::fs::write(&input, b"mix one").unwrap();
        let when = std::fs::metadata(&input).unwrap().modified().unwrap();
        let first = InputIdentity::of(&input).unwrap();
        std::fs::write(&input, b"mix two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&input)
            .unwrap()
            .set_modified(when)
            .unwrap();
        assert_ne!(InputIdentity::of(&input).unwrap(), first);
    }

    #[test]
    fn the_fingerprint_covers_the_runtime_the_device_and_the_manifest() {
        let prior =
            |device: &str, manifest: &[u8]| vec![("bass".to_string(), device.to_string(), manifest.to_vec())];
        let base = job("s", &prior("Cpu", b"{}"), "1.22.0");
        assert_ne!(base, job("s", &prior("Cpu", b"{}"), "1.23.0"));
        assert_ne!(base, job("s", &prior("Cuda", b"{}"), "1.22.0"));
        assert_ne!(base, job("s", &prior("Cpu", b"{ }"), "1.22.0"));
        assert_eq!(base, job("s", &prior("Cpu", b"{}"), "1.22.0"));
    }
}
