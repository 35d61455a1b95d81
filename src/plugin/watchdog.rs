//! How long an offline render waits for its worker: for as long as the worker shows signs of work
//! ([`Status::worker_beats`] moves: turns of its loop, prior loads, search iterations), and
//! [`STALL_LIMIT`] more once they stop. A worker that stops moving (a load stuck on a stalled disk,
//! a runtime stuck in a lock) is then marked stalled and the render stops waiting for it: the rest
//! plays dry at once instead of one long wait per segment, and waiting resumes as soon as the
//! worker moves again. A frame that is merely slow (many iterations) is never cut short.

use super::status::Status;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a worker may show no sign of work before an offline render stops waiting for it.
/// The longest quiet stretch of a healthy worker is one prior's session creation or one search
/// iteration: about a second on this kind of machine, longer the first time a GPU provider starts.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);
/// How often a waiting render looks again.
const POLL: Duration = Duration::from_micros(200);

/// The audio thread's watch on its worker, made in `activate()`.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    /// The worker's beat count when it was found stalled, while it has not moved since.
    stalled_at: Option<u64>,
    /// [`STALL_LIMIT`], or the shorter one a fault-injection test build asks for.
    limit: Duration,
}

impl Watchdog {
    /// A watch with the stall limit (main thread: it may read the environment in a test build).
    pub fn new() -> Self {
        Watchdog {
            stalled_at: None,
            limit: crate::engine::fault::stall_limit(STALL_LIMIT),
        }
    }

    /// False while the worker is known stalled: it has not moved since it was found so.
    pub fn worker_answers(&mut self, status: &Status) -> bool {
        match self.stalled_at {
            Some(beats) if status.worker_beats() == beats => false,
            Some(_) => {
                self.stalled_at = None;
                status.stalled.store(false, Ordering::Relaxed);
                true
            }
            None => true,
        }
    }

    /// Waits until `finished()` (which says whether what is awaited came, or waiting no longer
    /// makes sense) or the worker stalls; returns false on a stall.
    pub fn wait(&mut self, status: &Status, mut finished: impl FnMut() -> bool) -> bool {
        let mut beats = status.worker_beats();
        let mut since = Instant::now();
        loop {
            if finished() {
                return true;
            }
            let now_beats = status.worker_beats();
            if now_beats != beats {
                beats = now_beats;
                since = Instant::now();
            } else if since.elapsed() > self.limit {
                self.stalled_at = Some(beats);
                status.stalled.store(true, Ordering::Relaxed);
                return false;
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Default for Watchdog {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker that stops moving is found stalled after the limit, waiting stops until it moves
    /// again, and a worker that keeps moving is waited for however long it takes.
    #[test]
    fn a_worker_that_stops_moving_is_found_stalled_and_one_that_moves_is_waited_for() {
        let status = Status::default();
        let mut dog = Watchdog {
            stalled_at: None,
            limit: Duration::from_millis(50),
        };
        let started = Instant::now();
        assert!(!dog.wait(&status, || false));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(status.stalled.load(Ordering::Relaxed));
        assert!(!dog.worker_answers(&status));
        status.heartbeat.fetch_add(1, Ordering::Relaxed);
        assert!(dog.worker_answers(&status));
        assert!(!status.stalled.load(Ordering::Relaxed));
        // A worker beating every 10 ms for 200 ms (four limits) is waited for to the end.
        let started = Instant::now();
        let finished = dog.wait(&status, || {
            status.heartbeat.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
            started.elapsed() > Duration::from_millis(200)
        });
        assert!(finished);
    }
}
