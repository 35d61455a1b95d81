//! Cutting a long signal into overlapping separation frames and stitching the processed frames
//! back with raised-cosine crossfades whose weights sum to exactly one at every sample.

use thiserror::Error;

/// Why a [`FramePlan`] cannot be made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// There is nothing to frame.
    #[error("expected a signal of at least 1 sample, found 0 samples")]
    EmptySignal,
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

/// Where frames of a signal start and how they crossfade (all in samples at the host rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePlan {
    /// Samples in the whole signal.
    total_len: usize,
    /// Samples in one frame (the last frame is zero-padded past the end of the signal).
    frame_len: usize,
    /// Samples two neighbouring frames share and crossfade over.
    overlap: usize,
    /// Number of frames needed to cover `total_len`.
    count: usize,
}

/// One frame of a [`FramePlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// Position of the frame in the plan, from 0.
    pub index: usize,
    /// First sample of the frame in the signal.
    pub start: usize,
    /// Samples of the frame inside the signal (`frame_len` except possibly for the last frame).
    pub len: usize,
}

impl FramePlan {
    /// Plans frames starting at `j·(frame_len − overlap)`, as many as needed to cover
    /// `total_len`.
    pub fn new(total_len: usize, frame_len: usize, overlap: usize) -> Result<Self, FrameError> {
        if total_len == 0 {
            return Err(FrameError::EmptySignal);
        }
        if frame_len == 0 {
            return Err(FrameError::ZeroFrameLength);
        }
        if overlap > frame_len / 2 {
            return Err(FrameError::OverlapTooLong {
                overlap,
                max: frame_len / 2,
            });
        }
        let step = frame_len - overlap;
        let count = if total_len <= frame_len {
            1
        } else {
            1 + (total_len - frame_len).div_ceil(step)
        };
        Ok(FramePlan {
            total_len,
            frame_len,
            overlap,
            count,
        })
    }

    /// Samples in the whole signal.
    pub fn total_len(&self) -> usize {
        self.total_len
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

    /// Number of frames.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The frame at `index` (`index < count()`).
    pub fn span(&self, index: usize) -> FrameSpan {
        assert!(
            index < self.count,
            "frame {index} out of range (count {})",
            self.count
        );
        let start = index * self.step();
        FrameSpan {
            index,
            start,
            len: self.frame_len.min(self.total_len - start),
        }
    }

    /// All frames in order.
    pub fn spans(&self) -> impl Iterator<Item = FrameSpan> + '_ {
        (0..self.count).map(|i| self.span(i))
    }

