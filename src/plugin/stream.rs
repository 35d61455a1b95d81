//! The audio thread's half of the streaming separation: it cuts the input into frames for the
//! worker, delays the dry signal by the plugin's latency, and plays finished segments back,
//! sample-aligned with that latency. It never allocates, locks or blocks in realtime mode.
//!
//! **When the worker is late** (realtime mode): a short ramp before each segment looks whether the
//! next one is ready. If it is not, every output crossfades to the dry mix (each stem output to
//! its equal share of the dry input, so the main output, Σ gainᵢ·stemᵢ, is the dry mix at unity
//! gains) and back once a segment arrives; the status says "behind". **Offline** the audio
//! thread waits for each segment instead, so a bounce equals the CLI's output.
//!
//! **Where frames start.** Frame `j` starts at stream position `j·S` counted from the stream's
//! origin: the first sample after activation or reset, or, while the host's transport plays,
//! the host's timeline zero (see `host_clock.rs`). Frames that would start before the origin's
//! first frame are not made; the first frame after a restart in the middle of the grid is
//! filled with silence up to the restart.

use super::params::{is_on, StemflowParams};
use super::queues::{Fate, InputFrame, Link, Segment};
use super::slots::SLOT_COUNT;
use super::status::{Status, WorkerState, HISTORY, HISTORY_STEP_SECONDS};
use super::watchdog::Watchdog;
use crate::engine::search::stream_framing::Framing;
use crossbeam::queue::ArrayQueue;
use nice_plug::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Most main channels the plugin handles (its layouts are mono and stereo).
pub const MAX_CHANNELS: usize = 2;
/// Meter decay per block.
const METER_DECAY: f32 = 0.9;

/// Audio-thread state of one activation; everything is allocated in [`Stream::new`].
pub struct Stream {
    link: Arc<Link>,
    status: Arc<Status>,
    framing: Framing,
    channels: usize,
    /// Waits for each segment (an offline render) instead of playing dry when one is late.
    offline: bool,
    epoch: u64,
    /// Samples processed since activation or reset.
    pos: u64,
    /// Position on the frame grid of the first sample since activation or reset (the host's
    /// timeline position while its transport plays, else 0).
    origin: i64,
    /// Grid position where the first frame since activation or reset starts.
    first_start: i64,
    /// The segment whose start was last handled by [`Stream::enter_segment`].
    entered: Option<u64>,
    /// Frames being filled (frame `j` lives in `filling[j % 2]`).
    filling: [Option<Box<InputFrame>>; 2],
    /// Dry delay line, one ring of `latency` samples per channel.
    dry: Vec<Vec<f32>>,
    dry_pos: usize,
    /// The segment playing and the next one, once they have arrived.
    current: Option<Box<Segment>>,
    pending: Option<Box<Segment>>,
    /// Stem count and slots of the last segment seen (for the dry fallback's shares).
    layout_stems: usize,
    layout_slots: [usize; SLOT_COUNT],
    /// Wet amount (1 = separated stems, 0 = dry fallback) and its per-sample step.
    wet: f32,
    ramp_step: f32,
    /// Smoothed mute/solo factor per slot.
    mix_factor: [f32; SLOT_COUNT],
    /// Peak of each slot's output in the current block.
    peaks: [f32; SLOT_COUNT],
    /// Samples per level-history entry ([`HISTORY_STEP_SECONDS`] at the link's rate), so the
    /// editor's histories span the same time whatever the host's block size.
    history_every: usize,
    /// Samples gathered into the history entry being built.
    history_filled: usize,
    /// Peaks of the history entry being built: each slot, then the main output.
    history_peaks: [f32; SLOT_COUNT + 1],
    /// Stops an offline render waiting for a worker that no longer moves.
    watchdog: Watchdog,
}

/// Zero for NaN, ±Inf and anything below 1e-30 in magnitude (denormals included).
#[inline]
fn clean(x: f32) -> f32 {
    if x.is_finite() && x.abs() >= 1e-30 {
        x
    } else {
        0.0
    }
}

/// Whether the worker is loading or separating (what an offline render waits for).
fn worker_busy(status: &Status) -> bool {
    matches!(status.state(), WorkerState::Loading | WorkerState::Ready)
}

