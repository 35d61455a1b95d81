//! The worker thread: owns the ONNX Runtime sessions (priors) and a [`Separator`], takes full
//! input frames from the audio thread's queue, separates them, crossfades each frame with the
//! previous one through the engine's [`OverlapAdd`] (the command line's), and hands finished
//! segments back.
//!
//! Loading happens here, never on the audio or main thread. In realtime mode a worker that falls
//! behind separates only the newest waiting frame (older ones are dropped: the audio thread plays
//! them dry); in offline mode every frame is separated in order.

use super::locate::{self, Lookup};
use super::params::StemflowParams;
use super::queues::{Fate, InputFrame, Link, Segment, SEGMENTS};
use super::slots::{assign_slots, SLOT_COUNT, SLOT_NAMES};
use super::status::{Status, WorkerState};
use crate::engine::priors::catalog::{default_search_dirs, installed_search_dirs, PriorCatalog};
use crate::engine::priors::domain::Domain;
use crate::engine::priors::prior::Prior;
use crate::engine::priors::runtime::{fallback_reason, Device, Runtime, RuntimeOptions, SessionOptions};
use crate::engine::search::separator::Separator;
use crate::engine::search::settings::SeparationSettings;
use crate::engine::search::stream_framing::Framing;
use crate::engine::signal::frames::{FrameSpan, OverlapAdd};
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use nice_plug::prelude::{nice_error, nice_log, nice_warn};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Why the runtime and priors were not loaded.
enum LoadError {
    /// The plugin detached or is shutting down: stop now, load again at the next activation.
    Interrupted,
    /// Nothing usable was found: the reason, for the status line.
    Failed(String),
}

/// How long a worker with nothing to do sleeps at most while attached. Queued frames and commands
/// wake it at once; this only bounds how late it sees a change of parameters.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// How long destroying the plugin waits for the worker to stop. A healthy worker stops within one
/// search iteration or one prior's load; one stuck longer (in a read from a stalled disk, say) is
/// left behind, with its module kept loaded, rather than hanging the host's main thread.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// What the plugin (main thread) tells its worker.
pub enum Command {
    /// A new activation: separate frames from this link.
    Attach(Arc<Link>),
    /// The activation ended.
    Detach,
    /// The plugin is being destroyed.
    Shutdown,
}

/// How the plugin stops the worker's current work at once: a count of stop requests (Detach and
/// Shutdown sent) and the cancel flag every separator of this worker polls. The worker clears the
/// flag, then compares the count with the stop commands it has handled, before each frame and
/// between prior loads; the plugin counts, then sets the flag. Whatever the interleaving, a stop
/// request is seen by the next check or by the search's next iteration.
#[derive(Default)]
struct StopSignal {
    /// Detach and Shutdown commands sent so far.
    requests: AtomicU64,
    /// Polled by the search in every iteration.
    cancel: Arc<AtomicBool>,
}

