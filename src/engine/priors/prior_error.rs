//! Everything that can go wrong loading a prior or running its graphs, each naming the graph and
//! what was expected and found.

use crate::engine::priors::domain::Domain;
use crate::engine::priors::manifest_error::ManifestError;
use crate::engine::priors::nmf_dictionary::DictionaryError;
use crate::engine::priors::runtime::RuntimeError;

/// Everything that can go wrong loading a prior or running its graphs.
#[derive(Debug, thiserror::Error)]
pub enum PriorError {
    /// The manifest or a file it lists fails verification.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Creating a session failed (runtime missing, corrupt ONNX, ...).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The NMF dictionary the manifest lists cannot be used.
    #[error(transparent)]
    Dictionary(#[from] DictionaryError),
    /// A graph's inputs or outputs differ from the contract.
    #[error("graph `{graph}`, tensor `{tensor}`: expected {expected}, found {found}")]
    GraphInterface {
        /// The graph's role: `decode`, `grad`, `forward`, `backward` or `score`.
        graph: &'static str,
        /// The input or output name.
        tensor: String,
        /// What the contract says.
        expected: String,
        /// What the graph declares.
        found: String,
    },
    /// ONNX Runtime failed while running a graph.
    #[error("running graph `{graph}` failed: {reason}")]
    Run {
        /// The graph's role: `decode`, `grad`, `forward`, `backward` or `score`.
        graph: &'static str,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// An output holds NaN or infinity.
    #[error("graph `{graph}` produced a non-finite value in `{tensor}`")]
    NonFinite {
        /// The graph's role: `decode`, `grad`, `forward`, `backward` or `score`.
        graph: &'static str,
        /// The output.
        tensor: &'static str,
    },
    /// An output's shape differs from `[1, 513, frames]` (or `[1]` for `logp`).
    #[error("graph `{graph}`, output `{tensor}`: expected shape {expected:?}, found {found:?}")]
    OutputShape {
        /// The graph's role: `decode`, `grad`, `forward`, `backward` or `score`.
        graph: &'static str,
        /// The output.
        tensor: &'static str,
        /// The shape the call needs.
        expected: Vec<i64>,
        /// The shape produced.
        found: Vec<i64>,
    },
    /// A caller's buffer has the wrong length for `frames`.
    #[error("buffer `{buffer}` must hold {expected} values, found {found}")]
    BufferLength {
        /// Which argument.
        buffer: &'static str,
        /// 513 × frames.
        expected: usize,
        /// Its length.
        found: usize,
    },
    /// The time axis is not a positive multiple of the graphs' `time_multiple`.
    #[error("frames must be a positive multiple of {multiple}, found {frames}")]
    BadFrames {
        /// What was asked for.
        frames: usize,
        /// The contract's `time_multiple`.
        multiple: usize,
    },
    /// A waveform's length is not a positive multiple of the prior's `time_multiple`.
    #[error(
        "prior `{stem}`: a waveform must hold a positive multiple of {multiple} samples, found {samples}"
    )]
    BadSamples {
        /// The prior.
        stem: String,
        /// What was handed in.
        samples: usize,
        /// The manifest's `time_multiple`.
        multiple: usize,
    },
    /// A call of one domain on a prior of the other (a spectrogram call on a time-domain prior,
    /// or a waveform call on a spectrogram prior).
    #[error("prior `{stem}` is a {domain} prior: `{call}` is for {wanted} priors only")]
    WrongDomain {
        /// The prior.
        stem: String,
        /// The prior's domain.
        domain: Domain,
        /// The method called.
        call: &'static str,
        /// The domain that method is for.
        wanted: Domain,
    },
}
