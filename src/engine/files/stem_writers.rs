//! Stems written as files that appear atomically: each stem is encoded into a hidden temporary
//! file next to its destination and renamed into place only when every stem is complete; should
//! anything fail, nothing new is left and the old stems stay as they were.

use super::audio_file::AudioError;
use super::stem_encoder::{plain_tag_for_many_channels, EncodeError, StemEncoder};
use super::stem_format::{Container, StemFormat};
use crate::engine::stem_name::is_valid_stem_name;
use std::fs::File;
use std::path::{Path, PathBuf};
use tempfile::TempPath;

/// A temporary-file builder for a file the user keeps (a stem, a report): 0666 less the umask
/// once renamed into place, not tempfile's private 0600.
pub fn user_file_builder(prefix: &str) -> tempfile::Builder<'_, '_> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
}

/// One stem being written: its encoder on a hidden temporary file and where it goes.
struct StemWriter {
    /// Where the finished file is renamed to: `<out_dir>/<stem>.<ext>`.
    final_path: PathBuf,
    /// The encoder on the temporary file (taken out when finished).
    writer: Option<StemEncoder>,
    /// The temporary file; deleted when dropped unless persisted.
    temp: TempPath,
    /// Sample frames written so far.
    frames: u64,
}

/// One writer per stem, all in the same output directory and format, that either all appear as
/// `<stem>.<ext>` ([`StemWriterSet::finish`]) or leave nothing behind (drop).
pub struct StemWriterSet {
    /// The output directory, for error messages.
    out_dir: PathBuf,
    /// One writer per stem, in the order of the names given.
    stems: Vec<StemWriter>,
    /// Channels every write must supply.
    channels: usize,
    /// Sample rate, for the size limit's message.
    sample_rate: u32,
    /// The files' format.
    format: StemFormat,
    /// Most sample frames a stem may hold ([`StemFormat::max_frames`]); a longer stem is an
    /// error, never a file whose header wrapped around.
    max_frames: u64,
}

impl std::fmt::Debug for StemWriterSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StemWriterSet")
            .field("out_dir", &self.out_dir)
            .field(
                "stems",
                &self.stems.iter().map(|s| &s.final_path).collect::<Vec<_>>(),
            )
            .field("channels", &self.channels)
            .field("format", &self.format)
            .finish()
    }
}

impl StemWriterSet {
    /// Creates `out_dir` if missing and opens a hidden temporary file
    /// (`.<stem>.<ext>.partial-XXXX`) per stem inside it, in `format` at `sample_rate` with
    /// `channels` channels.
    pub fn create(
        out_dir: impl AsRef<Path>,
        stem_names: &[impl AsRef<str>],
        sample_rate: u32,
        channels: usize,
        format: StemFormat,
    ) -> Result<Self, AudioError> {
        let out_dir = out_dir.as_ref().to_path_buf();
        for name in stem_names {
            let name = name.as_ref();
            if !is_valid_stem_name(name) {
                return Err(AudioError::InvalidStemName {
                    name: name.to_owned(),
                });
            }
        }
        let write_format = |expected: String, found: String| AudioError::WriteFormat {
            path: out_dir.clone(),
            expected,
            found,
        };
        format
            .check_channels(channels)
            .map_err(|e| write_format(e.expected, e.found))?;
        if sample_rate == 0 {
            return Err(write_format("a sample rate above 0 Hz".into(), "0 Hz".into()));
        }
        std::fs::create_dir_all(&out_dir).map_err(|e| AudioError::OutputDir {
            dir: out_dir.clone(),
            reason: format!("it cannot be created ({e})"),
        })?;
        let mut stems = Vec::with_capacity(stem_names.len());
        for (index, name) in stem_names.iter().enumerate() {
            let file_name = format.file_name(name.as_ref());
            let prefix = format!(".{file_name}.partial-");
            let temp =
                user_file_builder(&prefix)
                    .tempfile_in(&out_dir)
                    .map_err(|e| AudioError::OutputDir {
                        dir: out_dir.clone(),
                        reason: format!("a file cannot be created in it ({e})"),
                    })?;
            let (file, temp) = temp.into_parts();
            // Checked above: 1 to 65535 channels.
            let channel_count = channels as u16;
            let final_path = out_dir.join(file_name);
            let writer = StemEncoder::new(file, format, sample_rate, channel_count, index as u64)
                .map_err(|e| encode_error(&final_path, format, e))?;
            stems.push(StemWriter {
                final_path,
                writer: Some(writer),
                temp,
                frames: 0,
            });
        }
        Ok(StemWriterSet {
            out_dir,
            stems,
            channels,
            sample_rate,
            format,
            max_frames: format.max_frames(channels),
        })
    }

