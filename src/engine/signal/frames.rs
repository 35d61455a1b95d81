//! Cutting a signal of unknown length into overlapping separation frames, and stitching the
//! processed frames back with raised-cosine crossfades whose weights sum to exactly one.
//!
//! Frame `j` covers samples `[j·S, j·S + L)`: `L` is the frame length, `O` the overlap two
//! neighbours crossfade over and `S = L − O` the step ([`FrameGeometry`]). [`FrameReader`] cuts a
//! source into such frames without knowing its length: it reads one step ahead, so it knows a
//! frame is the last when nothing follows it. [`OverlapAdd`] crossfades the processed frames back
//! and hands out each sample as soon as no later frame can touch it. The command line feeds both
//! from a file; the plugin cuts frames on its audio thread at the same [`FrameGeometry::start`]s
//! and stitches them on its worker with the same [`OverlapAdd`], so both crossfade alike.

use crate::engine::signal::frame_shape::FrameShape;
use thiserror::Error;

/// Why a [`FrameGeometry`] cannot be made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// A frame must hold at least one sample.
    #[error("expected a frame length of at least 1 sample, found 0")]
    ZeroFrameLength,
    /// Crossfades of neighbouring frames must not overlap each other, so each sample is shared
    /// by at most two frames.
    #[error("expected an overlap of at most half the frame length ({max} samples), found {overlap}")]
    OverlapTooLong {
        /// The overlap asked for.
        overlap: usize,
        /// `frame_len / 2`.
        max: usize,
    },
}

/// Frame length and overlap, in samples at one rate: where frames start and how they crossfade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameGeometry {
    /// Samples in one frame (`L`); a last, shorter frame is zero-padded to it.
    frame_len: usize,
    /// Samples two neighbouring frames share and crossfade over (`O ≤ L / 2`).
    overlap: usize,
}

/// One frame of a stream: where it lies and which neighbours it crossfades with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// Position of the frame in its stream, from 0.
    pub index: u64,
    /// First sample of the frame in the stream: `index · step`.
    pub start: u64,
    /// Samples of the frame inside the signal (`frame_len`, except possibly for the last frame).
    pub len: usize,
    /// No frame before it is crossfaded with it (the stream's first frame, or the first after a
    /// gap): it does not fade in.
    pub first: bool,
    /// No frame follows it (the end of a file): it does not fade out.
    pub last: bool,
}

impl FrameGeometry {
    /// Frames of `frame_len` samples, neighbours sharing `overlap`.
    pub fn new(frame_len: usize, overlap: usize) -> Result<Self, FrameError> {
        if frame_len == 0 {
            return Err(FrameError::ZeroFrameLength);
        }
        if overlap > frame_len / 2 {
            return Err(FrameError::OverlapTooLong {
                overlap,
                max: frame_len / 2,
            });
        }
        Ok(FrameGeometry { frame_len, overlap })
    }

    /// The separation frames of `frame_seconds` at `sample_rate` ([`FrameShape`]'s host
    /// samples), overlapping by `overlap_seconds` rounded to a sample and at most half a frame.
    /// The one rounding the command line and the plugin share.
    pub fn at_rate(sample_rate: u32, frame_seconds: f64, overlap_seconds: f64) -> Result<Self, FrameError> {
        let frame_len = FrameShape::new(frame_seconds, sample_rate).host_samples;
        let overlap = (overlap_seconds.max(0.0) * f64::from(sample_rate)).round() as usize;
        Self::new(frame_len, overlap.min(frame_len / 2))
    }

    /// Samples in one frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Samples neighbouring frames share.
    pub fn overlap(&self) -> usize {
        self.overlap
    }

    /// Distance between frame starts: `frame_len − overlap`.
    pub fn step(&self) -> usize {
        self.frame_len - self.overlap
    }

    /// First sample of frame `index`.
    pub fn start(&self, index: u64) -> u64 {
        index * self.step() as u64
    }

    /// How many frames cover a signal of `total_len` samples (at least one).
    pub fn count_for(&self, total_len: u64) -> u64 {
        let frame_len = self.frame_len as u64;
        if total_len <= frame_len {
            1
        } else {
            1 + (total_len - frame_len).div_ceil(self.step() as u64)
        }
    }

    /// Crossfade weight of sample `offset` of the frame `span`: sin² fade-in over the first
    /// `overlap` samples (unless the frame is `first`), cos² fade-out over the last `overlap`
    /// samples (unless it is `last`), 1 elsewhere. Overlapping frames' weights sum to one.
    pub fn weight(&self, span: &FrameSpan, offset: usize) -> f32 {
        let ov = self.overlap;
        if !span.first && offset < ov {
            return fade_in_f64(offset, ov) as f32;
        }
        let fade_start = self.frame_len - ov;
        if !span.last && offset >= fade_start {
            return 1.0 - fade_in_f64(offset - fade_start, ov) as f32;
        }
        1.0
    }
}