impl StopSignal {
    /// Main thread: ask whatever runs to stop.
    fn request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Worker: true if a stop was requested that the worker has not handled yet (`handled` stop
    /// commands so far); otherwise clears the cancel flag for the work about to start.
    fn pending(&self, handled: u64) -> bool {
        self.cancel.store(false, Ordering::SeqCst);
        if self.requests.load(Ordering::SeqCst) != handled {
            self.cancel.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }
}

/// The plugin's handle on its worker thread.
pub struct WorkerHandle {
    commands: Sender<Command>,
    /// Stops the worker's current load or frame when the plugin detaches or shuts it down.
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the worker thread ends (its sender is dropped with the worker), so
    /// destroying the plugin can wait for it with a deadline.
    exited: Receiver<()>,
}

impl WorkerHandle {
    /// Starts the worker; `beside` are the folders holding the bundle's runtime and priors.
    pub fn spawn(params: Arc<StemflowParams>, status: Arc<Status>, beside: Vec<PathBuf>) -> Option<Self> {
        let (tx, rx) = crossbeam::channel::unbounded();
        let (exit_guard, exited) = crossbeam::channel::bounded(0);
        let stop = Arc::new(StopSignal::default());
        let worker = Worker {
            _exit_guard: exit_guard,
            params,
            status,
            beside,
            lookup: locate::lookup(),
            stop: Arc::clone(&stop),
            stops_handled: 0,
            commands: rx,
            link: None,
            segments_made: 0,
            priors: None,
            separator: None,
            slot_of_stem: Vec::new(),
            loaded_device: None,
            attempted_device: None,
            crossfade: None,
            not_built: None,
            tally: FrameTally::default(),
        };
        let thread = std::thread::Builder::new()
            .name("stemflow-worker".into())
            .spawn(move || worker.run())
            .ok()?;
        Some(WorkerHandle {
            commands: tx,
            stop,
            thread: Some(thread),
            exited,
        })
    }

    /// Sends a command (never blocks: the channel is unbounded and used off the audio thread)
    /// and wakes the worker if it sleeps.
    pub fn send(&self, command: Command) {
        if matches!(command, Command::Detach | Command::Shutdown) {
            self.stop.request();
        }
        let _ = self.commands.send(command);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }

    /// The worker thread, for waking it when there is work.
    pub fn thread(&self) -> Option<Thread> {
        self.thread.as_ref().map(|t| t.thread().clone())
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.send(Command::Shutdown);
        let Some(thread) = self.thread.take() else { return };
        match self.exited.recv_timeout(SHUTDOWN_WAIT) {
            Err(RecvTimeoutError::Timeout) => {
                let kept = locate::keep_own_module_loaded();
                nice_error!(
                    "Stemflow: the separation worker did not stop within {} s (stuck in a load or a frame); left behind{}",
                    SHUTDOWN_WAIT.as_secs(),
                    if kept { ", the plugin's code kept loaded" } else { "" }
                );
            }
            _ => {
                let _ = thread.join();
            }
        }
    }
}

/// The crossfade of the stream being separated: the engine's overlap-add over every stem and
/// channel, and the stream epoch its pending tail belongs to.
struct Crossfade {
    /// Holds the previous frame's faded-out tail until the next frame is added.
    overlap_add: OverlapAdd,
    /// Epoch of the frames added; a frame of another epoch starts afresh.
    epoch: Option<u64>,
}

struct Worker {
    /// Dropped with the worker, which tells [`WorkerHandle`]'s drop that the thread ended.
    _exit_guard: Sender<()>,
    params: Arc<StemflowParams>,
    status: Arc<Status>,
    beside: Vec<PathBuf>,
    /// Whether the runtime and priors are looked for as an installed plugin or as a program.
    lookup: Lookup,
    /// Stop requests from the plugin (see [`StopSignal`]).
    stop: Arc<StopSignal>,
    /// Detach and Shutdown commands handled so far.
    stops_handled: u64,
    commands: Receiver<Command>,
    link: Option<Arc<Link>>,
    /// Segments allocated for the current link.
    segments_made: usize,
    /// Loaded priors while no separator holds them.
    priors: Option<Vec<Prior>>,
    separator: Option<Separator>,
    /// Output slot of each separator stem.
    slot_of_stem: Vec<usize>,
    /// Device the loaded priors were asked for.
    loaded_device: Option<Device>,
    /// Device of the last load attempt (a failed load is not retried until something changes).
    attempted_device: Option<Device>,
    /// The crossfade for the current separator's format (made with it).
    crossfade: Option<Crossfade>,
    /// Settings, rate and channels the loaded priors could not be built into a separator with:
    /// not tried again until one of them changes.
    not_built: Option<BuildKey>,
    /// How the current activation's frames went, for the line logged when it ends.
    tally: FrameTally,
}

/// Frames separated during one activation and how long they took against the hop, so the host's
/// log says at the end whether the worker kept up.
#[derive(Debug, Default, Clone, Copy)]
struct FrameTally {
    /// Frames separated.
    frames: usize,
    /// Frames the separator failed on (played dry); their time counts in the factors too.
    failed: usize,
    /// Sum of the frames' real-time factors (wall time / hop).
    rtf_sum: f64,
    /// The slowest frame's real-time factor.
    rtf_worst: f64,
}

impl FrameTally {
    /// Counts one frame of real-time factor `rtf`, separated or (`ok` false) failed.
    fn add(&mut self, rtf: f64, ok: bool) {
        if ok {
            self.frames += 1;
        } else {
            self.failed += 1;
        }
        self.rtf_sum += rtf;
        self.rtf_worst = self.rtf_worst.max(rtf);
    }

    /// The log line for an activation of `framing` that ends with `late_segments` played dry.
    fn summary(&self, offline: bool, framing: &Framing, late_segments: usize) -> String {
        format!(
            "Stemflow: {} activation ended: {} frames separated, {} failed (played dry), {} segments played dry (late), worker real-time factor mean {:.3} worst {:.3} (below {:.3}, the processing allowance over the hop, keeps up)",
            if offline { "offline" } else { "realtime" },
            self.frames,
            self.failed,
            late_segments,
            self.rtf_sum / (self.frames + self.failed).max(1) as f64,
            self.rtf_worst,
            framing.allowance as f64 / framing.step.max(1) as f64
        )
    }
}

impl Worker {
    /// The worker's life: commands, loading, and one frame at a time, until shutdown. A panic
    /// anywhere in loading or separating is caught here: it is reported on the status line and
    /// in the host's log, the plugin passes audio through (so an offline bounce stops waiting),
    /// and the worker goes on serving commands; the next activation tries again.
    fn run(mut self) {
        loop {
            let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.turn()));
            match turn {
                Ok(true) => {}
                Ok(false) => return,
                Err(panic) => self.recover(panic.as_ref()),
            }
        }
    }

