//! What travels between the audio thread and the worker: input frames one way, finished output
//! segments the other, each through lock-free `ArrayQueue`s of boxes that are allocated once and
//! recycled, never on the audio thread.

use super::slots::SLOT_COUNT;
use crate::engine::search::stream_framing::Framing;
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;

/// Input frames in circulation per activation: two filling, one queued, one in work, one spare.
pub const INPUT_FRAMES: usize = 5;
/// Output segments in circulation: one playing, one waiting, two on their way.
pub const SEGMENTS: usize = 4;

/// Frames whose fate [`FrameFates`] remembers: more than can be in circulation.
const FATES: usize = 16;

/// What became of a frame the audio thread started, as far as a segment for it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not queued (no free frame, or a full queue): no segment will come for it.
    Skipped = 1,
    /// Queued for the worker: a segment (separated, or marked invalid) will come.
    Queued = 2,
    /// The worker let it go unseparated (a late frame in realtime mode, a closing link): no
    /// segment will come.
    Dropped = 3,
}

/// The fate of each recent frame, shared by the audio thread and the worker, so an offline
/// render waits only for segments that will come: one atomic per slot, holding the stream
/// epoch's low bits, the frame index and the fate. Lock- and allocation-free.
pub struct FrameFates {
    slots: [AtomicU64; FATES],
}

impl FrameFates {
    const EPOCH_SHIFT: u32 = 56;
    const INDEX_MASK: u64 = (1 << 54) - 1;

