//! How `separate` shows where it is: two bars for people (the batch's tracks, and the frames of
//! the track in work), one JSON object per line for programs (`--json`), or nothing (`--quiet`).

use super::batch_report::TrackReport;
use crate::engine::files::separate_file::JobProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::Write;
use std::sync::Mutex;

/// Which display a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Progress bars on the terminal and a line per finished track.
    Bars,
    /// JSON lines on standard output, nothing else there.
    Json,
    /// Nothing but errors.
    Quiet,
}

/// The display of one run of `tracks` tracks.
pub struct RunProgress {
    /// Which display.
    mode: ProgressMode,
    /// Holds both bars so they redraw together.
    bars: MultiProgress,
    /// Tracks done of the run (hidden for one track).
    batch: ProgressBar,
    /// Tracks in the run.
    tracks: usize,
}

/// Writes one JSON line to standard output and flushes it, so a reader sees it at once.
fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

impl RunProgress {
    /// A display for a run of `tracks` tracks.
    pub fn new(mode: ProgressMode, tracks: usize) -> Self {
        let bars = MultiProgress::with_draw_target(match mode {
            ProgressMode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        let batch = if tracks > 1 {
            bars.add(ProgressBar::new(tracks as u64))
        } else {
            ProgressBar::hidden()
        };
        batch.set_style(
            ProgressStyle::with_template("tracks {pos}/{len} [{bar:30}] elapsed {elapsed} eta {eta}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        RunProgress {
            mode,
            bars,
            batch,
            tracks,
        }
    }

    /// A line for people (above the bars), unless quiet or JSON.
    pub fn say(&self, line: &str) {
        if self.mode == ProgressMode::Bars {
            // Bars are not drawn when stderr is not a terminal, and then neither is `println`.
            if self.bars.is_hidden() {
                println!("{line}");
            } else {
                let _ = self.bars.println(line);
            }
        }
    }

    /// Track `index` (from 0) starts.
    pub fn track_started(&self, index: usize, input: &str, output: &str) {
        match self.mode {
            ProgressMode::Bars => self.batch.set_message(input.to_string()),
            ProgressMode::Json => emit(json!({
                "event": "track",
                "index": index + 1,
                "tracks": self.tracks,
                "input": input,
                "output": output,
            })),
            ProgressMode::Quiet => {}
        }
    }

    /// A bar for the frames of the track in work; dropped when it ends.
    pub fn track_bar(&self, index: usize) -> TrackProgress {
        let bar = if self.mode == ProgressMode::Bars {
            self.bars.add(ProgressBar::new(0))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} frame {msg} [{bar:30}] {percent:>3}% eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        TrackProgress {
            mode: self.mode,
            bar,
            index,
            last_sent: Mutex::new(None),
        }
    }

    /// Track `report` is done (separated, skipped or failed).
    pub fn track_finished(&self, report: &TrackReport) {
        self.batch.inc(1);
        if self.mode == ProgressMode::Json {
            emit(json!({ "event": "done", "track": report }));
        }
    }

    /// The run is over: the bars go, and JSON readers get the counts.
    pub fn finish(&self, separated: usize, skipped: usize, failed: usize) {
        self.batch.finish_and_clear();
        if self.mode == ProgressMode::Json {
            emit(json!({
                "event": "summary",
                "tracks": self.tracks,
                "separated": separated,
                "skipped": skipped,
                "failed": failed,
            }));
        }
    }
}

/// The display of one track's frames.
pub struct TrackProgress {
    /// Which display.
    mode: ProgressMode,
    /// The frames bar in percent (hidden unless bars).
    bar: ProgressBar,
    /// The track's index in the run, from 0.
    index: usize,
    /// The frame and percent last sent as JSON (`None` before the first), so lines go out only
    /// when one changes.
    last_sent: Mutex<Option<(usize, Option<u8>)>>,
}

impl TrackProgress {
    /// Where the track's job is now.
    pub fn update(&self, p: JobProgress) {
        let frame = p.frames.map_or(p.frames_done + 1, |n| (p.frames_done + 1).min(n));
        match p.percent {
            Some(percent) => {
                self.bar.set_length(100);
                self.bar.set_position(u64::from(percent));
            }
            None => self.bar.unset_length(),
        }
        self.bar.set_message(match p.frames {
            Some(n) => format!("{frame}/{n}"),
            None => format!("{frame}/?"),
        });
        if self.mode == ProgressMode::Json {
            let key = (frame, p.percent);
            let mut last = self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
            if *last != Some(key) {
                *last = Some(key);
                emit(json!({
                    "event": "progress",
                    "index": self.index + 1,
                    "frame": frame,
                    "frames": p.frames,
                    "percent": p.percent,
                }));
            }
        }
    }
}

impl Drop for TrackProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