    /// `Ok` if a stem of `frames` sample frames fits a WAV file, else the error a write of that
    /// length would give (so a caller that knows the length can refuse before any work).
    pub fn check_length(&self, frames: u64) -> Result<(), AudioError> {
        if frames <= self.max_frames {
            return Ok(());
        }
        let path = self
            .stems
            .first()
            .map_or_else(|| self.out_dir.clone(), |s| s.final_path.clone());
        Err(AudioError::TooLongForFormat {
            path,
            format: self.format,
            max_frames: self.max_frames,
            max_hours: self.max_frames as f64 / f64::from(self.sample_rate) / 3600.0,
            found_frames: frames,
        })
    }

    /// Samples clipped to the integer range so far, over every stem (0 for float).
    pub fn clipped_samples(&self) -> u64 {
        self.stems
            .iter()
            .filter_map(|s| s.writer.as_ref())
            .map(StemEncoder::clipped)
            .sum()
    }

    /// Lowers the size limit, so tests can reach it without writing 4 GiB.
    #[cfg(test)]
    fn limit_frames(&mut self, max_frames: u64) {
        self.max_frames = max_frames;
    }

    /// Appends deinterleaved frames (one slice per channel, all the same length) to stem
    /// `stem_index`.
    ///
    /// Panics if `stem_index` is out of range or the channel count or lengths disagree.
    pub fn write(&mut self, stem_index: usize, channels: &[&[f32]]) -> Result<(), AudioError> {
        assert_eq!(
            channels.len(),
            self.channels,
            "write: expected one slice per channel"
        );
        let frames = channels.first().map_or(0, |c| c.len());
        assert!(
            channels.iter().all(|c| c.len() == frames),
            "write: channel lengths differ"
        );
        self.check_length(self.stems[stem_index].frames + frames as u64)?;
        let stem = &mut self.stems[stem_index];
        stem.frames += frames as u64;
        let writer = stem.writer.as_mut().expect("writer present until finish");
        writer
            .write(channels, frames)
            .map_err(|e| encode_error(&stem.final_path, self.format, e))
    }

    /// Finalises every stem, flushes each to disk, and renames each into place as `<stem>.<ext>`
    /// (replacing an existing file); returns the final paths in stem order. Either every stem is
    /// replaced or none: should a rename fail, the stems already moved are put back as they
    /// were. On error, the temporary files are removed.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, AudioError> {
        for stem in &mut self.stems {
            if let Some(writer) = stem.writer.take() {
                writer
                    .finish()
                    .map_err(|e| encode_error(&stem.final_path, self.format, e))?;
                if self.format.container() == Container::Wav {
                    // Checked in `create`: 1 to 65535 channels.
                    plain_tag_for_many_channels(&stem.temp, self.channels as u16, self.format.depth())
                        .map_err(|source| AudioError::Io {
                            path: stem.final_path.clone(),
                            source,
                        })?;
                }
            }
            sync_file(&stem.temp)?;
        }
        let mut moved: Vec<(PathBuf, Option<TempPath>)> = Vec::with_capacity(self.stems.len());
        for stem in self.stems.drain(..) {
            let StemWriter { final_path, temp, .. } = stem;
            match replace_keeping_backup(temp, &final_path, &self.out_dir) {
                Ok(backup) => moved.push((final_path, backup)),
                Err(error) => {
                    restore(moved);
                    return Err(error);
                }
            }
        }
        sync_dir(&self.out_dir);
        Ok(moved.into_iter().map(|(path, _backup)| path).collect())
    }
}