/// sin²(π/2 · (u + ½)/ov) in f64: the fade-in at position `u` of an overlap of `ov` samples.
fn fade_in_f64(u: usize, ov: usize) -> f64 {
    let s = (std::f64::consts::FRAC_PI_2 * (u as f64 + 0.5) / ov as f64).sin();
    s * s
}

/// Cuts a pull source of multichannel samples into frames without knowing its length.
///
/// It holds one frame plus one step ahead (`channels × (frame_len + step)` samples), so a frame
/// is known to be the last when the step after it is empty. Non-finite samples are zeroed and a
/// short last frame is zero-padded, so every frame handed out is [`FrameGeometry::frame_len`]
/// finite samples per channel.
#[derive(Debug)]
pub struct FrameReader {
    /// The framing being cut.
    geometry: FrameGeometry,
    /// The current frame and the step after it, per channel.
    window: Vec<Vec<f32>>,
    /// Samples read into `window` (per channel).
    filled: usize,
    /// What the source handed over in one read, before it is copied into `window`.
    chunk: Vec<Vec<f32>>,
    /// Index of the next frame.
    next_index: u64,
    /// The last frame has been handed out (or the source was empty).
    done: bool,
}

impl FrameReader {
    /// Preallocates the window for `channels` channels.
    pub fn new(geometry: FrameGeometry, channels: usize) -> Self {
        let span = geometry.frame_len + geometry.step();
        FrameReader {
            geometry,
            window: vec![vec![0.0; span]; channels],
            filled: 0,
            chunk: vec![Vec::with_capacity(span); channels],
            next_index: 0,
            done: false,
        }
    }

    /// Reads the next frame with `read`, which appends up to `max` samples to each channel vector
    /// it is given and returns how many it appended (0 at the end of the source), and returns its
    /// span; the samples are then in [`Self::frame`]. `None` once the last frame was handed out,
    /// and at once for an empty source.
    pub fn next_frame<E>(
        &mut self,
        mut read: impl FnMut(&mut [Vec<f32>], usize) -> Result<usize, E>,
    ) -> Result<Option<FrameSpan>, E> {
        if self.done {
            return Ok(None);
        }
        let (frame_len, step) = (self.geometry.frame_len, self.geometry.step());
        if self.next_index > 0 {
            for channel in &mut self.window {
                channel.copy_within(step..self.filled, 0);
            }
            self.filled -= step;
        }
        let wanted = frame_len + step;
        while self.filled < wanted {
            self.chunk.iter_mut().for_each(Vec::clear);
            let n = read(&mut self.chunk, wanted - self.filled)?;
            if n == 0 {
                break;
            }
            for (w, c) in self.window.iter_mut().zip(&self.chunk) {
                w[self.filled..self.filled + n].copy_from_slice(&c[..n]);
            }
            self.filled += n;
        }
        if self.filled == 0 {
            self.done = true;
            return Ok(None);
        }
        let len = self.filled.min(frame_len);
        let last = self.filled <= frame_len;
        for channel in &mut self.window {
            channel[len..frame_len].fill(0.0);
            for x in channel[..len].iter_mut().filter(|x| !x.is_finite()) {
                *x = 0.0;
            }
        }
        let index = self.next_index;
        self.next_index += 1;
        self.done = last;
        Ok(Some(FrameSpan {
            index,
            start: self.geometry.start(index),
            len,
            first: index == 0,
            last,
        }))
    }

    /// The frame last handed out by [`Self::next_frame`]: one slice of `frame_len` samples per
    /// channel.
    pub fn frame(&self) -> Vec<&[f32]> {
        let frame_len = self.geometry.frame_len;
        self.window.iter().map(|c| &c[..frame_len]).collect()
    }
}

/// Streaming crossfaded overlap-add of processed frames with bounded memory (`channels ×
/// frame_len`), handing out each sample as soon as no later frame can touch it. It needs no
/// total length: a frame marked `last` flushes everything.
#[derive(Debug)]
pub struct OverlapAdd {
    /// The framing being reassembled.
    geometry: FrameGeometry,
    /// Accumulated weighted samples per channel, covering `[base, base + frame_len)`.
    acc: Vec<Vec<f32>>,
    /// Accumulated weights, to check they sum to one where samples are handed out.
    weight_acc: Vec<f32>,
    /// Stream position of `acc[..][0]`.
    base: u64,
    /// Stream position up to which samples may be handed out (exclusive).
    ready_end: u64,
    /// Index of the frame added last, which a following frame must succeed.
    last_index: Option<u64>,
}

