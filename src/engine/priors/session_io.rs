//! Talking to a prior's ONNX Runtime sessions: which graph plays which role and the tensors the
//! contract gives it (checked by `graph_interface`), and copying a checked output into a caller's
//! buffer. Shared by the prior and its split gradient.

use std::fmt;

use crate::engine::constants::{BINS, TIME_MULTIPLE};
use crate::engine::priors::prior_error::PriorError;
use crate::engine::priors::runtime::Backend;

/// Which graph of a prior (for error messages and contract checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `decode.onnx`: z → s.
    Decode,
    /// `grad.onnx`: (z, g, gamma) → (s, grad_z, logp).
    Grad,
    /// `forward.onnx`: z → (s, logp, saved activations).
    Forward,
    /// `backward.onnx`: (z, s, g, gamma, saved activations) → grad_z.
    Backward,
    /// `score.onnx`: s → (score, logp).
    Score,
    /// `noisy_score.onnx` (the `annealing` section): (s, sigma) → (score, logp).
    NoisyScore,
    /// A waveform prior's `score.onnx`: x → (score, logp), over `[B, 1, T]` samples.
    WaveformScore,
    /// A waveform prior's `noisy_score.onnx`: (x, sigma) → (score, logp).
    WaveformNoisyScore,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Decode => "decode",
            Role::Grad => "grad",
            Role::Forward => "forward",
            Role::Backward => "backward",
            Role::Score | Role::WaveformScore => "score",
            Role::NoisyScore | Role::WaveformNoisyScore => "noisy_score",
        }
    }

    /// The size of axis 1 of the role's rank-3 tensors: frequency bins, or one channel of
    /// samples.
    pub(crate) fn channels(self) -> usize {
        match self {
            Role::WaveformScore | Role::WaveformNoisyScore => 1,
            _ => BINS,
        }
    }

    /// (name, rank) of every input the contract requires.
    pub(crate) fn inputs(self) -> &'static [(&'static str, usize)] {
        match self {
            Role::Decode | Role::Forward => &[("z", 3)],
            Role::Grad => &[("z", 3), ("g", 3), ("gamma", 1)],
            Role::Backward => &[("z", 3), ("s", 3), ("g", 3), ("gamma", 1)],
            Role::Score => &[("s", 3)],
            Role::NoisyScore => &[("s", 3), ("sigma", 1)],
            Role::WaveformScore => &[("x", 3)],
            Role::WaveformNoisyScore => &[("x", 3), ("sigma", 1)],
        }
    }

    /// Whether inputs beyond [`Role::inputs`] are allowed (the backward graph's saved
    /// activations, which `split_gradient` matches against the forward graph's outputs).
    pub(crate) fn extra_inputs_allowed(self) -> bool {
        self == Role::Backward
    }

    /// (name, rank) of every output the contract requires; extra outputs are tolerated.
    pub(crate) fn outputs(self) -> &'static [(&'static str, usize)] {
        match self {
            Role::Decode => &[("s", 3)],
            Role::Grad => &[("s", 3), ("grad_z", 3), ("logp", 1)],
            Role::Forward => &[("s", 3), ("logp", 1)],
            Role::Backward => &[("grad_z", 3)],
            Role::Score | Role::NoisyScore | Role::WaveformScore | Role::WaveformNoisyScore => {
                &[("score", 3), ("logp", 1)]
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend all of a prior's sessions run on, or the CPU when they differ (one fell back).
pub(crate) fn common_backend(backends: &[Backend]) -> Backend {
    match backends.split_first() {
        Some((first, rest)) if rest.iter().all(|b| b == first) => *first,
        _ => Backend::Cpu,
    }
}

/// The length of a `[513, frames]` buffer, or the error when `frames` is not a positive multiple
/// of the contract's time multiple.
pub(crate) fn checked_len(frames: usize) -> Result<usize, PriorError> {
    if frames == 0 || !frames.is_multiple_of(TIME_MULTIPLE) {
        return Err(PriorError::BadFrames {
            frames,
            multiple: TIME_MULTIPLE,
        });
    }
    Ok(BINS * frames)
}

/// The error naming `buffer` when its length is not the one expected.
pub(crate) fn check_len(buffer: &'static str, expected: usize, found: usize) -> Result<(), PriorError> {
    if expected == found {
        Ok(())
    } else {
        Err(PriorError::BufferLength {
            buffer,
            expected,
            found,
        })
    }
}

/// Copies output `tensor` into `out` after checking its shape and that every value is finite.
pub(crate) fn copy_output(
    outputs: &ort::session::SessionOutputs<'_>,
    graph: &'static str,
    tensor: &'static str,
    expected: &[i64],
    out: &mut [f32],
) -> Result<(), PriorError> {
    let value = outputs.get(tensor).ok_or_else(|| PriorError::GraphInterface {
        graph,
        tensor: tensor.to_string(),
        expected: "an output".into(),
        found: "no such output".into(),
    })?;
    let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| PriorError::Run {
        graph,
        reason: format!("output `{tensor}`: {e}"),
    })?;
    if &shape[..] != expected || data.len() != out.len() {
        return Err(PriorError::OutputShape {
            graph,
            tensor,
            expected: expected.to_vec(),
            found: shape.to_vec(),
        });
    }
    if !data.iter().all(|v| v.is_finite()) {
        return Err(PriorError::NonFinite { graph, tensor });
    }
    out.copy_from_slice(data);
    Ok(())
}