/// Moves `temp` to `final_path`; an existing file there is first moved aside to a hidden backup
/// in `dir` (deleted when the returned path is dropped, or put back by [`restore`]).
fn replace_keeping_backup(
    temp: TempPath,
    final_path: &Path,
    dir: &Path,
) -> Result<Option<TempPath>, AudioError> {
    let io_error = |source| AudioError::Io {
        path: final_path.to_path_buf(),
        source,
    };
    let backup = if final_path.exists() {
        let name = final_path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let backup = tempfile::Builder::new()
            .prefix(&format!(".{name}.old-"))
            .tempfile_in(dir)
            .map_err(io_error)?
            .into_temp_path();
        std::fs::rename(final_path, &backup).map_err(io_error)?;
        Some(backup)
    } else {
        None
    };
    match temp.persist(final_path) {
        Ok(()) => Ok(backup),
        Err(e) => {
            if let Some(backup) = backup {
                let _ = backup.persist(final_path);
            }
            Err(io_error(e.error))
        }
    }
}

/// Puts back what [`replace_keeping_backup`] replaced: each new stem is removed and its backup,
/// if any, renamed to where it was.
fn restore(moved: Vec<(PathBuf, Option<TempPath>)>) {
    for (final_path, backup) in moved.into_iter().rev() {
        let _ = std::fs::remove_file(&final_path);
        if let Some(backup) = backup {
            let _ = backup.persist(&final_path);
        }
    }
}

