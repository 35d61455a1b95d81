//! A whole file through the engine, streamed and decoded once: read a 5-s frame, separate it,
//! crossfade it into the stems, write what is final, and repeat. Memory stays bounded by a few
//! frames whatever the file's length; the stems appear under their real names only when every
//! one is complete.

use crate::engine::files::audio_file::{AudioError, AudioReader};
use crate::engine::files::decode_damage::DecodeDamage;
use crate::engine::files::stem_format::StemFormat;
use crate::engine::files::stem_writers::StemWriterSet;
use crate::engine::search::separation_error::SeparationError;
use crate::engine::search::separator::Separator;
use crate::engine::signal::frames::{FrameError, FrameGeometry, FrameReader, FrameSpan, OverlapAdd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
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
    /// Frames separated and written so far (the frame in work is this one, from 0).
    pub frames_done: usize,
    /// Frames in the whole file: as its header tells while the job runs (at least the frame in
    /// work), counted in the last report; `None` while the header does not tell.
    pub frames: Option<usize>,
    /// Whole percent of the job done, never lower than in an earlier report of the same job: 100
    /// only in the last report, sent once every stem is written (never for a job that stopped or
    /// failed); `None` while the length is unknown.
    pub percent: Option<u8>,
}

/// Turns readings of a job's counters (frames done, steps of the frame in work) into
/// [`JobProgress`] reports whose percent only rises, whatever the decoder finds.
#[derive(Debug, Clone)]
struct ProgressGauge {
    /// Frames the header promises, if it gives a length.
    frames_expected: Option<usize>,
    /// Search steps per frame (0 when a frame has none, e.g. the NMF expert alone).
    steps_per_frame: usize,
    /// The highest percent reported so far.
    reported: Option<u8>,
}

impl ProgressGauge {
    /// A gauge for `frames_expected` frames of `steps_per_frame` steps each.
    fn new(frames_expected: Option<usize>, steps_per_frame: usize) -> Self {
        ProgressGauge {
            frames_expected,
            steps_per_frame,
            reported: None,
        }
    }

    /// The report for `frames_done` whole frames and `step` steps into the next one. The percent
    /// stays below 100 (a decoder may find more frames than the header said) and never falls
    /// below an earlier report's (a search started again within a frame counts its steps anew).
    fn reading(&mut self, frames_done: usize, step: usize) -> JobProgress {
        let percent = self.frames_expected.map(|expected| {
            let per_frame = self.steps_per_frame.max(1) as u64;
            let step = if self.steps_per_frame == 0 {
                0
            } else {
                step.min(self.steps_per_frame) as u64
            };
            let done = frames_done as u64 * per_frame + step;
            let total = (expected as u64 * per_frame).max(1);
            let percent = (done * 100 / total).min(99) as u8;
            self.reported.map_or(percent, |r| r.max(percent))
        });
        self.reported = percent.or(self.reported);
        JobProgress {
            frames_done,
            frames: self.frames_expected.map(|f| f.max(frames_done + 1)),
            percent,
        }
    }

