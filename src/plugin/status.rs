//! What the worker and the audio thread tell the editor: atomics only on the audio thread's side;
//! the few strings (why priors are not loaded, which stem feeds which slot) are written by the
//! worker and read by the editor, never touched by the audio thread.

use super::slots::SLOT_COUNT;
use crate::engine::search::latent_search::Progress;
use atomic_float::AtomicF32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where the worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WorkerState {
    /// Not activated yet.
    Idle = 0,
    /// Loading the runtime and priors.
    Loading = 1,
    /// Priors loaded; separating.
    Ready = 2,
    /// The runtime or every prior failed to load: the plugin passes audio through.
    Failed = 3,
}

impl WorkerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => WorkerState::Loading,
            2 => WorkerState::Ready,
            3 => WorkerState::Failed,
            _ => WorkerState::Idle,
        }
    }
}

/// Status shared by the worker, the audio thread and the editor.
pub struct Status {
    state: AtomicU8,
    /// Device the sessions run on (0 CPU, 1 CUDA, 2 DirectML).
    pub backend: AtomicU8,
    /// Set by the audio thread while it plays the dry fallback because a segment was late.
    pub behind: AtomicBool,
    /// Segments the audio thread had to play dry since activation.
    pub late_segments: AtomicUsize,
    /// Worker wall time per frame / audio time per hop (below the processing allowance over the
    /// hop keeps up).
    pub real_time_factor: AtomicF32,
    /// Progress of the frame in work, 0..1.
    pub progress: AtomicF32,
    /// Frames separated since activation.
    pub frames_done: AtomicUsize,
    /// Set by the worker while it separates a frame, so the editor can tell work from waiting.
    pub separating: AtomicBool,
    /// Index of the frame the worker separates (or separated last), counted from the first
    /// processed sample, for the editor's progress line.
    pub frame_index: AtomicU64,
    /// The plugin's reported latency in seconds (set at activation), so the editor can say when
    /// separated audio starts coming out.
    pub latency_seconds: AtomicF32,
    /// The worker's time per frame within that latency (set at activation), so the editor can
    /// say what keeping up takes.
    pub allowance_seconds: AtomicF32,
    /// Stems the loaded priors give (0 until they are loaded), for the dry fallback's shares.
    pub stem_count: AtomicUsize,
    /// Output slot of each stem.
    pub stem_slots: [AtomicUsize; SLOT_COUNT],
    /// Peak level per output slot (linear, decaying), written by the audio thread. It measures
    /// the slot's own output, which the strip's gain, mute and solo do not change (they shape
    /// only the main mix).
    pub meters: [AtomicF32; SLOT_COUNT],
    /// Peak level of the main output (linear, decaying): the mix after gains, mutes and solos.
    pub main_meter: AtomicF32,
    /// Level history of the main output: a ring of peaks, one per [`HISTORY_STEP_SECONDS`].
    pub history: [AtomicF32; HISTORY],
    /// Level history of each slot's output, written with `history` at the same positions.
    pub stem_history: [[AtomicF32; HISTORY]; SLOT_COUNT],
    /// Next write position in `history` and `stem_history` (counts up; taken modulo
    /// [`HISTORY`]).
    pub history_pos: AtomicUsize,
    /// Worker ↔ editor only: a line saying what is loaded or why not.
    pub message: Mutex<String>,
    /// Iteration counters of the frame in work: every separator the worker builds records into
    /// this one (the editor's progress line; its beats feed [`Status::worker_beats`]).
    pub frame_progress: Arc<Progress>,
    /// Counts the worker's turns and prior loads, so [`Status::worker_beats`] moves while it loads
    /// or waits, not only while it searches.
    pub heartbeat: AtomicU64,
    /// Set by the audio thread when an offline render gave up waiting for a worker that showed
    /// no sign of work for the stall limit (the render then plays dry); cleared when the worker
    /// moves again.
    pub stalled: AtomicBool,
    /// Set by the audio thread while the stream renders offline (waits for every frame).
    pub rendering_offline: AtomicBool,
    /// Set by the audio thread while the host renders faster than real time without saying so
    /// (the stream then waits for every segment; see `host_clock.rs`).
    pub render_detected: AtomicBool,
    /// Worker ↔ editor only: the stem feeding each slot.
    pub slot_stems: Mutex<[String; SLOT_COUNT]>,
}

/// Entries in the level histories.
pub const HISTORY: usize = 160;
/// Audio time each history entry covers: [`HISTORY`] entries show the last 8 s.
pub const HISTORY_STEP_SECONDS: f32 = 0.05;

impl Default for Status {
    fn default() -> Self {
        Status {
            state: AtomicU8::new(WorkerState::Idle as u8),
            backend: AtomicU8::new(0),
            behind: AtomicBool::new(false),
            late_segments: AtomicUsize::new(0),
            real_time_factor: AtomicF32::new(0.0),
            progress: AtomicF32::new(0.0),
            frames_done: AtomicUsize::new(0),
            separating: AtomicBool::new(false),
            frame_index: AtomicU64::new(0),
            latency_seconds: AtomicF32::new(0.0),
            allowance_seconds: AtomicF32::new(0.0),
            stem_count: AtomicUsize::new(0),
            stem_slots: std::array::from_fn(|_| AtomicUsize::new(0)),
            meters: std::array::from_fn(|_| AtomicF32::new(0.0)),
            main_meter: AtomicF32::new(0.0),
            history: std::array::from_fn(|_| AtomicF32::new(0.0)),
            stem_history: std::array::from_fn(|_| std::array::from_fn(|_| AtomicF32::new(0.0))),
            history_pos: AtomicUsize::new(0),
            message: Mutex::new("not active yet".to_string()),
            frame_progress: Arc::new(Progress::new()),
            heartbeat: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            rendering_offline: AtomicBool::new(false),
            render_detected: AtomicBool::new(false),
            slot_stems: Mutex::new(std::array::from_fn(|_| String::new())),
        }
    }
}

impl Status {
    /// The worker's state.
    pub fn state(&self) -> WorkerState {
        WorkerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Sets the worker's state.
    pub fn set_state(&self, state: WorkerState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Replaces the status line (worker or main thread only).
    pub fn set_message(&self, message: impl Into<String>) {
        let mut m = self.message.lock().unwrap_or_else(|p| p.into_inner());
        *m = message.into();
    }

    /// A count that grows while the worker does anything (turns of its loop, prior loads, search
    /// iterations); read lock-free by the audio thread's watchdog.
    pub fn worker_beats(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed) + self.frame_progress.beats()
    }

    /// The status line (editor).
    pub fn message(&self) -> String {
        self.message.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
