//! A whole file through the engine, streamed and decoded once: read a 5-s frame, separate it,
//! crossfade it into the stems, write what is final, and repeat. Memory stays bounded by a few
//! frames whatever the file's length; the stems appear under their real names only when every
//! one is complete.

use crate::engine::files::audio_file::{AudioError, AudioReader};
use crate::engine::files::stem_format::StemFormat;
use crate::engine::files::stem_writers::StemWriterSet;
use crate::engine::search::separator::{SeparationError, Separator};
use crate::engine::signal::frames::{FrameError, FrameGeometry, FrameReader, FrameSpan, OverlapAdd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a file could not be separated. Nothing is left in the output folder in every case.
#[derive(Debug, Error)]
pub enum SeparateFileError {
    /// Reading the input or writing a stem failed.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// A frame could not be separated.
    #[error(transparent)]
    Separation(#[from] SeparationError),
    /// The file cannot be framed.
    #[error("cannot frame {path}: {source}")]
    Frames {
        /// The input file.
        path: PathBuf,
        /// What the framing said.
        source: FrameError,
    },
    /// The caller asked the job to stop (e.g. Ctrl-C) before it finished.
    #[error("stopped before the end; nothing was written")]
    Stopped,
    /// The separator was built for another format than the file has.
    #[error("{path}: expected {expected_rate} Hz × {expected_channels} channels (the separator's format), found {found_rate} Hz × {found_channels}")]
    FormatMismatch {
        /// The input file.
        path: PathBuf,
        /// Rate the separator was built for.
        expected_rate: u32,
        /// Channels the separator was built for.
        expected_channels: usize,
        /// Rate of the file.
        found_rate: u32,
        /// Channels of the file.
        found_channels: usize,
    },
}

/// Where a running job is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    /// Index of the frame in work, from 0 (equal to `frames` when the job is done).
    pub frame: usize,
    /// Frames in the whole file, as far as its header tells (a decoder may find more or fewer).
    pub frames: usize,
    /// Iterations done on the frame in work.
    pub iteration: usize,
    /// Iterations per frame.
    pub iterations_per_frame: usize,
}

/// What a finished job did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// Length of the input in seconds.
    pub audio_seconds: f64,
    /// Wall-clock time the job took.
    pub wall_seconds: f64,
    /// The stem files written, in stem order.
    pub outputs: Vec<PathBuf>,
    /// Samples clipped to an integer format's range, over every stem (0 for float).
    pub clipped_samples: u64,
}

impl JobSummary {
    /// Wall time per second of audio: below 1 is faster than real time.
    pub fn real_time_factor(&self) -> f64 {
        self.wall_seconds / self.audio_seconds.max(f64::MIN_POSITIVE)
    }
}