    fn new() -> Self {
        FrameFates {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn key(epoch: u64, index: u64) -> u64 {
        ((epoch & 0xff) << Self::EPOCH_SHIFT) | ((index & Self::INDEX_MASK) << 2)
    }

    /// Records the fate of frame `index` of stream `epoch`.
    pub fn set(&self, epoch: u64, index: u64, fate: Fate) {
        let slot = &self.slots[(index % FATES as u64) as usize];
        slot.store(Self::key(epoch, index) | fate as u64, Ordering::Release);
    }

    /// The fate of frame `index` of stream `epoch`, if it is still remembered.
    pub fn get(&self, epoch: u64, index: u64) -> Option<Fate> {
        let value = self.slots[(index % FATES as u64) as usize].load(Ordering::Acquire);
        if value & !3 != Self::key(epoch, index) {
            return None;
        }
        match value & 3 {
            1 => Some(Fate::Skipped),
            2 => Some(Fate::Queued),
            3 => Some(Fate::Dropped),
            _ => None,
        }
    }
}

/// One frame of input audio, `channels × frame_len`, on its way to the worker.
pub struct InputFrame {
    /// Stream epoch (bumped by every reset) the frame belongs to.
    pub epoch: u64,
    /// Frame index `j` since the start of the stream.
    pub index: u64,
    /// Samples written so far.
    pub filled: usize,
    /// The audio, one vector of `frame_len` samples per channel.
    pub channels: Vec<Vec<f32>>,
}

impl InputFrame {
    fn new(channels: usize, frame_len: usize) -> Self {
        InputFrame {
            epoch: 0,
            index: 0,
            filled: 0,
            channels: vec![vec![0.0; frame_len]; channels],
        }
    }
}

/// One finished output segment (`step` samples) of every stem, on its way to the audio thread.
pub struct Segment {
    /// Stream epoch of the frame it came from.
    pub epoch: u64,
    /// Segment index `j` (= the frame's index).
    pub index: u64,
    /// False when the worker could not separate the frame: the audio thread plays it dry.
    pub valid: bool,
    /// Stems in `data`.
    pub stems: usize,
    /// Channels per stem.
    pub channels: usize,
    /// Output slot of each stem.
    pub slot_of_stem: [usize; SLOT_COUNT],
    /// Samples per channel.
    pub len: usize,
    /// `data[(stem · channels + channel) · len + k]`.
    pub data: Vec<f32>,
}

impl Segment {
    /// An empty segment; the worker sizes it with [`Segment::shape`].
    pub fn new() -> Self {
        Segment {
            epoch: 0,
            index: 0,
            valid: false,
            stems: 0,
            channels: 0,
            slot_of_stem: [0; SLOT_COUNT],
            len: 0,
            data: Vec::new(),
        }
    }

    /// Resizes for `stems × channels × len` (worker thread only: may allocate).
    pub fn shape(&mut self, stems: usize, channels: usize, len: usize) {
        self.stems = stems;
        self.channels = channels;
        self.len = len;
        self.data.resize(stems * channels * len, 0.0);
    }

    /// Sample `k` of `stem`'s `channel`.
    #[inline]
    pub fn sample(&self, stem: usize, channel: usize, k: usize) -> f32 {
        self.data[(stem * self.channels + channel) * self.len + k]
    }
}

impl Default for Segment {
    fn default() -> Self {
        Self::new()
    }
}

/// The queues and shared counters of one activation, shared by the audio thread and the worker.
pub struct Link {
    /// Host sample rate.
    pub sample_rate: u32,
    /// Main input channels.
    pub channels: usize,
    /// Frame, hop and latency.
    pub framing: Framing,
    /// Offline rendering: the worker processes every frame in order, the audio thread waits.
    /// Set by the audio thread when the host's mode changes within an activation.
    offline: AtomicBool,
    /// Current stream epoch (written by the audio thread on reset).
    pub epoch: AtomicU64,
    /// Index of the segment the audio thread is playing (it will never need older ones).
    pub playing: AtomicU64,
    /// Set when the activation ends: the worker stops waiting for this link.
    pub closed: AtomicBool,
    /// Full input frames, audio → worker.
    pub work: ArrayQueue<Box<InputFrame>>,
    /// Empty input frames, worker → audio.
    pub free_inputs: ArrayQueue<Box<InputFrame>>,
    /// Finished segments, worker → audio.
    pub done: ArrayQueue<Box<Segment>>,
    /// Played segments, audio → worker.
    pub free_segments: ArrayQueue<Box<Segment>>,
    /// What became of each recent frame (whether a segment will come for it).
    pub fates: FrameFates,
    /// The worker thread, woken when a frame is queued, so an idle worker sleeps instead of
    /// polling (`Thread::unpark` neither allocates nor blocks).
    worker: Option<Thread>,
}

impl Link {
    /// Allocates the input frames for `channels` at `sample_rate` (segments are made by the
    /// worker once it knows how many stems it has).
    /// `worker` is the thread to wake for each queued frame; `allowance_seconds` is the worker's
    /// time per frame that the latency includes ([`Framing::new`]).
    pub fn new(
        sample_rate: u32,
        channels: usize,
        offline: bool,
        allowance_seconds: f64,
        worker: Option<Thread>,
    ) -> Link {
        let framing = Framing::new(sample_rate, allowance_seconds);
        let free_inputs = ArrayQueue::new(INPUT_FRAMES);
        for _ in 0..INPUT_FRAMES {
            let _ = free_inputs.push(Box::new(InputFrame::new(channels, framing.frame_len)));
        }
        Link {
            sample_rate,
            channels,
            framing,
            offline: AtomicBool::new(offline),
            epoch: AtomicU64::new(0),
            playing: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            work: ArrayQueue::new(INPUT_FRAMES),
            free_inputs,
            done: ArrayQueue::new(SEGMENTS),
            free_segments: ArrayQueue::new(SEGMENTS),
            fates: FrameFates::new(),
            worker,
        }
    }

    /// Audio thread: queues a full frame for the worker and wakes it; a full queue (which the
    /// frame count rules out) hands the frame back.
    pub fn queue_work(&self, frame: Box<InputFrame>) -> Result<(), Box<InputFrame>> {
        self.work.push(frame)?;
        if let Some(worker) = &self.worker {
            worker.unpark();
        }
        Ok(())
    }

    /// Whether the stream renders offline (waits for every segment) now.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Audio thread: switches between offline and realtime rendering.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Release);
    }

    /// Whether the activation has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fate_is_kept_per_epoch_and_index_until_its_slot_is_reused() {
        let fates = FrameFates::new();
        assert_eq!(fates.get(1, 7), None);
        fates.set(1, 7, Fate::Queued);
        assert_eq!(fates.get(1, 7), Some(Fate::Queued));
        assert_eq!(fates.get(2, 7), None, "another epoch");
        fates.set(1, 7, Fate::Dropped);
        assert_eq!(fates.get(1, 7), Some(Fate::Dropped));
        fates.set(1, 7 + FATES as u64, Fate::Skipped);
        assert_eq!(fates.get(1, 7), None, "the slot now holds a later frame");
        assert_eq!(fates.get(1, 7 + FATES as u64), Some(Fate::Skipped));
    }
}