/// Hands a box back through a queue; never frees on the audio thread (a full queue, which the
/// sizes rule out, leaks the box instead).
fn give<T>(queue: &ArrayQueue<Box<T>>, item: Box<T>) {
    if let Err(item) = queue.push(item) {
        std::mem::forget(item);
    }
}

impl Stream {
    /// Allocates the delay line and takes the link's frames (main thread, in `activate()`).
    pub fn new(link: Arc<Link>, status: Arc<Status>) -> Stream {
        let framing = link.framing;
        let channels = link.channels.clamp(1, MAX_CHANNELS);
        let offline = link.is_offline();
        status.rendering_offline.store(offline, Ordering::Relaxed);
        Stream {
            dry: vec![vec![0.0; framing.latency]; channels],
            dry_pos: 0,
            framing,
            channels,
            offline,
            epoch: link.epoch(),
            pos: 0,
            origin: 0,
            first_start: 0,
            entered: None,
            filling: [None, None],
            current: None,
            pending: None,
            layout_stems: 0,
            layout_slots: [0; SLOT_COUNT],
            wet: if offline { 1.0 } else { 0.0 },
            ramp_step: 1.0 / framing.ramp as f32,
            mix_factor: [1.0; SLOT_COUNT],
            peaks: [0.0; SLOT_COUNT],
            history_every: ((link.sample_rate as f32 * HISTORY_STEP_SECONDS) as usize).max(1),
            history_filled: 0,
            history_peaks: [0.0; SLOT_COUNT + 1],
            watchdog: Watchdog::new(),
            status,
            link,
        }
    }

    /// The link shared with the worker.
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Starts the stream over: frame 0 begins at the next processed sample. Allocation-free.
    pub fn reset(&mut self) {
        self.restart(self.offline, None);
    }

    /// Starts the stream over in `offline` (waiting) or realtime mode. With `timeline`, the
    /// host's transport plays and its next block is heard at that timeline position: a host that
    /// compensates the plugin's latency reads its tracks that far ahead, so the block's input is
    /// from `timeline + latency`, and frames are anchored to the timeline's zero. Without, frame
    /// 0 begins at the next sample. Allocation-free.
    pub fn restart(&mut self, offline: bool, timeline: Option<i64>) {
        let origin = timeline.map_or(0, |at| at + self.framing.latency as i64);
        self.start_over(offline, origin);
    }

    /// The host renders faster than real time while it says it plays in real time. Before the
    /// first output sample, when the transport started at `roll_start`, the stream starts over
    /// in offline mode with that position as its input's (such a host feeds the track from the
    /// render's start and trims the latency from the output itself: Ardour's track bounce) and
    /// frames again the input it has received, which the dry delay line still holds; the outputs
    /// were silent until now, so nothing heard changes. Later, it only waits for every segment
    /// from now on.
    pub fn fast_render(&mut self, roll_start: Option<i64>) {
        let received = self.pos as usize;
        match roll_start {
            Some(origin) if received <= self.framing.latency => {
                self.start_over(true, origin);
                self.replay(received);
            }
            _ => self.wait_from_now(),
        }
    }

    /// Frames the first `samples` of input again after a start over, from the dry delay line
    /// (which holds them while no more than the latency has passed).
    fn replay(&mut self, samples: usize) {
        let ch = self.channels;
        for i in 0..samples {
            let mut x = [0.0f32; MAX_CHANNELS];
            for (c, xc) in x.iter_mut().enumerate().take(ch) {
                *xc = self.dry[c][i];
            }
            if ch == 1 {
                x[1] = x[0];
            }
            self.feed_frames(i as u64, &x, ch);
            self.pos += 1;
        }
        self.dry_pos = samples % self.framing.latency;
    }

    /// Starts the stream over in `offline` or realtime mode with its next sample at grid
    /// position `origin`.
    fn start_over(&mut self, offline: bool, origin: i64) {
        self.offline = offline;
        self.link.set_offline(offline);
        self.status.rendering_offline.store(offline, Ordering::Relaxed);
        let step = self.framing.step as i64;
        self.origin = origin;
        self.first_start = self.origin.max(0).div_euclid(step) * step;
        self.entered = None;
        self.epoch += 1;
        self.link.epoch.store(self.epoch, Ordering::Release);
        self.link.playing.store(0, Ordering::Release);
        for slot in &mut self.filling {
            if let Some(frame) = slot.take() {
                give(&self.link.free_inputs, frame);
            }
        }
        for seg in [self.current.take(), self.pending.take()].into_iter().flatten() {
            give(&self.link.free_segments, seg);
        }
        self.pos = 0;
        self.dry_pos = 0;
        self.wet = if self.offline { 1.0 } else { 0.0 };
        self.status.behind.store(false, Ordering::Relaxed);
    }

