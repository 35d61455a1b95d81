//! One run at a time in a track's output folder: a run holds an OS lock on `.stemflow.lock` in
//! the folder while it checks, writes or skips the track, so two runs given one output folder
//! (the same command started twice, or two shards given overlapping inputs) never interleave a
//! track's stems and record. The lock is per track, not per output folder, so the shards of a
//! catalogue still share one. The OS releases it when the process ends however it ends; the file
//! names the holder for the other run's error, and is removed on release.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File name of the lock inside a track's output folder.
pub const LOCK_FILE: &str = ".stemflow.lock";

/// Why a track's folder could not be locked.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another run holds the lock.
    #[error(
        "{}: another Stemflow run ({holder}) is writing this track; expected the folder to be free \
         (run again when that run has ended)",
        dir.display()
    )]
    Busy {
        /// The track's output folder.
        dir: PathBuf,
        /// Who holds it, as the holder wrote it (its process id and host).
        holder: String,
    },
    /// The folder or the lock file could not be made or locked.
    #[error("{}: could not lock the output folder: {source}", path.display())]
    Io {
        /// The lock file (or the folder, if it could not be made).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A held lock on one track's output folder; released (and its file removed, with the folder if
/// this run made it and nothing else is in it) when dropped.
#[derive(Debug)]
pub struct TrackLock {
    /// The open, locked lock file.
    file: Option<File>,
    /// Its path.
    path: PathBuf,
    /// The folder, if this lock made it (removed again if it is empty at release).
    made_dir: Option<PathBuf>,
}

/// Who this process is, for another run's error: `process N on HOST`.
fn holder() -> String {
    let host = host_name();
    if host.is_empty() {
        format!("process {}", std::process::id())
    } else {
        format!("process {} on {host}", std::process::id())
    }
}

#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is NUL-terminated or truncated.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    if !ok {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

/// Whether the open `file` is still the file at `path` (a releasing holder removes the file, and
/// a lock taken on a removed file locks nothing another run can see).
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere the file is never removed, so the open file is the one at the path.
#[cfg(not(unix))]
fn still_at(_file: &File, _path: &Path) -> bool {
    true
}

impl TrackLock {
    /// Locks `dir` (made if missing) for this run, or says which run holds it.
    pub fn acquire(dir: &Path) -> Result<TrackLock, LockError> {
        let made_dir = (!dir.is_dir()).then(|| dir.to_path_buf());
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let holder = text.trim();
                    return Err(LockError::Busy {
                        dir: dir.to_path_buf(),
                        holder: if holder.is_empty() {
                            "which did not say who it is".into()
                        } else {
                            holder.into()
                        },
                    });
                }
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
            if !still_at(&file, &path) {
                continue;
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", holder()).map_err(io)?;
            return Ok(TrackLock {
                file: Some(file),
                path,
                made_dir,
            });
        }
    }
}

impl Drop for TrackLock {
    fn drop(&mut self) {
        // Removed while still held, so a run that opens it next finds either this file, locked,
        // or a new one.
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
        if let Some(dir) = &self.made_dir {
            // Only succeeds if empty: a track that wrote nothing leaves no folder.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_and_release_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out/song");
        let first = TrackLock::acquire(&dir).unwrap();
        let error = TrackLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            error.contains(&format!("process {}", std::process::id())),
            "{error}"
        );
        drop(first);
        assert!(!dir.exists(), "the folder this lock made goes when empty");
        let again = TrackLock::acquire(&dir).unwrap();
        std::fs::write(dir.join("bass.wav"), b"").unwrap();
        drop(again);
        assert!(dir.join("bass.wav").exists());
        assert!(!dir.join(LOCK_FILE).exists());
    }
}