    /// One turn of the loop: pending commands, loading, at most one frame, then a short wait
    /// (or, with nothing attached, a wait for the next command). False on shutdown.
    fn turn(&mut self) -> bool {
        self.status.heartbeat.fetch_add(1, Ordering::Relaxed);
        if super::audio_panic::take_report() {
            let message = "an internal error on the audio thread: that block's outputs were silenced";
            nice_error!("Stemflow: {message}");
            self.status.set_message(message);
        }
        #[cfg(test)]
        if tests::PANIC_NEXT_TURN.swap(false, Ordering::Relaxed) {
            panic!("injected by a test");
        }
        while let Ok(command) = self.commands.try_recv() {
            if !self.handle(command) {
                return false;
            }
        }
        self.ensure_loaded();
        self.ensure_separator();
        if self.step() {
            return true;
        }
        if self.link.is_some() {
            // Attached but idle: a queued frame or a command wakes the thread (the next turn
            // reads the commands).
            std::thread::park_timeout(IDLE_WAIT);
            return true;
        }
        // Nothing to separate: sleep until the plugin says something.
        match self.commands.recv() {
            Ok(command) => self.handle(command),
            Err(_) => false,
        }
    }

    /// After a caught panic: drop everything that may be half-updated, say why on the status
    /// line and in the host's log, and pass audio through until the next activation.
    fn recover(&mut self, panic: &(dyn std::any::Any + Send)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "an internal error".into());
        let message = format!(
            "the separation worker stopped ({what}); passing audio through until the plugin is re-activated"
        );
        nice_error!("Stemflow: {message}");
        self.separator = None;
        self.priors = None;
        self.not_built = None;
        self.crossfade = None;
        self.loaded_device = None;
        self.attempted_device = Some(self.params.device());
        self.status.stem_count.store(0, Ordering::Release);
        self.status.separating.store(false, Ordering::Release);
        self.status.set_message(message);
        self.status.set_state(WorkerState::Failed);
    }

    /// Applies a command; false on shutdown.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Attach(link) => {
                self.link = Some(link);
                self.not_built = None;
                self.segments_made = 0;
                self.tally = FrameTally::default();
                self.forget_tail();
                self.status.late_segments.store(0, Ordering::Relaxed);
                self.status.frames_done.store(0, Ordering::Relaxed);
                if self.status.state() == WorkerState::Failed {
                    // Try again: the user may have installed what was missing.
                    self.attempted_device = None;
                }
                true
            }
            Command::Detach => {
                self.stops_handled += 1;
                if let Some(link) = self.link.take() {
                    link.closed.store(true, Ordering::Release);
                    if self.tally.frames > 0 {
                        let late = self.status.late_segments.load(Ordering::Relaxed);
                        nice_log!("{}", self.tally.summary(link.is_offline(), &link.framing, late));
                    }
                }
                true
            }
            Command::Shutdown => {
                self.stops_handled += 1;
                false
            }
        }
    }

    /// Loads the runtime and the priors for the device the parameters ask for.
    fn ensure_loaded(&mut self) {
        if self.link.is_none() {
            return;
        }
        let device = self.params.device();
        if self.loaded_device == Some(device) || self.attempted_device == Some(device) {
            return;
        }
        self.attempted_device = Some(device);
        self.status.set_state(WorkerState::Loading);
        self.status.set_message(format!("loading priors on {device}…"));
        // Give the sessions back before making new ones.
        self.separator = None;
        self.priors = None;
        self.not_built = None;
        self.loaded_device = None;
        match self.load(device) {
            Ok((priors, slots, message)) => {
                let backend = priors.first().map(Prior::backend).unwrap_or(Device::Cpu);
                self.status.backend.store(backend as u8, Ordering::Relaxed);
                let mut names: [String; SLOT_COUNT] = std::array::from_fn(|_| String::new());
                for (prior, &slot) in priors.iter().zip(&slots) {
                    names[slot] = prior.stem().to_string();
                }
                *self.status.slot_stems.lock().unwrap_or_else(|p| p.into_inner()) = names;
                for (at, &slot) in self.status.stem_slots.iter().zip(&slots) {
                    at.store(slot, Ordering::Relaxed);
                }
                self.status
                    .stem_count
                    .store(priors.len().min(SLOT_COUNT), Ordering::Release);
                self.priors = Some(priors);
                self.slot_of_stem = slots;
                self.loaded_device = Some(device);
                nice_log!("Stemflow: {message}");
                self.status.set_message(message);
                self.status.set_state(WorkerState::Ready);
            }
            Err(LoadError::Interrupted) => {
                self.attempted_device = None;
                self.status
                    .set_message("loading interrupted; it starts again at the next activation");
            }
            Err(LoadError::Failed(reason)) => {
                self.status.stem_count.store(0, Ordering::Release);
                nice_warn!("Stemflow passes audio through: {reason}");
                self.status.set_message(reason);
                self.status.set_state(WorkerState::Failed);
            }
        }
    }

    /// The runtime and every prior that fits a slot, in catalog order (the CLI's order).
    fn load(&self, device: Device) -> Result<(Vec<Prior>, Vec<usize>, String), LoadError> {
        let program = self.lookup == Lookup::Program;
        let runtime = Runtime::load(&RuntimeOptions {
            library: None,
            beside: self.beside.clone(),
            only_beside: !program,
            gpu_build: device == Device::Cuda,
        })
        .map_err(|e| LoadError::Failed(e.to_string()))?;
        let dirs = if program {
            default_search_dirs(None, &self.beside)
        } else {
            installed_search_dirs(&self.beside)
        };
        let catalog = PriorCatalog::discover(&dirs);
        if catalog.entries().is_empty() {
            let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(LoadError::Failed(format!(
                "no priors found (searched {})",
                searched.join(", ")
            )));
        }
        let slots = assign_slots(&catalog.stems());
        let options = SessionOptions { device, threads: 1 };
        let mut priors = Vec::new();
        let mut prior_slots = Vec::new();
        let mut problems = Vec::new();
        for (entry, slot) in catalog.entries().iter().zip(slots) {
            let Some(slot) = slot else {
                problems.push(format!("{}: no free output slot", entry.stem));
                continue;
            };
            if self.stop.pending(self.stops_handled) {
                return Err(LoadError::Interrupted);
            }
            self.status.heartbeat.fetch_add(1, Ordering::Relaxed);
            match Prior::load(&runtime, &entry.dir, &options) {
                Ok(prior) => {
                    priors.push(prior);
                    prior_slots.push(slot);
                }
                Err(e) => problems.push(format!("{}: {e}", entry.stem)),
            }
        }
        // One separator runs priors of one domain: beside spectrogram priors, time-domain ones
        // are left out (named); time-domain priors alone run with the Langevin separators (Adam
        // refuses them with the separator's error).
        if priors.iter().any(|p| p.domain() == Domain::Spectrogram) {
            let mut kept = (Vec::new(), Vec::new());
            for (prior, slot) in priors.into_iter().zip(prior_slots) {
                if prior.domain() == Domain::Waveform {
                    problems.push(format!(
                        "{}: a time-domain (waveform) prior, not used beside spectrogram priors",
                        prior.stem()
                    ));
                } else {
                    kept.0.push(prior);
                    kept.1.push(slot);
                }
            }
            (priors, prior_slots) = kept;
        }
        if priors.is_empty() {
            return Err(LoadError::Failed(format!(
                "no prior could be loaded: {}",
                problems.join("; ")
            )));
        }
        let loaded: Vec<String> = priors
            .iter()
            .zip(&prior_slots)
            .map(|(p, &s)| {
                if SLOT_NAMES[s].eq_ignore_ascii_case(p.stem()) {
                    p.stem().to_string()
                } else {
                    format!("{} on {}", p.stem(), SLOT_NAMES[s])
                }
            })
            .collect();
        let mut message = format!(
            "{} priors loaded ({}); ONNX Runtime {} ({})",
            priors.len(),
            loaded.join(", "),
            runtime.version(),
            runtime.source()
        );
        if let Some(reason) = priors
            .iter()
            .any(|p| p.backend() != device)
            .then(|| fallback_reason(device))
            .flatten()
        {
            message.push_str(&format!(
                "; {device} is not available: {reason}; running on the CPU"
            ));
        }
        if !problems.is_empty() {
            message.push_str(&format!("; skipped: {}", problems.join("; ")));
        }
        Ok((priors, prior_slots, message))
    }

    /// Builds (or rebuilds, when the rate, channels or settings changed) the separator. Settings
    /// the loaded priors cannot separate with (a separator they have no graphs for) leave the
    /// worker passing audio through with the priors kept, until the settings change again.
    fn ensure_separator(&mut self) {
        let Some(link) = self.link.clone() else { return };
        let settings: SeparationSettings = self.params.settings(link.is_offline());
        let wanted = BuildKey {
            settings,
            rate: link.sample_rate,
            channels: link.channels,
        };
        if let Some(sep) = &self.separator {
            if sep.host_rate() == link.sample_rate
                && sep.channels() == link.channels
                && *sep.settings() == settings
            {
                return;
            }
        }
        if self.not_built == Some(wanted) {
            return;
        }
        let priors = match (self.separator.take(), self.priors.take()) {
            (Some(sep), _) => sep.into_priors(),
            (None, Some(priors)) => priors,
            (None, None) => return,
        };
        match Separator::new_or_return(priors, settings, link.sample_rate, link.channels) {
            Ok(mut sep) => {
                sep.set_cancel_flag(Arc::clone(&self.stop.cancel));
                sep.set_progress(Arc::clone(&self.status.frame_progress));
                let channels = sep.stem_count().min(SLOT_COUNT) * link.channels;
                let geometry = link.framing.geometry;
                // A change of settings alone keeps the pending tail, so the next frame still
                // crossfades with the last one (no glitch at the change).
                let same_shape = self.crossfade.as_ref().is_some_and(|c| {
                    *c.overlap_add.geometry() == geometry && c.overlap_add.channels() == channels
                });
                if !same_shape {
                    self.crossfade = Some(Crossfade {
                        overlap_add: OverlapAdd::new(geometry, channels),
                        epoch: None,
                    });
                }
                self.separator = Some(sep);
                if self.not_built.take().is_some() {
                    self.status.set_message("separating again with the new settings");
                    self.status.set_state(WorkerState::Ready);
                }
            }
            Err(failed) => {
                nice_warn!("Stemflow passes audio through: {}", failed.error);
                self.priors = Some(failed.priors);
                self.not_built = Some(wanted);
                self.forget_tail();
                self.status.set_message(format!(
                    "cannot separate with these settings ({}); passing audio through until they change",
                    failed.error
                ));
                self.status.set_state(WorkerState::Failed);
            }
        }
    }

    /// Separates at most one frame; true if it did any work.
    fn step(&mut self) -> bool {
        let Some(link) = self.link.clone() else {
            return false;
        };
        let epoch = link.epoch();
        let state = self.status.state();
        if self.separator.is_none() {
            if state == WorkerState::Failed {
                // Nothing will ever separate these: hand the frames back.
                let mut any = false;
                while let Some(frame) = link.work.pop() {
                    let_go(&link, frame);
                    any = true;
                }
                return any;
            }
            return false;
        }
        if self.stop.pending(self.stops_handled) {
            // A Detach or Shutdown is on its way: handle it before any frame.
            return false;
        }
        let mut chosen: Option<Box<InputFrame>> = None;
        while let Some(frame) = link.work.pop() {
            if frame.epoch != epoch {
                recycle_input(&link, frame);
                continue;
            }
            if link.is_offline() {
                chosen = Some(frame);
                break;
            }
            if let Some(older) = chosen.replace(frame) {
                let_go(&link, older);
            }
        }
        let Some(frame) = chosen else { return false };
        if !link.is_offline() && frame.index < link.playing.load(Ordering::Acquire) {
            let_go(&link, frame);
            return true;
        }
        self.separate(&link, frame);
        true
    }

    /// Separates `frame`, crossfades it into a segment and hands the segment to the audio thread.
    fn separate(&mut self, link: &Arc<Link>, frame: Box<InputFrame>) {
        let Some(mut segment) = self.free_segment(link) else {
            let_go(link, frame);
            self.forget_tail();
            return;
        };
        let (Some(sep), Some(crossfade)) = (self.separator.as_mut(), self.crossfade.as_mut()) else {
            let_go(link, frame);
            let _ = link.free_segments.push(segment);
            return;
        };
        let started = Instant::now();
        self.status.frame_index.store(frame.index, Ordering::Relaxed);
        self.status.separating.store(true, Ordering::Release);
        let result = {
            let refs: Vec<&[f32]> = frame.channels.iter().map(Vec::as_slice).collect();
            sep.separate_frame(&refs)
        };
        self.status.separating.store(false, Ordering::Release);
        let (epoch, index) = (frame.epoch, frame.index);
        recycle_input(link, frame);
        if let Err(e) = &result {
            let message = format!("frame {index} not separated ({e}); played dry");
            nice_warn!("Stemflow: {message}");
            self.status.set_message(message);
        }
        let step = link.framing.step;
        let stems = sep.stem_count().min(SLOT_COUNT);
        segment.epoch = epoch;
        segment.index = index;
        let segment_valid = result.is_ok();
        segment.valid = segment_valid;
        segment.shape(stems, link.channels, step);
        for (s, &slot) in self.slot_of_stem.iter().take(stems).enumerate() {
            segment.slot_of_stem[s] = slot;
        }
        if segment.valid {
            crossfade.add(sep, link, epoch, index, stems, &mut segment.data);
        } else {
            crossfade.epoch = None;
        }
        if let Err(segment) = link.done.push(segment) {
            drop(segment);
        }
        let hop_seconds = step as f64 / f64::from(link.sample_rate);
        let rtf = started.elapsed().as_secs_f64() / hop_seconds;
        self.status.real_time_factor.store(rtf as f32, Ordering::Relaxed);
        if segment_valid {
            self.status.frames_done.fetch_add(1, Ordering::Relaxed);
        }
        self.tally.add(rtf, segment_valid);
    }

    /// The next frame does not continue the last one: it starts a new crossfade.
    fn forget_tail(&mut self) {
        if let Some(crossfade) = self.crossfade.as_mut() {
            crossfade.epoch = None;
        }
    }

    /// A segment to fill: a recycled one, a new one while fewer than [`SEGMENTS`] exist, or (in
    /// offline mode) the next one the audio thread frees. `None` in realtime mode when all are
    /// in use (the result is dropped; the audio thread is playing dry anyway).
    fn free_segment(&mut self, link: &Arc<Link>) -> Option<Box<Segment>> {
        loop {
            if let Some(segment) = link.free_segments.pop() {
                return Some(segment);
            }
            if self.segments_made < SEGMENTS {
                self.segments_made += 1;
                return Some(Box::new(Segment::new()));
            }
            if !link.is_offline() || link.is_closed() {
                return None;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

impl Crossfade {
    /// Adds the separator's stems for frame `index` of stream `epoch` and writes the segment it
    /// completes into `out` (`(stem · channels + channel) · step + k`, the segment's layout). A
    /// frame that does not follow the last one added (a dropped frame, a new epoch) plays alone.
    fn add(&mut self, sep: &Separator, link: &Link, epoch: u64, index: u64, stems: usize, out: &mut [f32]) {
        let geometry = link.framing.geometry;
        let follows = self.epoch == Some(epoch) && self.overlap_add.continues_with(index);
        let span = FrameSpan {
            index,
            start: geometry.start(index),
            len: geometry.frame_len(),
            first: !follows,
            last: false,
        };
        if !follows {
            self.overlap_add.restart_at(span.start);
        }
        let channels: Vec<&[f32]> = sep
            .stems()
            .iter()
            .take(stems)
            .flat_map(|stem| stem.iter().take(link.channels).map(Vec::as_slice))
            .collect();
        self.overlap_add.add_frame(span, &channels);
        let mut outs: Vec<&mut [f32]> = out.chunks_mut(geometry.step()).collect();
        self.overlap_add.drain_ready_into(&mut outs);
        self.epoch = Some(epoch);
    }
}

/// What a separator is built for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BuildKey {
    settings: SeparationSettings,
    rate: u32,
    channels: usize,
}

/// Hands back a frame the worker will not separate, marking it so the audio thread does not
/// wait for its segment.
fn let_go(link: &Link, frame: Box<InputFrame>) {
    link.fates.set(frame.epoch, frame.index, Fate::Dropped);
    recycle_input(link, frame);
}

fn recycle_input(link: &Link, mut frame: Box<InputFrame>) {
    frame.filled = 0;
    let _ = link.free_inputs.push(frame);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Makes the worker's next turn panic (fault injection for the test below).
    pub(super) static PANIC_NEXT_TURN: AtomicBool = AtomicBool::new(false);

    #[test]
    fn a_stop_request_is_seen_whenever_it_lands() {
        let stop = StopSignal::default();
        // Before the worker's check: the check reports it, and the flag stays set.
        stop.request();
        assert!(stop.pending(0));
        assert!(stop.cancel.load(Ordering::SeqCst));
        // Once the worker has handled that command, nothing is pending and the flag is clear.
        assert!(!stop.pending(1));
        assert!(!stop.cancel.load(Ordering::SeqCst));
        // After the check, during the frame: the flag the search polls is set again.
        stop.request();
        assert!(stop.cancel.load(Ordering::SeqCst));
        assert!(stop.pending(1));
    }

    #[test]
    fn a_panic_in_the_worker_is_reported_and_the_worker_keeps_serving_commands() {
        let status = Arc::new(Status::default());
        status.set_state(WorkerState::Loading);
        PANIC_NEXT_TURN.store(true, Ordering::Relaxed);
        let handle = WorkerHandle::spawn(Arc::new(StemflowParams::default()), status.clone(), Vec::new())
            .expect("the worker starts");
        let started = Instant::now();
        while status.state() != WorkerState::Failed {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the panic was not reported"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let message = status.message();
        assert!(
            message.contains("worker stopped (injected by a test)"),
            "{message}"
        );
        // Dropping the handle joins the thread: it is alive and still answers Shutdown.
        let dropped = Instant::now();
        drop(handle);
        assert!(dropped.elapsed() < Duration::from_secs(10));
    }
}