    /// From now on, waits for every segment as an offline render does, without starting over
    /// (the host renders faster than real time without saying so).
    pub fn wait_from_now(&mut self) {
        self.offline = true;
        self.link.set_offline(true);
        self.status.rendering_offline.store(true, Ordering::Relaxed);
    }

    /// Whether an offline render should wait for the worker now: it is loading or separating,
    /// the link is open, and the worker was not found stalled (or has moved since).
    fn should_wait(&mut self) -> bool {
        self.offline
            && !self.link.is_closed()
            && worker_busy(&self.status)
            && self.watchdog.worker_answers(&self.status)
    }

    /// Frame `index` starts at this sample (or started `head` samples earlier, before the
    /// stream did: those are silence): take an empty frame for it (or skip it).
    fn start_frame(&mut self, index: u64, head: usize) {
        let slot = (index % 2) as usize;
        if let Some(old) = self.filling[slot].take() {
            self.link.fates.set(self.epoch, old.index, Fate::Skipped);
            give(&self.link.free_inputs, old);
        }
        let mut frame = self.link.free_inputs.pop();
        if frame.is_none() && self.should_wait() {
            let (link, status) = (&self.link, &self.status);
            util::permit_alloc(|| {
                self.watchdog.wait(status, || {
                    frame = link.free_inputs.pop();
                    frame.is_some() || !worker_busy(status) || link.is_closed()
                })
            });
        }
        if let Some(mut frame) = frame {
            frame.epoch = self.epoch;
            frame.index = index;
            let head = head.min(self.framing.frame_len - 1);
            for data in frame.channels.iter_mut() {
                data[..head].fill(0.0);
            }
            frame.filled = head;
            self.filling[slot] = Some(frame);
        } else {
            self.link.fates.set(self.epoch, index, Fate::Skipped);
        }
    }

    /// Pulls finished segments until segment `index` is in `current` (or known to be missing).
    fn fetch(&mut self, index: u64) {
        if let Some(seg) = self.current.take() {
            if seg.index == index && seg.epoch == self.epoch {
                self.current = Some(seg);
                return;
            }
            give(&self.link.free_segments, seg);
        }
        if let Some(seg) = self.pending.take() {
            if seg.epoch == self.epoch && seg.index == index {
                self.current = Some(seg);
                return;
            }
            if seg.epoch == self.epoch && seg.index > index {
                self.pending = Some(seg);
                return;
            }
            give(&self.link.free_segments, seg);
        }
        while let Some(seg) = self.link.done.pop() {
            if seg.epoch != self.epoch || seg.index < index {
                give(&self.link.free_segments, seg);
            } else if seg.index == index {
                self.current = Some(seg);
                return;
            } else {
                self.pending = Some(seg);
                return;
            }
        }
    }

    /// Looks for segment `index` in the done queue without blocking; true if it is there.
    fn peek_next(&mut self, index: u64) -> bool {
        if self.pending.is_none() {
            while let Some(seg) = self.link.done.pop() {
                if seg.epoch != self.epoch || seg.index < index {
                    give(&self.link.free_segments, seg);
                } else {
                    self.pending = Some(seg);
                    break;
                }
            }
        }
        self.pending.as_ref().is_some_and(|s| s.index == index && s.valid)
    }

    /// At the start of segment `index`: fetch it, waiting for it when rendering offline and its
    /// frame went to the worker (a frame skipped while the worker was stalled, or one the worker
    /// let go, has no segment coming: it plays dry at once).
    fn enter_segment(&mut self, index: u64) {
        self.entered = Some(index);
        self.link.playing.store(index, Ordering::Release);
        self.fetch(index);
        let coming = self.link.fates.get(self.epoch, index) == Some(Fate::Queued);
        if self.current.is_none() && coming && self.should_wait() {
            let mut watchdog = self.watchdog;
            util::permit_alloc(|| {
                watchdog.wait(&Arc::clone(&self.status), || {
                    self.fetch(index);
                    self.current.is_some() || self.link.is_closed() || !worker_busy(&self.status)
                })
            });
            self.watchdog = watchdog;
        }
        let ok = self.current.as_ref().is_some_and(|s| s.valid);
        if let Some(seg) = &self.current {
            self.layout_stems = seg.stems;
            self.layout_slots = seg.slot_of_stem;
        }
        if self.status.state() == WorkerState::Ready && !self.offline {
            if !ok {
                self.status.late_segments.fetch_add(1, Ordering::Relaxed);
            }
            self.status.behind.store(!ok, Ordering::Relaxed);
        }
    }