    /// Crossfade weight of sample `offset` of frame `frame_index`: sin² fade-in over the first
    /// `overlap` samples (not on the first frame), cos² fade-out over the last `overlap` samples
    /// (not on the last frame), 1 elsewhere. Overlapping frames' weights sum to one.
    pub fn weight(&self, frame_index: usize, offset: usize) -> f32 {
        let ov = self.overlap;
        if frame_index > 0 && offset < ov {
            return fade_in(offset, ov);
        }
        let fade_start = self.frame_len - ov;
        if frame_index + 1 < self.count && offset >= fade_start {
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

fn fade_in(u: usize, ov: usize) -> f32 {
    fade_in_f64(u, ov) as f32
}

/// Streaming crossfaded overlap-add of processed frames with bounded memory (`channels ×
/// frame_len`), handing out each sample as soon as no later frame can touch it.
#[derive(Debug)]
pub struct OverlapAdd {
    /// The framing being reassembled.
    plan: FramePlan,
    /// Accumulated weighted samples per channel, covering `[base, base + frame_len)`.
    acc: Vec<Vec<f32>>,
    /// Accumulated weights, to check they sum to one where samples are handed out.
    weight_acc: Vec<f32>,
    /// Signal position of `acc[..][0]`.
    base: usize,
    /// Signal position up to which samples may be drained (exclusive).
    ready_end: usize,
    /// Index of the next frame `add_frame` expects.
    next_frame: usize,
}

impl OverlapAdd {
    /// Preallocates the accumulator for `channels` channels of `plan`.
    pub fn new(plan: FramePlan, channels: usize) -> Self {
        OverlapAdd {
            plan,
            acc: vec![vec![0.0; plan.frame_len]; channels],
            weight_acc: vec![0.0; plan.frame_len],
            base: 0,
            ready_end: 0,
            next_frame: 0,
        }
    }

    /// The framing this overlap-add follows.
    pub fn plan(&self) -> &FramePlan {
        &self.plan
    }

    /// Samples per channel that [`OverlapAdd::drain_ready_into`] would hand out now.
    pub fn ready_len(&self) -> usize {
        self.ready_end - self.base
    }

    /// Weights frame `span` and adds it. Frames must come in order, and the ready samples of the
    /// previous frame must have been drained. Each channel slice needs at least `span.len`
    /// samples (more are ignored).
    pub fn add_frame(&mut self, span: FrameSpan, frame: &[&[f32]]) {
        assert_eq!(span.index, self.next_frame, "frames must be added in order");
        assert_eq!(frame.len(), self.acc.len(), "expected one slice per channel");
        assert_eq!(
            self.base, span.start,
            "drain the ready samples before adding the next frame"
        );
        for (acc, input) in self.acc.iter_mut().zip(frame) {
            assert!(input.len() >= span.len, "frame channel shorter than span.len");
            for (o, (a, x)) in acc[..span.len].iter_mut().zip(input.iter()).enumerate() {
                *a += self.plan.weight(span.index, o) * x;
            }
        }
        for (o, w) in self.weight_acc[..span.len].iter_mut().enumerate() {
            *w += self.plan.weight(span.index, o);
        }
        self.next_frame += 1;
        self.ready_end = if self.next_frame < self.plan.count {
            self.plan.span(self.next_frame).start
        } else {
            self.plan.total_len
        };
    }

    /// Writes the ready samples into the start of each `out` channel slice and returns how many
    /// were written. Allocates nothing. After the last frame this yields everything up to
    /// `total_len`.
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

    /// Appends the ready samples to each channel vector of `out`; returns how many.
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

    /// Appends everything not yet drained up to `total_len`; every frame must have been added.
    pub fn finish(&mut self, out: &mut [Vec<f32>]) -> usize {
        assert_eq!(
            self.next_frame, self.plan.count,
            "finish before the last frame was added"
        );
        self.drain_ready(out)
    }

    /// Non-allocating [`OverlapAdd::finish`].
    pub fn finish_into(&mut self, out: &mut [&mut [f32]]) -> usize {
        assert_eq!(
            self.next_frame, self.plan.count,
            "finish before the last frame was added"
        );
        self.drain_ready_into(out)
    }

    /// Drops the first `n` handed-out samples and shifts the pending ones to the front.
    fn advance(&mut self, n: usize) {
        for w in &self.weight_acc[..n] {
            debug_assert!((w - 1.0).abs() <= 1e-6, "crossfade weights sum to {w}, not 1");
        }
        let len = self.plan.frame_len;
        for acc in self.acc.iter_mut().chain(std::iter::once(&mut self.weight_acc)) {
            acc.copy_within(n..len, 0);
            acc[len - n..].fill(0.0);
        }
        self.base += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combos() -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        for total in [1, 2, 7, 99, 100, 101, 180, 190, 200, 250, 1000, 1001, 12345] {
            for (frame, overlap) in [(100, 0), (100, 10), (100, 50), (101, 50), (64, 1), (1, 0)] {
                v.push((total, frame, overlap));
            }
        }
        v
    }

    #[test]
    fn frames_cover_the_signal() {
        for (total, frame, overlap) in combos() {
            let plan = FramePlan::new(total, frame, overlap).unwrap();
            let spans: Vec<_> = plan.spans().collect();
            let last = spans.last().unwrap();
            assert_eq!(last.start + last.len, total);
            assert!(last.start < total);
            if spans.len() > 1 {
                let prev = spans[spans.len() - 2];
                assert!(
                    prev.start + frame < total,
                    "one frame too many for {total}/{frame}"
                );
            }
            for (j, s) in spans.iter().enumerate() {
                assert_eq!(s.start, j * (frame - overlap));
            }
        }
        assert_eq!(FramePlan::new(200, 100, 0).unwrap().count(), 2);
        assert_eq!(FramePlan::new(190, 100, 10).unwrap().count(), 2);
        assert_eq!(FramePlan::new(191, 100, 10).unwrap().count(), 3);
    }

    #[test]
    fn weights_sum_to_one_everywhere() {
        for (total, frame, overlap) in combos() {
            let plan = FramePlan::new(total, frame, overlap).unwrap();
            let mut sum = vec![0.0f32; total];
            for s in plan.spans() {
                for o in 0..s.len {
                    sum[s.start + o] += plan.weight(s.index, o);
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
        let plan = FramePlan::new(1000, 100, 20).unwrap();
        assert_eq!(plan.weight(0, 0), 1.0);
        assert!(plan.weight(1, 0) < 0.01);
        assert!((plan.weight(1, 10) - 0.5).abs() < 0.1);
        assert!(plan.weight(1, 19) > 0.99);
        assert!(plan.weight(0, 99) < 0.01);
        let last = plan.count() - 1;
        assert_eq!(plan.weight(last, 99), 1.0);
    }

    #[test]
    fn overlap_add_of_unmodified_frames_reproduces_input() {
        for (total, frame, overlap) in combos() {
            let plan = FramePlan::new(total, frame, overlap).unwrap();
            let input: Vec<Vec<f32>> = (0..2)
                .map(|c| {
                    (0..total)
                        .map(|i| ((i * 7 + c * 13) % 23) as f32 - 11.0)
                        .collect()
                })
                .collect();
            let mut ola = OverlapAdd::new(plan, 2);
            let mut out = vec![Vec::new(), Vec::new()];
            let mut buf = vec![vec![0.0f32; frame]; 2];
            for s in plan.spans() {
                for (b, x) in buf.iter_mut().zip(&input) {
                    b.fill(0.0);
                    b[..s.len].copy_from_slice(&x[s.start..s.start + s.len]);
                }
                let refs: Vec<&[f32]> = buf.iter().map(|b| b.as_slice()).collect();
                ola.add_frame(s, &refs);
                // Everything before the next frame's start is final now.
                ola.drain_ready(&mut out);
                let expected = if s.index + 1 == plan.count() {
                    total
                } else {
                    s.start + plan.step()
                };
                assert_eq!(out[0].len(), expected);
            }
            ola.finish(&mut out);
            for (o, x) in out.iter().zip(&input) {
                assert_eq!(o.len(), total);
                for (a, b) in o.iter().zip(x) {
                    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn drain_into_slices_allocates_nothing_and_matches() {
        let plan = FramePlan::new(250, 100, 20).unwrap();
        let mut ola = OverlapAdd::new(plan, 1);
        let frame = vec![1.0f32; 100];
        let mut scratch = vec![0.0f32; 100];
        let mut got = Vec::new();
        for s in plan.spans() {
            ola.add_frame(s, &[&frame]);
            let n = ola.drain_ready_into(&mut [&mut scratch]);
            got.extend_from_slice(&scratch[..n]);
        }
        let n = ola.finish_into(&mut [&mut scratch]);
        got.extend_from_slice(&scratch[..n]);
        assert_eq!(got.len(), 250);
        assert!(got.iter().all(|x| (x - 1.0).abs() < 1e-6));
    }

    #[test]
    fn bad_plans_are_errors() {
        assert_eq!(FramePlan::new(0, 10, 0), Err(FrameError::EmptySignal));
        assert_eq!(FramePlan::new(10, 0, 0), Err(FrameError::ZeroFrameLength));
        assert_eq!(
            FramePlan::new(10, 10, 6),
            Err(FrameError::OverlapTooLong { overlap: 6, max: 5 })
        );
    }
}
