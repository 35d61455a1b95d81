//! What the host is doing, block by block: whether it renders offline, where its timeline is,
//! and whether it renders faster than real time without saying so.
//!
//! Hosts say "offline" in different ways: CLAP's `render` extension and VST3's
//! `ProcessSetup::processMode` before an activation, and VST3's `ProcessData::processMode` with
//! every block (Ardour's export and bounce freewheel the engine and say `kOffline` only there).
//! The audio thread therefore looks at the mode of every block, and the stream restarts in the
//! new mode when it changes.
//!
//! While the transport plays, frames are anchored to the host's timeline: frame `j` starts at
//! timeline sample `j·S`, so a render of a song that starts at the timeline's zero is framed
//! exactly as `stemflow separate` frames the same audio, whatever pre-roll the host adds. A
//! transport start or a jump restarts the stream there. The position a host reports is where
//! the block is heard; a host that compensates the plugin's latency while it plays (Ardour, in
//! playback and in its export) reads the track that much ahead, so the block's input lies one
//! latency later on the timeline. An activation set up for an offline render is not anchored:
//! such a host starts the render at its first sample and drops the latency from the output
//! itself (Ardour's track bounce, CLAP hosts through the `render` extension), so frames start
//! at the activation's first sample, as the command line's start at the file's.
//!
//! A host that renders faster than real time while reporting real-time processing is caught by
//! the wall clock: a playing transport that delivers [`FAST_WINDOW_SECONDS`] of audio in less
//! than [`FAST_RATIO`] of that time on the wall clock cannot be playing to a sound card, so the
//! stream waits for every segment from then on, until the transport stops or jumps. Real
//! playback is paced by the audio device and never triggers it; a stopped transport never does.

use std::time::{Duration, Instant};

/// Audio per measurement of the host's pace, in seconds.
pub const FAST_WINDOW_SECONDS: f64 = 1.0;
/// A window delivered in less than this fraction of its duration is a render, not playback.
pub const FAST_RATIO: f64 = 0.25;

/// What one block says about the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBlock {
    /// The host renders this block offline (VST3 `kOffline`/`kPrefetch`, CLAP offline render).
    pub offline: bool,
    /// Timeline position of the block's first sample while the transport plays.
    pub timeline: Option<i64>,
    /// Samples in the block.
    pub samples: usize,
}

/// How the stream must change before it processes a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changes.
    Continue,
    /// Start over in `offline` (waiting) or realtime mode; with `timeline`, frames are anchored
    /// to the host's timeline and the block is heard at timeline position `timeline`.
    Restart { offline: bool, timeline: Option<i64> },
    /// The host renders faster than real time in realtime mode: wait for every segment from now
    /// on. `roll_start` is where the transport started, if it plays (see `Stream::fast_render`).
    FastRender { roll_start: Option<i64> },
}

/// Follows the host from block to block (audio thread; no allocation).
#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    /// Mode of the last block, as the host said it.
    host_offline: bool,
    /// The activation was set up for an offline render: every block of it is rendered offline,
    /// whatever mode the block states (Ardour's track bounce sets up offline processing and
    /// marks its blocks realtime), and frames do not follow the host's timeline.
    activated_offline: bool,
    /// Where the timeline should be at the next block, while the transport plays.
    expected: Option<i64>,
    /// The stream is waiting for segments although the host says realtime.
    waiting_detected: bool,
    /// Where the transport reported its first block since it started or jumped.
    roll_start: Option<i64>,
    /// Whether faster-than-realtime detection is on (a parameter).
    detect: bool,
    /// Start of the current pace window on the wall clock, and the audio in it.
    window_start: Option<Instant>,
    window_samples: usize,
    /// Samples per second of the activation.
    sample_rate: f64,
}

impl HostClock {
    /// A clock for an activation in `offline` mode at `sample_rate`.
    pub fn new(offline: bool, sample_rate: f64) -> Self {
        HostClock {
            host_offline: offline,
            activated_offline: offline,
            expected: None,
            waiting_detected: false,
            roll_start: None,
            detect: true,
            window_start: None,
            window_samples: 0,
            sample_rate: sample_rate.max(1.0),
        }
    }

    /// Turns faster-than-realtime detection on or off (read from a parameter every block).
    pub fn set_detection(&mut self, on: bool) {
        self.detect = on;
    }

    /// Forgets where the timeline was (after a host reset), so the next playing block anchors
    /// the stream again.
    pub fn forget_position(&mut self) {
        self.expected = None;
    }

    /// Whether the stream waits for segments in realtime mode because the host was found
    /// rendering faster than real time.
    pub fn waiting_detected(&self) -> bool {
        self.waiting_detected
    }

    /// Looks at `block` (before it is processed) at wall-clock time `now`.
    pub fn observe(&mut self, mut block: HostBlock, now: Instant) -> Transition {
        if self.activated_offline {
            block.offline = true;
            block.timeline = None;
        }
        let mode_changed = block.offline != self.host_offline;
        self.host_offline = block.offline;
        let transition = match (block.timeline, self.expected) {
            // The transport started, or jumped while playing.
            (Some(at), expected) if expected != Some(at) => {
                self.waiting_detected = false;
                Transition::Restart {
                    offline: block.offline,
                    timeline: Some(at),
                }
            }
            // The transport stopped after a render found by the wall clock: back to realtime,
            // so playback with a stopped transport never waits.
            (None, Some(_)) if self.waiting_detected && !block.offline => {
                self.waiting_detected = false;
                Transition::Restart {
                    offline: false,
                    timeline: None,
                }
            }
            _ if mode_changed => {
                self.waiting_detected = false;
                Transition::Restart {
                    offline: block.offline,
                    timeline: block.timeline,
                }
            }
            _ => Transition::Continue,
        };
        self.expected = block.timeline.map(|at| at + block.samples as i64);
        if let Transition::Restart { timeline, .. } = transition {
            self.roll_start = timeline;
        }
        if transition != Transition::Continue {
            self.window_start = Some(now);
            self.window_samples = 0;
        }
        if transition == Transition::Continue && self.render_found(block, now) {
            self.waiting_detected = true;
            return Transition::FastRender {
                roll_start: self.roll_start,
            };
        }
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
        self.window_samples += block.samples;
        transition
    }