/// Flushes a written file's data to disk before it is renamed into place.
fn sync_file(path: &Path) -> Result<(), AudioError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| AudioError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Flushes a folder's entries (the renames) to disk where the platform allows; best effort.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Maps an encoder's error on the stem that would be `path` to an [`AudioError`].
fn encode_error(path: &Path, format: StemFormat, e: EncodeError) -> AudioError {
    match e {
        EncodeError::Io(source) => AudioError::Io {
            path: path.to_path_buf(),
            source,
        },
        EncodeError::Format(found) => AudioError::WriteFormat {
            path: path.to_path_buf(),
            expected: format!("a {format} stream"),
            found,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::files::audio_file::read_all;

    #[test]
    fn stems_are_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/sub");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("bass.wav"), b"old").unwrap();
        let mut set =
            StemWriterSet::create(&out, &["bass", "drums"], 48_000, 2, StemFormat::DEFAULT).unwrap();
        let left: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let right: Vec<f32> = left.iter().map(|x| -x).collect();
        for s in 0..2 {
            set.write(s, &[&left[..600], &right[..600]]).unwrap();
            set.write(s, &[&left[600..], &right[600..]]).unwrap();
        }
        // Nothing final exists while writing; only hidden partial files.
        assert!(!out.join("drums.wav").exists());
        let paths = set.finish().unwrap();
        assert_eq!(paths, vec![out.join("bass.wav"), out.join("drums.wav")]);
        for p in &paths {
            let buf = read_all(p).unwrap();
            assert_eq!(buf.sample_rate, 48_000);
            assert_eq!(buf.channels.len(), 2);
            assert_eq!(buf.channels[0], left);
            assert_eq!(buf.channels[1], right);
        }
        let names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no partial files left: {names:?}");
    }

    #[test]
    fn creates_missing_output_dir() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b/c");
        let mut set = StemWriterSet::create(&out, &["vocals"], 22_050, 1, StemFormat::DEFAULT).unwrap();
        set.write(0, &[&[0.25; 10]]).unwrap();
        set.finish().unwrap();
        assert_eq!(
            read_all(out.join("vocals.wav")).unwrap().channels[0],
            vec![0.25; 10]
        );
    }

    #[test]
    fn dropping_without_finish_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut set =
                StemWriterSet::create(dir.path(), &["bass", "other"], 44_100, 1, StemFormat::DEFAULT)
                    .unwrap();
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                2,
                "hidden partials exist"
            );
            set.write(0, &[&[0.5; 100]]).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_stem_longer_than_a_wav_can_hold_is_an_error_not_a_wrapped_file() {
        // 3.1 h at 48 kHz stereo is the real limit; the test lowers it to 250 frames.
        let dir = tempfile::tempdir().unwrap();
        {
            let mut set =
                StemWriterSet::create(dir.path(), &["bass"], 48_000, 2, StemFormat::DEFAULT).unwrap();
            set.limit_frames(250);
            assert!(set.check_length(250).is_ok());
            set.write(0, &[&[0.1; 200], &[0.1; 200]]).unwrap();
            match set.write(0, &[&[0.1; 100], &[0.1; 100]]) {
                Err(AudioError::TooLongForFormat {
                    max_frames: 250,
                    found_frames: 300,
                    ..
                }) => {}
                other => panic!("expected TooLongForFormat, got {other:?}"),
            }
            let message = set.check_length(300).unwrap_err().to_string();
            assert!(message.contains("at most 250 sample frames"), "{message}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left behind"
        );
    }

    #[test]
    fn a_failed_rename_puts_back_the_stems_already_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bass.wav"), b"the old bass").unwrap();
        // `other.wav` is a folder with something in it: no file can be renamed onto it.
        std::fs::create_dir_all(dir.path().join("other.wav").join("keep")).unwrap();
        let mut set =
            StemWriterSet::create(dir.path(), &["bass", "other"], 44_100, 1, StemFormat::DEFAULT).unwrap();
        set.write(0, &[&[0.5; 100]]).unwrap();
        set.write(1, &[&[0.25; 100]]).unwrap();
        assert!(set.finish().is_err());
        assert_eq!(
            std::fs::read(dir.path().join("bass.wav")).unwrap(),
            b"the old bass"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["bass.wav", "other.wav"], "no backups or partials left");
    }

    #[test]
    fn unwritable_output_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let out = file.join("stems");
        let e = StemWriterSet::create(&out, &["bass"], 44_100, 2, StemFormat::DEFAULT).unwrap_err();
        assert!(matches!(e, AudioError::OutputDir { .. }), "{e}");
        assert!(e.to_string().contains("plain/stems"), "{e}");
    }

    #[test]
    fn bad_stem_names_and_formats_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            StemWriterSet::create(dir.path(), &["../x"], 44_100, 2, StemFormat::DEFAULT),
            Err(AudioError::InvalidStemName { .. })
        ));
        assert!(matches!(
            StemWriterSet::create(dir.path(), &["x"], 44_100, 0, StemFormat::DEFAULT),
            Err(AudioError::WriteFormat { .. })
        ));
    }

    #[test]
    fn stems_of_more_channels_than_speaker_positions_read_back() {
        use crate::engine::files::stem_format::SampleDepth;
        let dir = tempfile::tempdir().unwrap();
        for (channels, depth) in [
            (18, SampleDepth::Int24),
            (20, SampleDepth::Int24),
            (26, SampleDepth::Float32),
        ] {
            let format = StemFormat::new(Container::Wav, depth).unwrap();
            let out = dir.path().join(format!("{channels}-{depth:?}"));
            let mut set = StemWriterSet::create(&out, &["x"], 48_000, channels, format).unwrap();
            let data: Vec<Vec<f32>> = (0..channels).map(|c| vec![c as f32 / 64.0; 100]).collect();
            let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
            set.write(0, &refs).unwrap();
            let paths = set.finish().unwrap();
            let back = read_all(&paths[0]).unwrap();
            assert_eq!(back.channels, data, "{channels} channels, {depth:?}");
        }
    }
}