    /// The last report of a job that wrote all its stems, after `frames` frames.
    fn complete(&self, frames: usize) -> JobProgress {
        JobProgress {
            frames_done: frames,
            frames: Some(frames),
            percent: Some(100),
        }
    }
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
    /// Packets of the input the decoder failed on, replaced by silence of their length.
    pub decode_damage: DecodeDamage,
    /// The input's (and the stems') sample rate in Hz.
    pub sample_rate: u32,
    /// The stems' format.
    pub format: StemFormat,
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
/// a second, and once more with 100 % when every stem is written. Setting `stop` (from any thread, or a signal handler) ends the job within about
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
    let geometry = FrameGeometry::at_rate(
        rate,
        separator.settings().frame_seconds,
        separator.settings().overlap_seconds,
    )
    .map_err(|source| SeparateFileError::Frames {
        path: path.clone(),
        source,
    })?;
    let names: Vec<String> = separator.stem_names().map(str::to_string).collect();
    let mut writers = StemWriterSet::create(out_dir, &names, rate, channels, format)?;
    if let Some(total) = reader.total_frames() {
        // Refuse a file whose stems cannot be written before hours of separation, not after.
        writers.check_length(total)?;
    }
    let frames_expected = reader
        .total_frames()
        .map(|total| geometry.count_for(total) as usize);
    let frames_done = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let progress = separator.progress();
    let cancel = separator.cancel_flag();
    let mut gauge = ProgressGauge::new(frames_expected, separator.steps_per_frame());
    let (total, mut on_progress) = std::thread::scope(|scope| {
        let (progress, frames_done, done, cancel, gauge) =
            (&progress, &frames_done, &done, &cancel, &mut gauge);
        let reporter = scope.spawn(move || {
            let mut on_progress = on_progress;
            while !done.load(Ordering::Acquire) {
                if stop.load(Ordering::Relaxed) {
                    // The separator clears its flag when a frame starts: keep it set.
                    cancel.store(true, Ordering::Relaxed);
                }
                // The steps count toward the frame after `before` only if no frame ended while
                // they were read (a seqlock read: `stream_frames` clears the count, then
                // publishes the frame).
                let before = frames_done.load(Ordering::Acquire);
                let step = progress.iteration();
                fence(Ordering::Acquire);
                let after = frames_done.load(Ordering::Relaxed);
                on_progress(gauge.reading(after, if before == after { step } else { 0 }));
                std::thread::sleep(Duration::from_millis(100));
            }
            on_progress
        });
        let streamed = {
            let _done = SetOnDrop(done);
            stream_frames(&mut reader, geometry, separator, &mut writers, frames_done, stop)
        };
        let on_progress = reporter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (streamed, on_progress)
    });
    let total = total.map_err(|e| {
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
    on_progress(gauge.complete(frames_done.into_inner()));
    Ok(JobSummary {
        audio_seconds: total as f64 / f64::from(rate),
        wall_seconds: started.elapsed().as_secs_f64(),
        outputs,
        clipped_samples,
        decode_damage: reader.damage(),
        sample_rate: rate,
        format,
    })
}

/// Reads, separates, crossfades and writes every frame; returns the samples per channel read.
/// `frames_done` counts the frames written, for the progress display (the separator's step count
/// is cleared before each is published, so a reader never counts a frame twice); `stop` is looked
/// at before every frame.
fn stream_frames(
    reader: &mut AudioReader,
    geometry: FrameGeometry,
    separator: &mut Separator,
    writers: &mut StemWriterSet,
    frames_done: &AtomicUsize,
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
        separator.separate_frame(&frames.frame())?;
        let n = crossfade_frame(separator, &mut overlap_add, span, &mut ready);
        for (stem, channels_out) in ready.chunks(channels).enumerate() {
            let refs: Vec<&[f32]> = channels_out.iter().map(|c| &c[..n]).collect();
            writers.write(stem, &refs)?;
        }
        total = span.start + span.len as u64;
        separator.progress().clear_iteration();
        frames_done.store(span.index as usize + 1, Ordering::Release);
        // Step counts of the next frame are stored after this one (see the reporter's read).
        fence(Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_rises_through_frames_and_stays_below_100_until_complete() {
        let mut gauge = ProgressGauge::new(Some(2), 4);
        let percents: Vec<Option<u8>> = [(0, 0), (0, 2), (0, 4), (1, 0), (1, 3), (1, 4)]
            .into_iter()
            .map(|(frame, step)| gauge.reading(frame, step).percent)
            .collect();
        assert_eq!(
            percents,
            [Some(0), Some(25), Some(50), Some(50), Some(87), Some(99)]
        );
        // The decoder finds more frames than the header said: the percent holds, the frame count grows.
        let more = gauge.reading(2, 1);
        assert_eq!((more.percent, more.frames), (Some(99), Some(3)));
        assert_eq!(gauge.complete(3).percent, Some(100));
    }

    #[test]
    fn a_search_started_again_within_a_frame_does_not_take_the_percent_back() {
        let mut gauge = ProgressGauge::new(Some(4), 10);
        assert_eq!(gauge.reading(1, 8).percent, Some(45));
        assert_eq!(gauge.reading(1, 1).percent, Some(45));
        assert_eq!(gauge.reading(1, 9).percent, Some(47));
    }

    #[test]
    fn without_a_length_there_is_no_percent_and_frames_without_steps_count_whole() {
        let mut unknown = ProgressGauge::new(None, 10);
        let p = unknown.reading(3, 5);
        assert_eq!((p.percent, p.frames, p.frames_done), (None, None, 3));
        let mut no_steps = ProgressGauge::new(Some(4), 0);
        assert_eq!(no_steps.reading(1, 0).percent, Some(25));
        assert_eq!(no_steps.reading(3, 7).percent, Some(75));
    }
}