    /// Whether the window that ends before `block` shows a render faster than real time (and
    /// starts the next window when one is complete).
    fn render_found(&mut self, block: HostBlock, now: Instant) -> bool {
        if !self.detect || block.offline || block.timeline.is_none() || self.waiting_detected {
            self.window_start = None;
            self.window_samples = 0;
            return false;
        }
        let audio = self.window_samples as f64 / self.sample_rate;
        let Some(start) = self.window_start else {
            return false;
        };
        if audio < FAST_WINDOW_SECONDS {
            return false;
        }
        let wall = now.saturating_duration_since(start);
        self.window_start = Some(now);
        self.window_samples = 0;
        wall < Duration::from_secs_f64(audio * FAST_RATIO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 48_000.0;

    fn playing(at: i64, samples: usize) -> HostBlock {
        HostBlock {
            offline: false,
            timeline: Some(at),
            samples,
        }
    }

    #[test]
    fn a_per_block_offline_mode_restarts_the_stream_in_that_mode() {
        let mut clock = HostClock::new(false, RATE);
        let now = Instant::now();
        let stopped = HostBlock {
            offline: false,
            timeline: None,
            samples: 512,
        };
        assert_eq!(clock.observe(stopped, now), Transition::Continue);
        let render = HostBlock {
            offline: true,
            ..stopped
        };
        assert_eq!(
            clock.observe(render, now),
            Transition::Restart {
                offline: true,
                timeline: None
            }
        );
        assert_eq!(clock.observe(render, now), Transition::Continue);
        assert_eq!(
            clock.observe(stopped, now),
            Transition::Restart {
                offline: false,
                timeline: None
            }
        );
    }

    #[test]
    fn a_transport_start_and_a_jump_anchor_the_stream_to_the_timeline() {
        let mut clock = HostClock::new(false, RATE);
        let now = Instant::now();
        let first = HostBlock {
            offline: true,
            timeline: Some(-1_000),
            samples: 256,
        };
        assert_eq!(
            clock.observe(first, now),
            Transition::Restart {
                offline: true,
                timeline: Some(-1_000)
            }
        );
        let next = HostBlock {
            timeline: Some(-744),
            ..first
        };
        assert_eq!(clock.observe(next, now), Transition::Continue);
        let jumped = HostBlock {
            timeline: Some(96_000),
            ..first
        };
        assert_eq!(
            clock.observe(jumped, now),
            Transition::Restart {
                offline: true,
                timeline: Some(96_000)
            }
        );
    }

    #[test]
    fn an_offline_activation_frames_from_its_first_sample_whatever_the_timeline() {
        let mut clock = HostClock::new(true, RATE);
        let now = Instant::now();
        // Ardour's bounce: set up offline, blocks marked realtime by the plugin's caller turned
        // offline, the transport "playing" from the region's start.
        for i in 0..10 {
            let block = HostBlock {
                offline: true,
                timeline: Some(i * 8192),
                samples: 8192,
            };
            assert_eq!(clock.observe(block, now), Transition::Continue);
        }
    }

    #[test]
    fn playback_paced_by_the_wall_clock_never_waits() {
        let mut clock = HostClock::new(false, RATE);
        let start = Instant::now();
        let block = 480usize;
        for i in 0..500 {
            let at = (i * block) as i64;
            let now = start + Duration::from_secs_f64(at as f64 / RATE);
            let t = clock.observe(playing(at, block), now);
            assert!(i == 0 || t == Transition::Continue, "block {i}: {t:?}");
        }
        assert!(!clock.waiting_detected());
    }

    #[test]
    fn a_render_faster_than_real_time_waits_after_one_window_until_the_transport_stops() {
        let mut clock = HostClock::new(false, RATE);
        let start = Instant::now();
        let block = 480usize;
        let mut waited_at = None;
        for i in 0..200 {
            let at = (i * block) as i64;
            // Ten times faster than real time.
            let now = start + Duration::from_secs_f64(at as f64 / RATE / 10.0);
            if let Transition::FastRender { roll_start } = clock.observe(playing(at, block), now) {
                assert_eq!(roll_start, Some(0));
                waited_at = Some(at);
                break;
            }
        }
        let at = waited_at.expect("the render was found");
        assert!(at as f64 / RATE <= FAST_WINDOW_SECONDS + 0.02, "found at {at}");
        assert!(clock.waiting_detected());
        let stopped = HostBlock {
            offline: false,
            timeline: None,
            samples: block,
        };
        assert_eq!(
            clock.observe(stopped, start),
            Transition::Restart {
                offline: false,
                timeline: None
            }
        );
        assert!(!clock.waiting_detected());
    }

    #[test]
    fn detection_off_or_a_stopped_transport_never_waits() {
        let start = Instant::now();
        for (detect, timeline) in [(false, true), (true, false)] {
            let mut clock = HostClock::new(false, RATE);
            clock.set_detection(detect);
            for i in 0..400 {
                let at = (i * 480) as i64;
                let block = HostBlock {
                    offline: false,
                    timeline: timeline.then_some(at),
                    samples: 480,
                };
                let t = clock.observe(block, start);
                assert!(!matches!(t, Transition::FastRender { .. }), "{t:?}");
            }
        }
    }
}
