//! A whole file through the engine, streamed: read a 5-s frame, separate it, crossfade it into
//! the stems, write what is final, and repeat. Memory stays bounded by a few frames whatever the
//! file's length; the stems appear under their real names only when every one is complete.

use super::audio_file::{AudioError, AudioReader, StemWriterSet};
use super::frames::{FrameError, FramePlan, OverlapAdd};
use super::separator::{SeparationError, Separator};
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
    /// The file ended before the length its header gave.
    #[error("{path}: the header promises {expected} sample frames but the audio ends after {found}")]
    Truncated {
        /// The input file.
        path: PathBuf,
        /// Frames the header announced.
        expected: u64,
        /// Frames actually decoded.
        found: u64,
    },
}

/// Where a running job is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    /// Index of the frame in work, from 0.
    pub frame: usize,
    /// Frames in the whole file.
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
}

impl JobSummary {
    /// Wall time per second of audio: below 1 is faster than real time.
    pub fn real_time_factor(&self) -> f64 {
        self.wall_seconds / self.audio_seconds.max(f64::MIN_POSITIVE)
    }
}

/// Count the sample frames of a file by decoding it once (no storage).
fn count_frames(path: &Path) -> Result<u64, AudioError> {
    let mut reader = AudioReader::open(path)?;
    let mut scratch = vec![Vec::new(); reader.channels()];
    let mut total = 0u64;
    loop {
        for channel in &mut scratch {
            channel.clear();
        }
        let n = reader.read_into(&mut scratch, 65_536)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Separate `input` into `out_dir/<stem>.wav` with `separator` (built for the file's rate and
/// channel count). `on_progress` is called from a helper thread about ten times a second.
pub fn separate_file(
    input: &Path,
    out_dir: &Path,
    separator: &mut Separator,
    on_progress: impl FnMut(JobProgress) + Send,
) -> Result<JobSummary, SeparateFileError> {
    let started = Instant::now();
    let mut reader = AudioReader::open(input)?;
    let (rate, channels) = (reader.sample_rate(), reader.channels());
    if rate != separator.host_rate() || channels != separator.channels() {
        return Err(SeparateFileError::FormatMismatch {
            path: input.to_path_buf(),
            expected_rate: separator.host_rate(),
            expected_channels: separator.channels(),
            found_rate: rate,
            found_channels: channels,
        });
    }
    // Headers can be estimates (VBR MP3) or absent (some OGG): count by decoding, which costs
    // little next to separation and makes the frame plan exact.
    let total = count_frames(input)?;
    if total == 0 {
        return Err(AudioError::Empty {
            path: input.to_path_buf(),
            found: "no sample frames".into(),
        }
        .into());
    }
    let frame_len = separator.frame_len();
    let overlap = (separator.settings().overlap_seconds * f64::from(rate)).round() as usize;
    let plan = FramePlan::new(total as usize, frame_len, overlap.min(frame_len / 2)).map_err(|source| {
        SeparateFileError::Frames {
            path: input.to_path_buf(),
            source,
        }
    })?;
    let n_stems = separator.stem_count();
    let names: Vec<String> = separator.stem_names().map(str::to_string).collect();
    let mut writers = StemWriterSet::create(out_dir, &names, rate, channels)?;
    let mut overlap_add = OverlapAdd::new(plan, n_stems * channels);

    let mut window = vec![vec![0.0f32; frame_len]; channels];
    let mut chunk: Vec<Vec<f32>> = vec![Vec::with_capacity(frame_len); channels];
    let mut ready = vec![vec![0.0f32; frame_len]; n_stems * channels];
    let mut filled = 0usize;
    let mut decoded = 0u64;

    let progress = separator.progress();
    let frame_index = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let iterations = separator.settings().iterations;
    let frames = plan.count();
    std::thread::scope(|scope| {
        let mut on_progress = on_progress;
        let (progress, frame_index, done) = (&progress, &frame_index, &done);
        scope.spawn(move || {
            while !done.load(Ordering::Acquire) {
                on_progress(JobProgress {
                    frame: frame_index.load(Ordering::Relaxed),
                    frames,
                    iteration: progress.iteration().min(iterations),
                    iterations_per_frame: iterations,
                });
                std::thread::sleep(Duration::from_millis(100));
            }
            on_progress(JobProgress {
                frame: frames,
                frames,
                iteration: 0,
                iterations_per_frame: iterations,
            });
        });
        let result = (|| -> Result<(), SeparateFileError> {
            for span in plan.spans() {
                frame_index.store(span.index, Ordering::Relaxed);
                if span.index > 0 {
                    let step = plan.step();
                    for channel in &mut window {
                        channel.copy_within(step.., 0);
                    }
                    filled = filled.saturating_sub(step);
                }
                while filled < span.len {
                    for channel in &mut chunk {
                        channel.clear();
                    }
                    let n = reader.read_into(&mut chunk, span.len - filled)?;
                    if n == 0 {
                        return Err(SeparateFileError::Truncated {
                            path: input.to_path_buf(),
                            expected: total,
                            found: decoded,
                        });
                    }
                    decoded += n as u64;
                    for (w, c) in window.iter_mut().zip(&chunk) {
                        w[filled..filled + n].copy_from_slice(&c[..n]);
                    }
                    filled += n;
                }
                for channel in &mut window {
                    channel[filled..].fill(0.0);
                    for x in channel.iter_mut().filter(|x| !x.is_finite()) {
                        *x = 0.0;
                    }
                }
                let refs: Vec<&[f32]> = window.iter().map(Vec::as_slice).collect();
                separator.separate_frame(&refs)?;
                let stems: Vec<&[f32]> = separator
                    .stems()
                    .iter()
                    .flat_map(|stem| stem.iter().map(Vec::as_slice))
                    .collect();
                overlap_add.add_frame(span, &stems);
                let mut outs: Vec<&mut [f32]> = ready.iter_mut().map(Vec::as_mut_slice).collect();
                let n = overlap_add.drain_ready_into(&mut outs);
                for (stem, channels_out) in ready.chunks(channels).enumerate() {
                    let refs: Vec<&[f32]> = channels_out.iter().map(|c| &c[..n]).collect();
                    writers.write(stem, &refs)?;
                }
            }
            Ok(())
        })();
        done.store(true, Ordering::Release);
        result
    })?;
    let outputs = writers.finish()?;
    Ok(JobSummary {
        audio_seconds: total as f64 / f64::from(rate),
        wall_seconds: started.elapsed().as_secs_f64(),
        outputs,
    })
}