    /// Processes one block in place: `main` is the main input and output, `aux` the stem outputs.
    /// Each sample goes through the stages below in order: input framing, the dry delay, the
    /// gains, then (once the latency has passed) the wet/dry ramp and the mix.
    pub fn process(&mut self, main: &mut [&mut [f32]], aux: &mut [Buffer], params: &StemflowParams) {
        let samples = main.first().map_or(0, |c| c.len());
        let ch = self.channels.min(main.len());
        if ch == 0 {
            return;
        }
        let step64 = self.framing.step as u64;
        let targets = mute_solo_targets(params);
        self.peaks = [0.0; SLOT_COUNT];
        let mut main_peak = 0.0f32;
        let mut looked_ahead = false;
        self.begin_block();

        for i in 0..samples {
            let p = self.pos;
            let x = input_sample(main, i, ch);
            self.feed_frames(p, &x, ch);
            let dry = self.delay_dry(&x, ch);
            self.pos += 1;
            // Gains advance every sample so their smoothers stay in time.
            let gains = self.advance_gains(params, &targets);
            // Output side: stems of the input sample at grid position n = origin + p − latency.
            let Some(n) = self.output_position(p) else {
                silence_sample(main, aux, i);
                continue;
            };
            let (index, k) = (n / step64, (n % step64) as usize);
            if self.entered != Some(index) {
                self.enter_segment(index);
            }
            let have = self.current.as_ref().is_some_and(|s| s.valid && s.index == index);
            let target = self.wet_target(have, index, k, &mut looked_ahead);
            // Without the segment there is nothing wet to fade from: dry at once (a ramp would
            // fade the mix out). Playback sees a late segment coming and fades before it.
            let wet = if have {
                self.ramp_wet(target)
            } else {
                self.dry_now()
            };
            let mix = self.write_stems(aux, i, ch, have, k, wet, &dry, &gains);
            main_peak = main_peak.max(write_main(main, i, ch, &mix));
        }
        self.publish_meters(main_peak, samples);
    }

    /// Before a block: the dry fallback's layout, and the segment playing if none is held yet.
    fn begin_block(&mut self) {
        if self.current.is_none() {
            // The dry fallback's shares follow the loaded priors until a segment says otherwise.
            self.layout_stems = self.status.stem_count.load(Ordering::Acquire).min(SLOT_COUNT);
            for (slot, at) in self.layout_slots.iter_mut().zip(&self.status.stem_slots) {
                *slot = at.load(Ordering::Relaxed).min(SLOT_COUNT - 1);
            }
        }
        if self.current.is_none() {
            if let Some(n) = self.output_position(self.pos) {
                self.fetch(n / self.framing.step as u64);
            }
        }
    }

    /// Grid position of the input sample whose stems play at stream position `p`, once the
    /// latency has passed and the first frame has begun; `None` while the outputs are silent.
    fn output_position(&self, p: u64) -> Option<u64> {
        let latency = self.framing.latency as u64;
        let n = self.origin + p.checked_sub(latency)? as i64;
        (n >= self.first_start).then_some(n as u64)
    }

    /// Input framing: starts a frame every step and appends sample `x` (stream position `p`) to
    /// the frames being filled, handing each full one to the worker.
    fn feed_frames(&mut self, p: u64, x: &[f32; MAX_CHANNELS], ch: usize) {
        let step = self.framing.step as i64;
        let at = self.origin + p as i64;
        if at >= self.first_start {
            if at % step == 0 {
                self.start_frame((at / step) as u64, 0);
            } else if p == 0 {
                // Restarted inside a frame: it begins with silence up to here.
                self.start_frame((self.first_start / step) as u64, (at - self.first_start) as usize);
            }
        }
        let frame_len = self.framing.frame_len;
        for slot in 0..2 {
            let full = match self.filling[slot].as_mut() {
                Some(frame) => {
                    let at = frame.filled;
                    for (c, data) in frame.channels.iter_mut().enumerate() {
                        data[at] = x[c.min(ch - 1)];
                    }
                    frame.filled += 1;
                    frame.filled >= frame_len
                }
                None => false,
            };
            if full {
                if let Some(frame) = self.filling[slot].take() {
                    // Marked before the worker can see it, so its own mark comes last.
                    self.link.fates.set(self.epoch, frame.index, Fate::Queued);
                    if let Err(frame) = self.link.queue_work(frame) {
                        self.link.fates.set(self.epoch, frame.index, Fate::Skipped);
                        give(&self.link.free_inputs, frame);
                    }
                }
            }
        }
    }