impl OverlapAdd {
    /// Preallocates the accumulator for `channels` channels.
    pub fn new(geometry: FrameGeometry, channels: usize) -> Self {
        OverlapAdd {
            geometry,
            acc: vec![vec![0.0; geometry.frame_len]; channels],
            weight_acc: vec![0.0; geometry.frame_len],
            base: 0,
            ready_end: 0,
            last_index: None,
        }
    }

    /// The framing this overlap-add follows.
    pub fn geometry(&self) -> &FrameGeometry {
        &self.geometry
    }

    /// Channels it reassembles.
    pub fn channels(&self) -> usize {
        self.acc.len()
    }

    /// Samples per channel that [`OverlapAdd::drain_ready_into`] would hand out now.
    pub fn ready_len(&self) -> usize {
        (self.ready_end - self.base) as usize
    }

    /// Whether `index` is the frame right after the last one added, i.e. whether it may be added
    /// as a crossfading continuation (`first: false`).
    pub fn continues_with(&self, index: u64) -> bool {
        self.last_index.is_some_and(|last| last + 1 == index)
    }

    /// Forgets everything not yet handed out and starts again at stream position `start`, for a
    /// stream with a gap (a frame that was dropped): the next frame must be `first`.
    pub fn restart_at(&mut self, start: u64) {
        for acc in self.acc.iter_mut().chain(std::iter::once(&mut self.weight_acc)) {
            acc.fill(0.0);
        }
        self.base = start;
        self.ready_end = start;
        self.last_index = None;
    }

    /// Weights the frame `span` and adds it. A frame that is not `first` must follow the previous
    /// one, and the ready samples must have been drained before it. Each channel slice needs at
    /// least `span.len` samples (more are ignored).
    pub fn add_frame(&mut self, span: FrameSpan, frame: &[&[f32]]) {
        if !span.first {
            assert!(self.continues_with(span.index), "frames must be added in order");
        }
        assert_eq!(frame.len(), self.acc.len(), "expected one slice per channel");
        assert_eq!(
            self.base, span.start,
            "drain the ready samples before adding the next frame"
        );
        for (acc, input) in self.acc.iter_mut().zip(frame) {
            assert!(input.len() >= span.len, "frame channel shorter than span.len");
            for (o, (a, x)) in acc[..span.len].iter_mut().zip(input.iter()).enumerate() {
                *a += self.geometry.weight(&span, o) * x;
            }
        }
        for (o, w) in self.weight_acc[..span.len].iter_mut().enumerate() {
            *w += self.geometry.weight(&span, o);
        }
        self.last_index = Some(span.index);
        self.ready_end = if span.last {
            span.start + span.len as u64
        } else {
            span.start + self.geometry.step() as u64
        };
    }

    /// Writes the ready samples into the start of each `out` channel slice and returns how many
    /// were written. Allocates nothing. After the last frame this yields everything left.
    ///
    /// Panics if `out` has the wrong channel count or a slice is shorter than [`Self::ready_len`].
    pub fn drain_ready_into(&mut self, out: &mut [&mut [f32]]) -> usize {
        let n = self.ready_len();
        assert_eq!(out.len(), self.acc.len(), "expected one output slice per channel");
        for (o, acc) in out.iter_mut().zip(&self.acc) {
            o[..n].copy_from_slice(&acc[..n]);
        }
        self.advance(n);
        n
    }

    /// Appends the ready samples to each channel vector of `out`; returns how many (the
    /// allocating form of [`Self::drain_ready_into`], for the tests).
    #[cfg(test)]
    pub fn drain_ready(&mut self, out: &mut [Vec<f32>]) -> usize {
        let n = self.ready_len();
        assert_eq!(
            out.len(),
            self.acc.len(),
            "expected one output vector per channel"
        );
        for (o, acc) in out.iter_mut().zip(&self.acc) {
            o.extend_from_slice(&acc[..n]);
        }
        self.advance(n);
        n
    }