/// Sets a flag when dropped, so a helper thread waiting for it ends however its job ends.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Separate what `reader` decodes into `out_dir/<stem>.<ext>` in `format` with `separator`
/// (built for the file's rate and channel count). `on_progress` is called from a helper thread about ten times
/// a second. Setting `stop` (from any thread, or a signal handler) ends the job within about
/// one iteration with [`SeparateFileError::Stopped`], leaving nothing in `out_dir`.
pub fn separate_file(
    mut reader: AudioReader,
    out_dir: &Path,
    format: StemFormat,
    separator: &mut Separator,
    stop: &AtomicBool,
    on_progress: impl FnMut(JobProgress) + Send,
) -> Result<JobSummary, SeparateFileError> {
    let started = Instant::now();
    let (rate, channels) = (reader.sample_rate(), reader.channels());
    let path = reader.path().to_path_buf();
    if rate != separator.host_rate() || channels != separator.channels() {
        return Err(SeparateFileError::FormatMismatch {
            path,
            expected_rate: separator.host_rate(),
            expected_channels: separator.channels(),
            found_rate: rate,
            found_channels: channels,
        });
    }
    let geometry = FrameGeometry::at_rate(rate, separator.settings().overlap_seconds).map_err(|source| {
        SeparateFileError::Frames {
            path: path.clone(),
            source,
        }
    })?;
    let names: Vec<String> = separator.stem_names().map(str::to_string).collect();
    let mut writers = StemWriterSet::create(out_dir, &names, rate, channels, format)?;
    if let Some(total) = reader.total_frames() {
        // Refuse a file whose stems cannot be written before hours of separation, not after.
        writers.check_length(total)?;
    }
    let frames = reader
        .total_frames()
        .map_or(0, |total| geometry.count_for(total) as usize);
    let frame_in_work = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let progress = separator.progress();
    let cancel = separator.cancel_flag();
    let iterations = separator.steps_per_frame();
    let total = std::thread::scope(|scope| {
        let mut on_progress = on_progress;
        let (progress, frame_in_work, done, cancel) = (&progress, &frame_in_work, &done, &cancel);
        scope.spawn(move || {
            while !done.load(Ordering::Acquire) {
                if stop.load(Ordering::Relaxed) {
                    // The separator clears its flag when a frame starts: keep it set.
                    cancel.store(true, Ordering::Relaxed);
                }
                let frame = frame_in_work.load(Ordering::Relaxed);
                on_progress(JobProgress {
                    frame,
                    frames: frames.max(frame + 1),
                    iteration: progress.iteration().min(iterations),
                    iterations_per_frame: iterations,
                });
                std::thread::sleep(Duration::from_millis(100));
            }
            let frame = frame_in_work.load(Ordering::Relaxed);
            on_progress(JobProgress {
                frame,
                frames: frame,
                iteration: 0,
                iterations_per_frame: iterations,
            });
        });
        let _done = SetOnDrop(done);
        stream_frames(
            &mut reader,
            geometry,
            separator,
            &mut writers,
            frame_in_work,
            stop,
        )
    })
    .map_err(|e| {
        if stop.load(Ordering::Relaxed) {
            SeparateFileError::Stopped
        } else {
            e
        }
    })?;
    if total == 0 {
        return Err(AudioError::Empty {
            path,
            found: "no sample frames".into(),
        }
        .into());
    }
    let clipped_samples = writers.clipped_samples();
    let outputs = writers.finish()?;
    Ok(JobSummary {
        audio_seconds: total as f64 / f64::from(rate),
        wall_seconds: started.elapsed().as_secs_f64(),
        outputs,
        clipped_samples,
    })
}

/// Reads, separates, crossfades and writes every frame; returns the samples per channel read.
/// `frame_in_work` follows the frame being separated, for the progress display; `stop` is
/// looked at before every frame.
fn stream_frames(
    reader: &mut AudioReader,
    geometry: FrameGeometry,
    separator: &mut Separator,
    writers: &mut StemWriterSet,
    frame_in_work: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<u64, SeparateFileError> {
    let channels = reader.channels();
    let n_stems = separator.stem_count();
    let mut frames = FrameReader::new(geometry, channels);
    let mut overlap_add = OverlapAdd::new(geometry, n_stems * channels);
    let mut ready = vec![vec![0.0f32; geometry.frame_len()]; n_stems * channels];
    let mut total = 0u64;
    while let Some(span) = frames.next_frame(|out, max| reader.read_into(out, max))? {
        if stop.load(Ordering::Relaxed) {
            return Err(SeparateFileError::Stopped);
        }
        frame_in_work.store(span.index as usize, Ordering::Relaxed);
        separator.separate_frame(&frames.frame())?;
        let n = crossfade_frame(separator, &mut overlap_add, span, &mut ready);
        for (stem, channels_out) in ready.chunks(channels).enumerate() {
            let refs: Vec<&[f32]> = channels_out.iter().map(|c| &c[..n]).collect();
            writers.write(stem, &refs)?;
        }
        total = span.start + span.len as u64;
        frame_in_work.store(span.index as usize + 1, Ordering::Relaxed);
    }
    Ok(total)
}

/// Adds the separator's stems for `span` to `overlap_add` and drains what is final into `ready`
/// (stem-major, one vector per stem and channel); returns the samples per channel drained.
fn crossfade_frame(
    separator: &Separator,
    overlap_add: &mut OverlapAdd,
    span: FrameSpan,
    ready: &mut [Vec<f32>],
) -> usize {
    let stems: Vec<&[f32]> = separator
        .stems()
        .iter()
        .flat_map(|stem| stem.iter().map(Vec::as_slice))
        .collect();
    overlap_add.add_frame(span, &stems);
    let mut outs: Vec<&mut [f32]> = ready.iter_mut().map(Vec::as_mut_slice).collect();
    overlap_add.drain_ready_into(&mut outs)
}