    /// Dry delay line: returns the sample `latency` ago and stores `x`.
    fn delay_dry(&mut self, x: &[f32; MAX_CHANNELS], ch: usize) -> [f32; MAX_CHANNELS] {
        let mut dry = [0.0f32; MAX_CHANNELS];
        for c in 0..ch {
            dry[c] = self.dry[c][self.dry_pos];
            self.dry[c][self.dry_pos] = x[c];
        }
        self.dry_pos += 1;
        if self.dry_pos >= self.framing.latency {
            self.dry_pos = 0;
        }
        dry
    }

    /// Each slot's gain for this sample: its smoothed dB gain times its mute/solo factor, which
    /// ramps towards `targets` over the ramp length.
    fn advance_gains(&mut self, params: &StemflowParams, targets: &[f32; SLOT_COUNT]) -> [f32; SLOT_COUNT] {
        let mut gains = [0.0f32; SLOT_COUNT];
        for (slot, g) in gains.iter_mut().enumerate() {
            let db = params.strips[slot].gain.smoothed.next();
            let f = &mut self.mix_factor[slot];
            if *f < targets[slot] {
                *f = (*f + self.ramp_step).min(targets[slot]);
            } else if *f > targets[slot] {
                *f = (*f - self.ramp_step).max(targets[slot]);
            }
            *g = util::db_to_gain(db) * *f;
        }
        gains
    }

    /// Where the wet/dry ramp heads at offset `k` of segment `index`: wet while the segment is
    /// here, and in realtime mode, over the ramp before its end, only if the next one is ready.
    fn wet_target(&mut self, have: bool, index: u64, k: usize, looked_ahead: &mut bool) -> f32 {
        let (step, ramp) = (self.framing.step, self.framing.ramp);
        if !have {
            return 0.0;
        }
        if self.offline || k + ramp < step {
            return 1.0;
        }
        let next_ready = if !*looked_ahead || k + ramp == step {
            *looked_ahead = true;
            self.peek_next(index + 1)
        } else {
            self.pending
                .as_ref()
                .is_some_and(|s| s.index == index + 1 && s.valid)
        };
        if next_ready {
            1.0
        } else {
            0.0
        }
    }

    /// Drops the wet amount to 0 (no segment to play) and returns it.
    fn dry_now(&mut self) -> f32 {
        self.wet = 0.0;
        0.0
    }

    /// Moves the wet amount one ramp step towards `target` and returns it.
    fn ramp_wet(&mut self, target: f32) -> f32 {
        if self.wet < target {
            self.wet = (self.wet + self.ramp_step).min(1.0);
        } else if self.wet > target {
            self.wet = (self.wet - self.ramp_step).max(0.0);
        }
        self.wet
    }