    /// Drops the first `n` handed-out samples and shifts the pending ones to the front.
    fn advance(&mut self, n: usize) {
        for w in &self.weight_acc[..n] {
            debug_assert!((w - 1.0).abs() <= 1e-6, "crossfade weights sum to {w}, not 1");
        }
        let len = self.geometry.frame_len;
        for acc in self.acc.iter_mut().chain(std::iter::once(&mut self.weight_acc)) {
            acc.copy_within(n..len, 0);
            acc[len - n..].fill(0.0);
        }
        self.base += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn combos() -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        for total in [1, 2, 7, 99, 100, 101, 180, 190, 200, 250, 1000, 1001, 12345] {
            for (frame, overlap) in [(100, 0), (100, 10), (100, 50), (101, 50), (64, 1), (1, 0)] {
                v.push((total, frame, overlap));
            }
        }
        v
    }

    fn signal(channels: usize, total: usize) -> Vec<Vec<f32>> {
        (0..channels)
            .map(|c| {
                (0..total)
                    .map(|i| ((i * 7 + c * 13) % 23) as f32 - 11.0)
                    .collect()
            })
            .collect()
    }

    /// A source that hands out `input` in reads of at most `chunk` samples.
    fn source(
        input: &[Vec<f32>],
        chunk: usize,
    ) -> impl FnMut(&mut [Vec<f32>], usize) -> Result<usize, Infallible> + '_ {
        let mut pos = 0;
        move |out, max| {
            let n = max.min(chunk).min(input[0].len() - pos);
            for (o, x) in out.iter_mut().zip(input) {
                o.extend_from_slice(&x[pos..pos + n]);
            }
            pos += n;
            Ok(n)
        }
    }

    /// Every frame a reader cuts from `input`, with its samples.
    fn read_all(
        geometry: FrameGeometry,
        input: &[Vec<f32>],
        chunk: usize,
    ) -> Vec<(FrameSpan, Vec<Vec<f32>>)> {
        let mut reader = FrameReader::new(geometry, input.len());
        let mut read = source(input, chunk);
        let mut frames = Vec::new();
        while let Some(span) = reader.next_frame(&mut read).unwrap() {
            frames.push((span, reader.frame().iter().map(|c| c.to_vec()).collect()));
        }
        frames
    }

    #[test]
    fn frames_cover_the_signal_and_the_last_is_found_by_reading_ahead() {
        for (total, frame, overlap) in combos() {
            let geometry = FrameGeometry::new(frame, overlap).unwrap();
            for chunk in [1, 3, 1 << 20] {
                let frames = read_all(geometry, &signal(1, total), chunk);
                assert_eq!(frames.len() as u64, geometry.count_for(total as u64));
                let (last, _) = frames.last().unwrap();
                assert!(last.last && frames[..frames.len() - 1].iter().all(|(s, _)| !s.last));
                assert_eq!(last.start + last.len as u64, total as u64);
                if frames.len() > 1 {
                    let prev = frames[frames.len() - 2].0;
                    assert!(
                        prev.start + (frame as u64) < total as u64,
                        "one frame too many for {total}/{frame}"
                    );
                }
                for (j, (s, _)) in frames.iter().enumerate() {
                    assert_eq!(s.index, j as u64);
                    assert_eq!(s.start, j as u64 * (frame - overlap) as u64);
                    assert_eq!(s.first, j == 0);
                }
            }
        }
        let g = FrameGeometry::new(100, 10).unwrap();
        assert_eq!(
            (
                g.count_for(100),
                g.count_for(101),
                g.count_for(190),
                g.count_for(191)
            ),
            (1, 2, 2, 3)
        );
    }

    #[test]
    fn frames_hold_the_signal_zero_padded_and_finite() {
        let geometry = FrameGeometry::new(100, 20).unwrap();
        let mut input = signal(2, 250);
        input[1][130] = f32::NAN;
        input[0][5] = f32::INFINITY;
        for (span, data) in read_all(geometry, &input, 7) {
            for (c, channel) in data.iter().enumerate() {
                assert_eq!(channel.len(), 100);
                for (o, &x) in channel.iter().enumerate() {
                    let at = span.start as usize + o;
                    let expected = if o >= span.len || !input[c][at].is_finite() {
                        0.0
                    } else {
                        input[c][at]
                    };
                    assert_eq!(x, expected, "frame {} channel {c} offset {o}", span.index);
                }
            }
        }
    }

    #[test]
    fn an_empty_source_has_no_frames() {
        let geometry = FrameGeometry::new(100, 20).unwrap();
        assert!(read_all(geometry, &signal(2, 0), 10).is_empty());
    }

    #[test]
    fn weights_sum_to_one_everywhere() {
        for (total, frame, overlap) in combos() {
            let geometry = FrameGeometry::new(frame, overlap).unwrap();
            let mut sum = vec![0.0f32; total];
            for (s, _) in read_all(geometry, &signal(1, total), 1 << 20) {
                for o in 0..s.len {
                    sum[s.start as usize + o] += geometry.weight(&s, o);
                }
            }
            for (i, w) in sum.iter().enumerate() {
                assert!(
                    (w - 1.0).abs() <= 1e-6,
                    "{total}/{frame}/{overlap}: sample {i} sums {w}"
                );
            }
        }
    }

    #[test]
    fn weights_are_raised_cosine() {
        let g = FrameGeometry::new(100, 20).unwrap();
        let span = |index, first, last| FrameSpan {
            index,
            start: g.start(index),
            len: 100,
            first,
            last,
        };
        assert_eq!(g.weight(&span(0, true, false), 0), 1.0);
        assert!(g.weight(&span(1, false, false), 0) < 0.01);
        assert!((g.weight(&span(1, false, false), 10) - 0.5).abs() < 0.1);
        assert!(g.weight(&span(1, false, false), 19) > 0.99);
        assert!(g.weight(&span(0, true, false), 99) < 0.01);
        assert_eq!(g.weight(&span(5, false, true), 99), 1.0);
    }

    #[test]
    fn overlap_add_of_unmodified_frames_reproduces_input() {
        for (total, frame, overlap) in combos() {
            let geometry = FrameGeometry::new(frame, overlap).unwrap();
            let input = signal(2, total);
            let mut ola = OverlapAdd::new(geometry, 2);
            let mut out = vec![Vec::new(), Vec::new()];
            for (s, data) in read_all(geometry, &input, 1 << 20) {
                let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
                ola.add_frame(s, &refs);
                // Everything before the next frame's start is final now.
                ola.drain_ready(&mut out);
                let expected = if s.last {
                    total as u64
                } else {
                    s.start + geometry.step() as u64
                };
                assert_eq!(out[0].len() as u64, expected);
            }
            for (o, x) in out.iter().zip(&input) {
                assert_eq!(o.len(), total);
                for (a, b) in o.iter().zip(x) {
                    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn an_endless_stream_hands_out_one_step_per_frame() {
        let geometry = FrameGeometry::new(100, 20).unwrap();
        let mut ola = OverlapAdd::new(geometry, 1);
        let frame = vec![1.0f32; 100];
        let mut scratch = vec![0.0f32; 100];
        for index in 0..5 {
            let span = FrameSpan {
                index,
                start: geometry.start(index),
                len: 100,
                first: index == 0,
                last: false,
            };
            ola.add_frame(span, &[&frame]);
            assert_eq!(ola.drain_ready_into(&mut [&mut scratch]), 80);
            assert!(scratch[..80].iter().all(|x| (x - 1.0).abs() < 1e-6));
        }
    }

    #[test]
    fn a_restart_after_a_dropped_frame_plays_the_next_frame_alone() {
        let geometry = FrameGeometry::new(100, 20).unwrap();
        let mut ola = OverlapAdd::new(geometry, 1);
        let ones = vec![1.0f32; 100];
        let twos = vec![2.0f32; 100];
        let mut scratch = vec![0.0f32; 100];
        let span = |index: u64, first| FrameSpan {
            index,
            start: geometry.start(index),
            len: 100,
            first,
            last: false,
        };
        ola.add_frame(span(0, true), &[&ones]);
        ola.drain_ready_into(&mut [&mut scratch]);
        // Frame 1 is dropped; frame 2 comes next.
        assert!(!ola.continues_with(2));
        ola.restart_at(geometry.start(2));
        ola.add_frame(span(2, true), &[&twos]);
        assert_eq!(ola.drain_ready_into(&mut [&mut scratch]), 80);
        assert!(
            scratch[..80].iter().all(|&x| x == 2.0),
            "no fade-in, nothing of frame 0"
        );
        assert!(ola.continues_with(3));
    }

    #[test]
    fn bad_geometries_are_errors() {
        assert_eq!(FrameGeometry::new(0, 0), Err(FrameError::ZeroFrameLength));
        assert_eq!(
            FrameGeometry::new(10, 6),
            Err(FrameError::OverlapTooLong { overlap: 6, max: 5 })
        );
        let g = FrameGeometry::at_rate(44_100, 5.0, 0.5).unwrap();
        assert_eq!((g.frame_len(), g.overlap(), g.step()), (220_500, 22_050, 198_450));
        assert_eq!(
            FrameGeometry::at_rate(8_000, 5.0, 100.0).unwrap().overlap(),
            20_000
        );
        let g = FrameGeometry::at_rate(48_000, 2.0, 0.25).unwrap();
        assert_eq!((g.frame_len(), g.overlap(), g.step()), (96_000, 12_000, 84_000));
    }
}