    /// Writes sample `i` of every stem output (offset `k` of the current segment, blended with
    /// its share of the dry mix by `wet`), zeroes the unused ones, and returns the main mix
    /// Σ gainᵢ·stemᵢ.
    #[allow(clippy::too_many_arguments)]
    fn write_stems(
        &mut self,
        aux: &mut [Buffer],
        i: usize,
        ch: usize,
        have: bool,
        k: usize,
        wet: f32,
        dry: &[f32; MAX_CHANNELS],
        gains: &[f32; SLOT_COUNT],
    ) -> [f32; MAX_CHANNELS] {
        let (stems, slots) = match self.current.as_ref().filter(|_| have) {
            Some(seg) => (seg.stems, seg.slot_of_stem),
            None => (self.layout_stems, self.layout_slots),
        };
        let mut mix = [0.0f32; MAX_CHANNELS];
        let mut used = [false; SLOT_COUNT];
        if stems == 0 {
            mix = *dry;
        } else {
            let share = 1.0 / stems as f32;
            for (s, &slot) in slots.iter().enumerate().take(stems) {
                let slot = slot.min(SLOT_COUNT - 1);
                used[slot] = true;
                let mut v = [0.0f32; MAX_CHANNELS];
                for c in 0..ch {
                    let wet_part = match self.current.as_ref() {
                        Some(seg) if have && c < seg.channels => seg.sample(s, c, k),
                        _ => 0.0,
                    };
                    v[c] = clean(wet * wet_part + (1.0 - wet) * dry[c] * share);
                    mix[c] += gains[slot] * v[c];
                }
                if let Some(port) = aux.get_mut(slot) {
                    for (c, channel) in port.as_slice().iter_mut().enumerate() {
                        let value = v[c.min(ch - 1)];
                        channel[i] = value;
                        self.peaks[slot] = self.peaks[slot].max(value.abs());
                    }
                }
            }
        }
        for (slot, port) in aux.iter_mut().enumerate() {
            if slot >= SLOT_COUNT || !used[slot] {
                for channel in port.as_slice().iter_mut() {
                    channel[i] = 0.0;
                }
            }
        }
        mix
    }

    /// After a block of `samples`: the meters (peak with decay) and, once every
    /// [`HISTORY_STEP_SECONDS`] of audio, one entry of each level history.
    fn publish_meters(&mut self, main_peak: f32, samples: usize) {
        let status = &self.status;
        let meters = status.meters.iter().chain(std::iter::once(&status.main_meter));
        let peaks = self.peaks.iter().chain(std::iter::once(&main_peak));
        for ((meter, &peak), held) in meters.zip(peaks).zip(self.history_peaks.iter_mut()) {
            let old = meter.load(Ordering::Relaxed);
            meter.store(peak.max(old * METER_DECAY), Ordering::Relaxed);
            *held = held.max(peak);
        }
        self.history_filled += samples;
        if self.history_filled < self.history_every {
            return;
        }
        self.history_filled = 0;
        let at = status.history_pos.load(Ordering::Relaxed) % HISTORY;
        for (ring, peak) in status.stem_history.iter().zip(&self.history_peaks) {
            ring[at].store(*peak, Ordering::Relaxed);
        }
        status.history[at].store(self.history_peaks[SLOT_COUNT], Ordering::Relaxed);
        status.history_pos.fetch_add(1, Ordering::Release);
        self.history_peaks = [0.0; SLOT_COUNT + 1];
    }
}

/// Mute/solo target per slot for this block: 1 if the slot is heard in the main mix, else 0.
fn mute_solo_targets(params: &StemflowParams) -> [f32; SLOT_COUNT] {
    let any_solo = params.strips.iter().any(|s| is_on(&s.solo));
    let mut targets = [0.0f32; SLOT_COUNT];
    for (t, strip) in targets.iter_mut().zip(&params.strips) {
        let on = !is_on(&strip.mute) && (!any_solo || is_on(&strip.solo));
        *t = if on { 1.0 } else { 0.0 };
    }
    targets
}

/// Sample `i` of the main input, cleaned, a mono input doubled to both channels.
fn input_sample(main: &[&mut [f32]], i: usize, ch: usize) -> [f32; MAX_CHANNELS] {
    let mut x = [0.0f32; MAX_CHANNELS];
    for (c, xc) in x.iter_mut().enumerate().take(ch) {
        *xc = clean(main[c][i]);
    }
    if ch == 1 {
        x[1] = x[0];
    }
    x
}

/// Silence on every output at sample `i` (before the first segment is due).
fn silence_sample(main: &mut [&mut [f32]], aux: &mut [Buffer], i: usize) {
    for channel in main.iter_mut() {
        channel[i] = 0.0;
    }
    for port in aux.iter_mut() {
        for channel in port.as_slice().iter_mut() {
            channel[i] = 0.0;
        }
    }
}

/// Writes the main mix at sample `i` of every main channel; returns its peak.
fn write_main(main: &mut [&mut [f32]], i: usize, ch: usize, mix: &[f32; MAX_CHANNELS]) -> f32 {
    let mut peak = 0.0f32;
    for (c, channel) in main.iter_mut().enumerate() {
        let value = clean(mix[c.min(ch - 1)]);
        channel[i] = value;
        peak = peak.max(value.abs());
    }
    peak
}
