//! A loaded prior: its `decode` and `grad` sessions (and the split gradient and the score, when it
//! has them), checked against the contract, and the calls that run them into caller buffers. A
//! time-domain (waveform) prior has only its score graphs, over `[1, 1, T]` samples
//! ([`Prior::waveform_score_into`], [`Prior::waveform_noisy_score_into`]); the spectrogram calls
//! refuse it, and the waveform calls refuse a spectrogram prior ([`PriorError::WrongDomain`]).

use std::fmt;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use crate::engine::constants::{BINS, TIME_MULTIPLE};
use crate::engine::priors::domain::Domain;
use crate::engine::priors::lazy_session::LazySession;
use crate::engine::priors::manifest::Manifest;
use crate::engine::priors::nmf_dictionary::NmfDictionary;
use crate::engine::priors::prior_error::PriorError;
use crate::engine::priors::runtime::{Backend, Runtime, SessionOptions};
use crate::engine::priors::session_io::{check_len, checked_len, common_backend, copy_output, Role};
use crate::engine::priors::split_gradient::SplitGradient;
use crate::engine::priors::verified_files::{ExternalData, VerifiedGraph};
use crate::engine::spread::spread;

/// Per-bin level gains of one prior and what they were computed from (see
/// `priors::calibration`).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedLevelGains {
    /// Latent samples drawn.
    pub samples: usize,
    /// Fraction of each bin's loudest samples left out.
    pub trim: f32,
    /// One gain per frequency bin.
    pub gains: Vec<f32>,
}

/// One instrument's prior, ready to decode and differentiate. Not `Sync`: one per worker thread.
pub struct Prior {
    /// The verified manifest (shown in UIs, and the source of `stem`).
    manifest: Manifest,
    /// The prior folder it was loaded from.
    dir: PathBuf,
    /// Where the sessions run (CPU after a GPU fallback).
    backend: Backend,
    /// What the graphs model; a waveform prior has only its score graphs.
    domain: Domain,
    /// z → s (spectrogram priors).
    decode: Option<LazySession>,
    /// (z, g, gamma) → (s, grad_z, logp) (spectrogram priors).
    grad: Option<LazySession>,
    /// The gradient as a forward and a backward graph, when the prior lists them; the search's
    /// iterations then run the flow forward once instead of twice.
    split: Option<SplitGradient>,
    /// s → (∇ₛ log p(s), log p(s)), when the prior lists a `score` graph (x → (∇ₓ log p(x),
    /// log p(x)) for a waveform prior, which always has one).
    score: Option<LazySession>,
    /// (s, σ) → (∇ₛ log p_σ(s), log p_σ(s)), when the prior has an `annealing` section (over
    /// waveforms for a waveform prior).
    noisy_score: Option<LazySession>,
    /// The `annealing` section's noise levels, descending (empty without the section).
    ladder: Vec<f32>,
    /// The shared weights the sessions were given in memory, held (never read) for as long as
    /// they run: ONNX Runtime may refer to the buffer rather than copy it.
    #[allow(dead_code)]
    weights: Option<ExternalData>,
    /// Where `grad` writes its f(z) when [`Prior::backward_into`] falls back to it (sized on
    /// first use for a frame length, then reused).
    grad_scratch: Vec<f32>,
    /// Per-bin level gains stored in the manifest or already computed, so a separator built with
    /// these settings does not decode latent samples for them.
    level_gains: Option<CachedLevelGains>,
    /// The KL-NMF dictionary learned with the flow, when the prior has one (the NMF expert).
    nmf: Option<NmfDictionary>,
}

/// Runs a score graph (`score`, or the `annealing` section's `noisy_score`) on `s`
/// (`[1, channels, time]`, the role's channels), with `sigma` as its noise level when given:
/// writes the score to `score_out` and returns log p. The caller checks `time` against the
/// prior's time multiple.
fn run_score(
    score: &mut LazySession,
    s: &[f32],
    sigma: Option<f32>,
    time: usize,
    score_out: &mut [f32],
) -> Result<f32, PriorError> {
    let role = score.role();
    let graph = role.name();
    let (input, _) = role.inputs()[0];
    let channels = role.channels();
    let len = channels * time;
    check_len(input, len, s.len())?;
    check_len("score_out", len, score_out.len())?;
    let session = score.session()?;
    let run_error = |e: ort::Error| PriorError::Run {
        graph,
        reason: e.to_string(),
    };
    let s = TensorRef::from_array_view(([1usize, channels, time], s)).map_err(run_error)?;
    let level = [sigma.unwrap_or(0.0)];
    let outputs = if sigma.is_some() {
        let sigma = TensorRef::from_array_view(([1usize], &level[..])).map_err(run_error)?;
        session.run(ort::inputs![input => s, "sigma" => sigma])
    } else {
        session.run(ort::inputs![input => s])
    }
    .map_err(run_error)?;
    copy_output(
        &outputs,
        graph,
        "score",
        &[1, channels as i64, time as i64],
        score_out,
    )?;
    let mut logp = [0.0f32];
    copy_output(&outputs, graph, "logp", &[1], &mut logp)?;
    Ok(logp[0])
}

/// The noise-conditioned score, after checking that the prior has one and that `sigma` is a
/// usable noise level.
fn noisy_score_at(noisy_score: &mut Option<LazySession>, sigma: f32) -> Result<&mut LazySession, PriorError> {
    let graph = Role::NoisyScore.name();
    let score = noisy_score.as_mut().ok_or_else(|| not_listed(graph))?;
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(PriorError::Run {
            graph,
            reason: format!("the noise level must be finite and above 0, found {sigma}"),
        });
    }
    Ok(score)
}

/// The error for a graph the prior's manifest does not list.
fn not_listed(graph: &'static str) -> PriorError {
    PriorError::Run {
        graph,
        reason: format!("the prior lists no `{graph}` graph"),
    }
}

impl fmt::Debug for Prior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prior")
            .field("stem", &self.manifest.stem)
            .field("dir", &self.dir)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Prior {
    /// Verifies `dir/manifest.json` and its graphs, checks every graph's declared inputs and
    /// outputs against the contract and makes the sessions the first frame needs: the split
    /// gradient's (`decode` and `grad` without it) for a spectrogram prior, the score's for a
    /// waveform prior. The other graphs' sessions are made when they first run (`lazy_session`).
    pub fn load(runtime: &Runtime, dir: &Path, options: &SessionOptions) -> Result<Prior, PriorError> {
        crate::engine::fault::inject(crate::engine::fault::Site::PriorLoad);
        let (manifest, files) = Manifest::load_with_files(dir)?;
        let domain = files.domain;
        let weights = files.weights.as_ref();
        let mut backends = Vec::new();
        let split = match (&files.forward, &files.backward) {
            (Some(forward), Some(backward)) => {
                let (split, split_backend) =
                    SplitGradient::load(runtime, forward, backward, weights, options)?;
                backends.push(split_backend);
                Some(split)
            }
            // verify refuses one without the other.
            _ => None,
        };
        // The graph the first frame runs is opened now; the others are checked and wait.
        let mut graph =
            |role: Role, graph: Option<VerifiedGraph>, weights: Option<ExternalData>, now: bool| {
                graph
                    .map(|graph| {
                        if now {
                            let (opened, backend) =
                                LazySession::opened(runtime, role, graph, weights, options)?;
                            backends.push(backend);
                            Ok(opened)
                        } else {
                            LazySession::checked(role, graph, weights, options)
                        }
                    })
                    .transpose()
            };
        let flow_now = domain == Domain::Spectrogram && split.is_none();
        let decode = graph(Role::Decode, files.decode, weights.cloned(), flow_now)?;
        let grad = graph(Role::Grad, files.grad, weights.cloned(), flow_now)?;
        let (score_role, noisy_role) = match domain {
            Domain::Spectrogram => (Role::Score, Role::NoisyScore),
            Domain::Waveform => (Role::WaveformScore, Role::WaveformNoisyScore),
        };
        let score_now = domain == Domain::Waveform;
        let score = graph(score_role, files.score, weights.cloned(), score_now)?;
        let (noisy_score, ladder) = match files.annealing {
            Some(annealing) => (
                graph(noisy_role, Some(annealing.score), annealing.weights, false)?,
                annealing.ladder,
            ),
            None => (None, Vec::new()),
        };
        let backend = common_backend(&backends);
        let level_gains = manifest.level_gains.as_ref().map(|stored| CachedLevelGains {
            samples: stored.samples,
            trim: stored.trim,
            gains: stored.gains.clone(),
        });
        let nmf = match (&manifest.nmf, &files.nmf) {
            (Some(section), Some(bytes)) => Some(NmfDictionary::from_bytes(section, bytes)?),
            _ => None,
        };
        Ok(Prior {
            manifest,
            dir: dir.to_path_buf(),
            backend,
            domain,
            decode,
            grad,
            split,
            score,
            noisy_score,
            ladder,
            weights: files.weights,
            grad_scratch: Vec::new(),
            level_gains,
            nmf,
        })
    }

    /// [`Prior::load`] for every folder of `dirs`, on up to `threads` threads side by side
    /// (creating sessions is most of the start-up time). The priors come back in `dirs` order;
    /// the first failure in that order is the error.
    pub fn load_all(
        runtime: &Runtime,
        dirs: &[PathBuf],
        options: &SessionOptions,
        threads: usize,
    ) -> Result<Vec<Prior>, PriorError> {
        spread(threads, dirs.iter().collect(), &|dir: &PathBuf| {
            Prior::load(runtime, dir, options)
        })
    }

    /// The level gains computed for this prior so far, if any (see `priors::calibration`).
    pub fn cached_level_gains(&self) -> Option<&CachedLevelGains> {
        self.level_gains.as_ref()
    }

    /// Keeps level gains computed for this prior, so a separator rebuilt with it does not decode
    /// them again.
    pub fn cache_level_gains(&mut self, gains: CachedLevelGains) {
        self.level_gains = Some(gains);
    }

    /// The instrument name.
    pub fn stem(&self) -> &str {
        &self.manifest.stem
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The folder the prior was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The device the sessions actually run on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the prior has the split gradient (`forward` + `backward` graphs).
    pub fn has_split_gradient(&self) -> bool {
        self.split.is_some()
    }

    /// The prior's KL-NMF dictionary, if it has one.
    pub fn nmf_dictionary(&self) -> Option<&NmfDictionary> {
        self.nmf.as_ref()
    }

    /// Whether the prior has the `score` graph ([`Prior::score_into`]).
    pub fn has_score(&self) -> bool {
        self.score.is_some()
    }

    /// The prior's score in the magnitude domain: writes ∇ₛ log p(s) to `score_out` and returns
    /// log p(s) in nats (what `encode` reports). `s` (magnitudes, > 0) and `score_out` are
    /// `[1, 513, frames]` bin-major. An error of role `score` if the prior has no score graph.
    pub fn score_into(&mut self, s: &[f32], frames: usize, score_out: &mut [f32]) -> Result<f32, PriorError> {
        self.expect_domain(Domain::Spectrogram, "score_into")?;
        let graph = Role::Score.name();
        let score = self.score.as_mut().ok_or_else(|| not_listed(graph))?;
        checked_len(frames)?;
        run_score(score, s, None, frames, score_out)
    }

    /// Whether the prior has the `annealing` section's noise-conditioned score
    /// ([`Prior::noisy_score_into`]).
    pub fn has_noisy_score(&self) -> bool {
        self.noisy_score.is_some()
    }

    /// The noise levels the noise-conditioned flow was fine-tuned on, descending, in the flow's
    /// standardised units; empty without an `annealing` section.
    pub fn noise_ladder(&self) -> &[f32] {
        &self.ladder
    }

    /// The noise-conditioned prior's score at noise level `sigma` (> 0): writes ∇ₛ log p_σ(s) to
    /// `score_out` and returns log p_σ(s) in nats, as [`Prior::score_into`] does for the clean
    /// prior. An error of role `noisy_score` if the prior has no `annealing` section.
    pub fn noisy_score_into(
        &mut self,
        s: &[f32],
        frames: usize,
        sigma: f32,
        score_out: &mut [f32],
    ) -> Result<f32, PriorError> {
        self.expect_domain(Domain::Spectrogram, "noisy_score_into")?;
        let score = noisy_score_at(&mut self.noisy_score, sigma)?;
        checked_len(frames)?;
        run_score(score, s, Some(sigma), frames, score_out)
    }

    /// What the prior's graphs model.
    pub fn domain(&self) -> Domain {
        self.domain
    }

    /// The length every graph input's time axis must be a multiple of: STFT frames for a
    /// spectrogram prior, samples for a waveform prior.
    pub fn time_multiple(&self) -> usize {
        match self.domain {
            Domain::Spectrogram => TIME_MULTIPLE,
            Domain::Waveform => self.manifest.time_multiple,
        }
    }

    /// A waveform prior's score: writes ∇ₓ log p(x) (nats per unit amplitude) to `score_out` and
    /// returns log p(x) in nats for the whole segment. `x` (samples in [-1, 1] at 22.05 kHz) and
    /// `score_out` hold the same number of samples, a positive multiple of
    /// [`Prior::time_multiple`]. The session is made on the first call; nothing is allocated by
    /// the engine after that.
    pub fn waveform_score_into(&mut self, x: &[f32], score_out: &mut [f32]) -> Result<f32, PriorError> {
        self.expect_domain(Domain::Waveform, "waveform_score_into")?;
        self.check_samples(x.len())?;
        let score = self
            .score
            .as_mut()
            .ok_or_else(|| not_listed(Role::Score.name()))?;
        run_score(score, x, None, x.len(), score_out)
    }

    /// A waveform prior's noise-conditioned score at noise level `sigma` (> 0, the standard
    /// deviation in amplitude units of the Gaussian noise added to every sample): writes
    /// ∇ₓ log p_σ(x) to `score_out` and returns log p_σ(x), as [`Prior::waveform_score_into`]
    /// does for the clean prior. An error of role `noisy_score` without an `annealing` section.
    pub fn waveform_noisy_score_into(
        &mut self,
        x: &[f32],
        sigma: f32,
        score_out: &mut [f32],
    ) -> Result<f32, PriorError> {
        self.expect_domain(Domain::Waveform, "waveform_noisy_score_into")?;
        self.check_samples(x.len())?;
        let score = noisy_score_at(&mut self.noisy_score, sigma)?;
        run_score(score, x, Some(sigma), x.len(), score_out)
    }

    /// `Ok` if the prior is of `domain`, else the error naming `call`.
    fn expect_domain(&self, domain: Domain, call: &'static str) -> Result<(), PriorError> {
        if self.domain == domain {
            return Ok(());
        }
        Err(PriorError::WrongDomain {
            stem: self.manifest.stem.clone(),
            domain: self.domain,
            call,
            wanted: domain,
        })
    }

    /// `Ok` if `samples` is a positive multiple of the prior's time multiple.
    fn check_samples(&self, samples: usize) -> Result<(), PriorError> {
        let multiple = self.time_multiple();
        if samples > 0 && samples.is_multiple_of(multiple) {
            return Ok(());
        }
        Err(PriorError::BadSamples {
            stem: self.manifest.stem.clone(),
            samples,
            multiple,
        })
    }

    /// The `decode` or `grad` session (`graph` names it), or the error of a waveform prior,
    /// which has neither.
    fn flow_session<'a>(
        session: &'a mut Option<LazySession>,
        stem: &str,
        call: &'static str,
    ) -> Result<&'a mut Session, PriorError> {
        session
            .as_mut()
            .ok_or_else(|| PriorError::WrongDomain {
                stem: stem.to_string(),
                domain: Domain::Waveform,
                call,
                wanted: Domain::Spectrogram,
            })?
            .session()
    }

    /// The first half of a gradient evaluation: writes s = f(z) to `s_out` (`[1, 513, frames]`
    /// bin-major) and, with the split gradient, keeps what [`Prior::backward_into`] needs at this z.
    pub fn forward_into(&mut self, z: &[f32], frames: usize, s_out: &mut [f32]) -> Result<(), PriorError> {
        let len = checked_len(frames)?;
        check_len("z", len, z.len())?;
        check_len("s_out", len, s_out.len())?;
        match &mut self.split {
            Some(split) => split.forward_into(z, frames, s_out),
            None => self.decode_into(z, frames, s_out),
        }
    }

    /// The second half: writes grad_z = J_f(z)ᵀ·g − gamma·∇_z log p(s(z)) to `grad_out` and
    /// returns log p(s) in nats, for the z of the [`Prior::forward_into`] just before. Without the
    /// split gradient this runs `grad`, which computes the forward again.
    pub fn backward_into(
        &mut self,
        z: &[f32],
        g: &[f32],
        gamma: f32,
        frames: usize,
        grad_out: &mut [f32],
    ) -> Result<f32, PriorError> {
        let len = checked_len(frames)?;
        check_len("z", len, z.len())?;
        check_len("g", len, g.len())?;
        check_len("grad_out", len, grad_out.len())?;
        if let Some(split) = &mut self.split {
            return split.backward_into(z, g, gamma, frames, grad_out);
        }
        let mut scratch = std::mem::take(&mut self.grad_scratch);
        scratch.resize(len, 0.0);
        let result = self.grad_into(z, g, gamma, frames, &mut scratch, grad_out);
        self.grad_scratch = scratch;
        result
    }

    /// s = f(z) for one item: `z` and `s_out` are `[1, 513, frames]` bin-major.
    pub fn decode_into(&mut self, z: &[f32], frames: usize, s_out: &mut [f32]) -> Result<(), PriorError> {
        let len = checked_len(frames)?;
        check_len("z", len, z.len())?;
        check_len("s_out", len, s_out.len())?;
        let graph = Role::Decode.name();
        let run_error = |e: ort::Error| PriorError::Run {
            graph,
            reason: e.to_string(),
        };
        let decode = Self::flow_session(&mut self.decode, &self.manifest.stem, "decode_into")?;
        let z = TensorRef::from_array_view(([1usize, BINS, frames], z)).map_err(run_error)?;
        let outputs = decode.run(ort::inputs!["z" => z]).map_err(run_error)?;
        copy_output(&outputs, graph, "s", &[1, BINS as i64, frames as i64], s_out)
    }

    /// One gradient evaluation: writes s = f(z) to `s_out` and
    /// grad_z = J_f(z)ᵀ·g − gamma·∇_z log p(s(z)) to `grad_out`, and returns log p(s) in nats.
    /// `z`, `g`, `s_out`, `grad_out` are `[1, 513, frames]` bin-major.
    pub fn grad_into(
        &mut self,
        z: &[f32],
        g: &[f32],
        gamma: f32,
        frames: usize,
        s_out: &mut [f32],
        grad_out: &mut [f32],
    ) -> Result<f32, PriorError> {
        let len = checked_len(frames)?;
        check_len("z", len, z.len())?;
        check_len("g", len, g.len())?;
        check_len("s_out", len, s_out.len())?;
        check_len("grad_out", len, grad_out.len())?;
        let graph = Role::Grad.name();
        let run_error = |e: ort::Error| PriorError::Run {
            graph,
            reason: e.to_string(),
        };
        let grad = Self::flow_session(&mut self.grad, &self.manifest.stem, "grad_into")?;
        let gamma = [gamma];
        let shape = [1usize, BINS, frames];
        let z = TensorRef::from_array_view((shape, z)).map_err(run_error)?;
        let g = TensorRef::from_array_view((shape, g)).map_err(run_error)?;
        let gamma = TensorRef::from_array_view(([1usize], &gamma[..])).map_err(run_error)?;
        let outputs = grad
            .run(ort::inputs!["z" => z, "g" => g, "gamma" => gamma])
            .map_err(run_error)?;
        let full = [1, BINS as i64, frames as i64];
        copy_output(&outputs, graph, "s", &full, s_out)?;
        copy_output(&outputs, graph, "grad_z", &full, grad_out)?;
        let mut logp = [0.0f32];
        copy_output(&outputs, graph, "logp", &[1], &mut logp)?;
        Ok(logp[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::priors::manifest::MANIFEST_FILE;
    use crate::engine::priors::manifest_error::ManifestError;
    use crate::engine::priors::runtime::RuntimeError;
    use crate::engine::priors::runtime::RuntimeOptions;
    use std::fs;
    use std::sync::Arc;

    fn fixture(stem: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/toy_prior")
            .join(stem)
    }

    /// The toy prior's per-bin a and b (written by `tests/fixtures/make_toy_prior.py`).
    fn params(stem: &str) -> (Vec<f32>, Vec<f32>) {
        #[derive(serde::Deserialize)]
        struct Params {
            a: Vec<f32>,
            b: Vec<f32>,
        }
        let text = fs::read_to_string(fixture(stem).join("params.json")).unwrap();
        let p: Params = serde_json::from_str(&text).unwrap();
        (p.a, p.b)
    }

    fn runtime() -> Arc<Runtime> {
        Runtime::load(&RuntimeOptions::default()).unwrap()
    }

    /// Deterministic values in roughly [-1, 1].
    fn wave(len: usize, phase: f32) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * 0.37 + phase).sin()).collect()
    }

    #[test]
    fn decode_and_grad_match_the_closed_form() {
        let runtime = runtime();
        let mut prior = Prior::load(&runtime, &fixture("toy"), &SessionOptions::default()).unwrap();
        assert_eq!(prior.stem(), "toy");
        assert_eq!(prior.backend(), Backend::Cpu);
        let (a, b) = params("toy");
        let frames = 6;
        let len = BINS * frames;
        let z = wave(len, 0.3);
        let g = wave(len, 1.1);
        let gamma = 0.25f32;
        let mut s = vec![0.0; len];
        prior.decode_into(&z, frames, &mut s).unwrap();
        let mut s2 = vec![0.0; len];
        let mut grad = vec![0.0; len];
        let logp = prior
            .grad_into(&z, &g, gamma, frames, &mut s2, &mut grad)
            .unwrap();

        let mut expected_logp = 0.0f64;
        for bin in 0..BINS {
            for t in 0..frames {
                let i = bin * frames + t;
                let (a, b, z) = (a[bin] as f64, b[bin] as f64, z[i] as f64);
                let expected_s = (a * z + b).exp();
                let expected_grad = a * expected_s * g[i] as f64 + gamma as f64 * (z + a);
                assert!((s[i] as f64 - expected_s).abs() <= 1e-5 * expected_s, "s[{i}]");
                assert!(
                    (s2[i] as f64 - expected_s).abs() <= 1e-5 * expected_s,
                    "grad s[{i}]"
                );
                assert!(
                    (grad[i] as f64 - expected_grad).abs() <= 1e-5 * (1.0 + expected_grad.abs()),
                    "grad[{i}]"
                );
                expected_logp +=
                    -0.5 * z * z - 0.5 * (2.0 * std::f64::consts::PI).ln() - (a * z + b + a.ln());
            }
        }
        assert!(
            (logp as f64 - expected_logp).abs() <= 1e-4 * expected_logp.abs(),
            "{logp} vs {expected_logp}"
        );
    }

    #[test]
    fn bad_buffers_and_frames_are_errors() {
        let runtime = runtime();
        let mut prior = Prior::load(&runtime, &fixture("toy"), &SessionOptions::default()).unwrap();
        let mut s = vec![0.0; BINS * 4];
        assert!(matches!(
            prior.decode_into(&[0.0; 10], 4, &mut s),
            Err(PriorError::BufferLength { buffer: "z", .. })
        ));
        assert!(matches!(
            prior.decode_into(&vec![0.0; BINS * 3], 3, &mut s),
            Err(PriorError::BadFrames { .. })
        ));
    }

    #[test]
    fn non_finite_outputs_are_errors() {
        let runtime = runtime();
        let mut prior = Prior::load(&runtime, &fixture("toy"), &SessionOptions::default()).unwrap();
        let frames = 2;
        let mut z = vec![0.0; BINS * frames];
        z[5] = 1e6; // exp(a·z + b) overflows f32
        let mut s = vec![0.0; BINS * frames];
        match prior.decode_into(&z, frames, &mut s) {
            Err(PriorError::NonFinite {
                graph: "decode",
                tensor: "s",
            }) => {}
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }

    /// A folder `toy` in a new temporary directory (kept alive by the first value) holding the
    /// toy fixture's `graphs`; the caller writes the rest.
    fn toy_copy(graphs: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("toy");
        fs::create_dir(&dir).unwrap();
        for f in graphs {
            fs::copy(fixture("toy").join(f), dir.join(f)).unwrap();
        }
        (root, dir)
    }

    /// Writes `manifest` into `dir`.
    fn write_manifest(dir: &Path, manifest: &Manifest) {
        fs::write(dir.join(MANIFEST_FILE), serde_json::to_string(manifest).unwrap()).unwrap();
    }

    #[test]
    fn a_graph_breaking_the_interface_is_named() {
        // A copy of the toy prior whose grad graph is the decode graph (wrong inputs/outputs),
        // with the manifest's hash updated so only the interface check can catch it.
        let (_root, dir) = toy_copy(&["decode.onnx", "encode.onnx"]);
        fs::copy(fixture("toy").join("decode.onnx"), dir.join("grad.onnx")).unwrap();
        let mut manifest = Manifest::load(&fixture("toy")).unwrap();
        manifest.graphs.grad.as_mut().unwrap().sha256 =
            manifest.graphs.decode.as_ref().unwrap().sha256.clone();
        write_manifest(&dir, &manifest);
        match Prior::load(&runtime(), &dir, &SessionOptions::default()) {
            Err(PriorError::GraphInterface {
                graph: "grad",
                tensor,
                ..
            }) => assert_eq!(tensor, "g"),
            other => panic!("expected GraphInterface, got {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_graph_with_a_matching_hash_is_refused_before_a_session() {
        let (_root, dir) = toy_copy(&["grad.onnx", "encode.onnx"]);
        fs::write(dir.join("decode.onnx"), b"not a protobuf at all").unwrap();
        let mut manifest = Manifest::load(&fixture("toy")).unwrap();
        manifest.graphs.decode.as_mut().unwrap().sha256 =
            crate::engine::priors::manifest::sha256_file(&dir.join("decode.onnx")).unwrap();
        write_manifest(&dir, &manifest);
        let result = Prior::load(&runtime(), &dir, &SessionOptions::default());
        match result {
            Err(PriorError::Manifest(ManifestError::NotOnnx { file, .. })) => {
                assert_eq!(file, dir.join("decode.onnx"))
            }
            other => panic!("expected NotOnnx, got {other:?}"),
        }
        // A protobuf that parses but is no model is the runtime's to refuse.
        fs::write(dir.join("decode.onnx"), b"\x08\x07").unwrap(); // ir_version 7, no graph
        let mut manifest = Manifest::load(&dir).unwrap();
        manifest.graphs.decode.as_mut().unwrap().sha256 =
            crate::engine::priors::manifest::sha256_file(&dir.join("decode.onnx")).unwrap();
        write_manifest(&dir, &manifest);
        let result = Prior::load(&runtime(), &dir, &SessionOptions::default());
        assert!(
            matches!(result, Err(PriorError::Runtime(RuntimeError::Session { .. }))),
            "{result:?}"
        );
    }

    /// Real priors shipped in `models/priors/` (from the training side), when present: each must
    /// load, decode to positive finite magnitudes, and give a finite gradient (and a finite score,
    /// when it lists the graph).
    #[test]
    fn shipped_priors_load_when_present() {
        use crate::engine::priors::catalog::{shipped_priors_dir, PriorCatalog};
        let Some(shipped) = shipped_priors_dir() else {
            return;
        };
        let catalog = PriorCatalog::discover(&[shipped]);
        let runtime = runtime();
        for entry in catalog.entries() {
            let mut prior = Prior::load(&runtime, &entry.dir, &SessionOptions::default())
                .unwrap_or_else(|e| panic!("{}: {e}", entry.dir.display()));
            let frames = 4;
            let len = BINS * frames;
            let z = vec![0.0; len];
            let mut s = vec![0.0; len];
            prior.decode_into(&z, frames, &mut s).unwrap();
            assert!(s.iter().all(|&v| v > 0.0), "{}", entry.stem);
            let mut grad = vec![0.0; len];
            let g = vec![1.0; len];
            let logp = prior.grad_into(&z, &g, 0.5, frames, &mut s, &mut grad).unwrap();
            assert!(logp.is_finite(), "{}", entry.stem);
            if prior.has_score() {
                let mut score = vec![0.0; len];
                let logp = prior.score_into(&s, frames, &mut score).unwrap();
                assert!(logp.is_finite(), "{}", entry.stem);
            }
        }
    }

    /// The stored level gains are the ones the engine computes, and are what a loaded prior
    /// uses; gains stored for other graphs are refused, naming the field.
    #[test]
    fn stored_level_gains_are_the_computed_ones_and_belong_to_their_graphs() {
        use crate::engine::priors::calibration::{frame_level_gains, level_gains_section};
        let runtime = runtime();
        let (_root, dir) = shipped_bass_copy(|_| {});
        let mut prior = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        let stored = prior
            .manifest()
            .level_gains
            .clone()
            .expect("the shipped priors store them");
        let computed = level_gains_section(&mut prior, stored.samples, stored.trim).unwrap();
        assert_eq!(computed, stored);
        assert_eq!(
            frame_level_gains(&mut prior, stored.samples, stored.trim).unwrap(),
            stored.gains
        );
        let (_root, stale) = shipped_bass_copy(|m| {
            m["level_gains"]["decode_sha256"] = serde_json::json!("0".repeat(64));
        });
        let error = Prior::load(&runtime, &stale, &SessionOptions::default()).unwrap_err();
        assert!(error.to_string().contains("level_gains.decode_sha256"), "{error}");
        let (_root, short) = shipped_bass_copy(|m| {
            m["level_gains"]["gains"] = serde_json::json!([1.0, 2.0]);
        });
        let error = Prior::load(&runtime, &short, &SessionOptions::default()).unwrap_err();
        assert!(error.to_string().contains("513 values"), "{error}");
    }

    /// What a graph declares, read from its bytes, is what ONNX Runtime reports for its session,
    /// for every graph of every shipped prior: the check made at load without a session is the
    /// one a session would make.
    #[test]
    fn graph_interfaces_read_from_bytes_match_the_sessions() {
        use crate::engine::priors::catalog::{shipped_priors_dir, PriorCatalog};
        use crate::engine::priors::graph_interface::GraphInterface;
        let Some(shipped) = shipped_priors_dir() else {
            return;
        };
        let runtime = runtime();
        for entry in PriorCatalog::discover(&[shipped]).entries() {
            let (_, files) = Manifest::load_with_files(&entry.dir).unwrap();
            let weights = files.weights.clone();
            let annealing = files.annealing.as_ref();
            let graphs = [
                &files.decode,
                &files.grad,
                &files.forward,
                &files.backward,
                &files.score,
            ]
            .into_iter()
            .flatten()
            .map(|g| (g, weights.as_ref()))
            .chain(annealing.map(|a| (&a.score, a.weights.as_ref())));
            for (graph, external) in graphs {
                let (session, _) = runtime
                    .session(graph, external, &SessionOptions::default())
                    .unwrap();
                assert_eq!(
                    GraphInterface::of_bytes(&graph.bytes).unwrap(),
                    GraphInterface::of_session(&session),
                    "{}",
                    graph.path.display()
                );
            }
        }
    }

    /// A copy of the shipped `bass` prior in a temporary folder, its manifest edited by `edit`.
    fn shipped_bass_copy(edit: impl FnOnce(&mut serde_json::Value)) -> (tempfile::TempDir, PathBuf) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/priors/bass");
        crate::engine::priors::manifest::edited_prior_copy(&source, edit)
    }

    /// The shipped priors carry the split gradient; its forward and backward halves give exactly
    /// what `decode` and `grad` give (the same operations in two graphs), and the same prior
    /// without the split falls back to `decode` + `grad` with the same results.
    #[test]
    fn the_split_gradient_equals_decode_and_grad() {
        let runtime = runtime();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/priors/bass");
        let mut split = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        assert!(split.has_split_gradient());
        let (_root, plain_dir) = shipped_bass_copy(|j| {
            let graphs = j["graphs"].as_object_mut().unwrap();
            graphs.remove("forward");
            graphs.remove("backward");
        });
        let mut plain = Prior::load(&runtime, &plain_dir, &SessionOptions::default()).unwrap();
        assert!(!plain.has_split_gradient());
        let frames = 12;
        let len = BINS * frames;
        let z: Vec<f32> = wave(len, 0.2).iter().map(|v| 0.5 * v).collect();
        let g = wave(len, 0.9);
        let (mut s_grad, mut grad_ref, mut s_dec) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        let logp_ref = split
            .grad_into(&z, &g, 0.3, frames, &mut s_grad, &mut grad_ref)
            .unwrap();
        split.decode_into(&z, frames, &mut s_dec).unwrap();
        for prior in [&mut split, &mut plain] {
            let (mut s, mut grad) = (vec![0.0; len], vec![0.0; len]);
            prior.forward_into(&z, frames, &mut s).unwrap();
            let logp = prior.backward_into(&z, &g, 0.3, frames, &mut grad).unwrap();
            assert_eq!(s, s_grad);
            assert_eq!(s, s_dec);
            assert_eq!(logp, logp_ref);
            let worst = grad
                .iter()
                .zip(&grad_ref)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = grad_ref.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(worst <= 1e-6 * scale, "max difference {worst} of {scale}");
        }
        // A backward half pairs with the forward half just before it.
        let mut grad = vec![0.0; len];
        assert!(matches!(
            split.backward_into(&z, &g, 0.3, frames, &mut grad),
            Err(PriorError::Run {
                graph: "backward",
                ..
            })
        ));
        let mut s = vec![0.0; len];
        split.forward_into(&z, frames, &mut s).unwrap();
        assert!(split
            .backward_into(&z, &g, 0.3, frames + 2, &mut vec![0.0; len + 2 * BINS])
            .is_err());
    }

    /// Sessions are made from the bytes that were hashed, the shared weights included: once the
    /// prior's files are verified, replacing them on disk changes nothing that runs.
    #[test]
    fn sessions_run_the_verified_bytes_not_the_files_on_disk() {
        let runtime = runtime();
        let (_root, dir) = shipped_bass_copy(|_| {});
        let (_, files) = Manifest::load_with_files(&dir).unwrap();
        assert!(files.weights.is_some(), "the shipped priors share their weights");
        for entry in fs::read_dir(&dir).unwrap() {
            fs::write(entry.unwrap().path(), b"replaced after the check").unwrap();
        }
        let (mut decode, _) = runtime
            .session(
                files.decode.as_ref().unwrap(),
                files.weights.as_ref(),
                &SessionOptions::default(),
            )
            .unwrap();
        let mut reference = Prior::load(
            &runtime,
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/priors/bass"),
            &SessionOptions::default(),
        )
        .unwrap();
        let frames = 4;
        let len = BINS * frames;
        let z: Vec<f32> = wave(len, 0.4).iter().map(|v| 0.5 * v).collect();
        let mut expected = vec![0.0; len];
        reference.decode_into(&z, frames, &mut expected).unwrap();
        let input = TensorRef::from_array_view(([1usize, BINS, frames], z.as_slice())).unwrap();
        let outputs = decode.run(ort::inputs!["z" => input]).unwrap();
        let (_, s) = outputs["s"].try_extract_tensor::<f32>().unwrap();
        assert_eq!(s, expected.as_slice());
    }

    /// Deterministic uniform values in [-1, 1) (a 64-bit LCG, high bits).
    fn uniform(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The shipped score graph is the gradient of log p(s): along random directions v its
    /// ⟨score, v⟩ agrees with central finite differences of its own logp, and that logp is the
    /// encode graph's. The finite differences are of a float32 sum of ~10⁴ terms, so the error
    /// is measured against Σ|score·v|, the size of the terms whose rounding they see.
    #[test]
    fn the_score_is_the_gradient_of_the_encode_logp() {
        let runtime = runtime();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/priors/bass");
        let mut prior = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        assert!(prior.has_score());
        let frames = 2;
        let len = BINS * frames;
        let z: Vec<f32> = uniform(len, 1).iter().map(|v| 0.8 * v).collect();
        let mut s = vec![0.0; len];
        prior.decode_into(&z, frames, &mut s).unwrap();
        let mut score = vec![0.0; len];
        let logp = prior.score_into(&s, frames, &mut score).unwrap();

        let (_, files) = Manifest::load_with_files(&dir).unwrap();
        let (mut encode, _) = runtime
            .session(
                files.encode.as_ref().unwrap(),
                files.weights.as_ref(),
                &SessionOptions::default(),
            )
            .unwrap();
        let input = TensorRef::from_array_view(([1usize, BINS, frames], s.as_slice())).unwrap();
        let outputs = encode.run(ort::inputs!["s" => input]).unwrap();
        let (_, encode_logp) = outputs["logp"].try_extract_tensor::<f32>().unwrap();
        println!("logp: score graph {logp}, encode graph {}", encode_logp[0]);
        assert!(
            (logp - encode_logp[0]).abs() <= 1e-6 * logp.abs(),
            "score logp {logp}, encode logp {}",
            encode_logp[0]
        );

        let dense = uniform(len, 2);
        let sparse: Vec<f32> = uniform(len, 3)
            .iter()
            .map(|&u| {
                if u > 0.95 {
                    1.0
                } else if u < -0.95 {
                    -1.0
                } else {
                    0.0
                }
            })
            .collect();
        let aligned: Vec<f32> = uniform(len, 4)
            .iter()
            .zip(score.iter().zip(&s))
            .map(|(u, (g, s))| (0.5 + 0.25 * (u + 1.0)) * (g * s).signum())
            .collect();
        let step = 1e-3f32;
        let (mut plus, mut minus, mut scratch) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        for (name, d) in [("dense", dense), ("sparse", sparse), ("aligned", aligned)] {
            // v = s·d: a relative perturbation, so s ± step·v stays positive.
            let v: Vec<f32> = s.iter().zip(&d).map(|(s, d)| s * d).collect();
            for i in 0..len {
                plus[i] = s[i] + step * v[i];
                minus[i] = s[i] - step * v[i];
            }
            let logp_plus = prior.score_into(&plus, frames, &mut scratch).unwrap() as f64;
            let logp_minus = prior.score_into(&minus, frames, &mut scratch).unwrap() as f64;
            let difference = (logp_plus - logp_minus) / (2.0 * step as f64);
            let directional: f64 = score.iter().zip(&v).map(|(g, v)| *g as f64 * *v as f64).sum();
            let scale: f64 = score
                .iter()
                .zip(&v)
                .map(|(g, v)| (*g as f64 * *v as f64).abs())
                .sum();
            let error = (difference - directional).abs();
            println!(
                "{name}: <score, v> {directional:.4}, finite difference {difference:.4}, \
                 error {error:.3e} ({:.2e} of <score, v>, {:.2e} of sum |score v|)",
                error / directional.abs(),
                error / scale
            );
            assert!(error <= 1e-2 * scale, "{name}: error {error} of {scale}");
        }
    }

    /// The noise-conditioned score of the `annealing` section is the gradient of its own log-density
    /// at every level of the ladder (central differences along a relative perturbation), and
    /// smooths with the noise: its log-density at the mixture's even split changes with σ.
    #[test]
    fn the_noisy_score_is_the_gradient_of_its_logp_at_every_level() {
        let runtime = runtime();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/priors/sine");
        let mut prior = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        assert!(prior.has_noisy_score());
        let ladder = prior.noise_ladder().to_vec();
        assert!(ladder.len() >= 2 && ladder.windows(2).all(|w| w[0] > w[1]));
        let frames = 2;
        let len = BINS * frames;
        let mut s = vec![0.0; len];
        prior.decode_into(&uniform(len, 5), frames, &mut s).unwrap();
        let v: Vec<f32> = s.iter().zip(uniform(len, 6)).map(|(s, d)| s * d).collect();
        let step = 1e-3f32;
        let plus: Vec<f32> = s.iter().zip(&v).map(|(s, v)| s + step * v).collect();
        let minus: Vec<f32> = s.iter().zip(&v).map(|(s, v)| s - step * v).collect();
        let (mut score, mut scratch) = (vec![0.0; len], vec![0.0; len]);
        let mut logps = Vec::new();
        for &sigma in [ladder[0], ladder[ladder.len() / 2], ladder[ladder.len() - 1]].iter() {
            let logp = prior.noisy_score_into(&s, frames, sigma, &mut score).unwrap();
            assert!(logp.is_finite() && score.iter().all(|g| g.is_finite()));
            let logp_plus = prior
                .noisy_score_into(&plus, frames, sigma, &mut scratch)
                .unwrap() as f64;
            let logp_minus = prior
                .noisy_score_into(&minus, frames, sigma, &mut scratch)
                .unwrap() as f64;
            let difference = (logp_plus - logp_minus) / (2.0 * step as f64);
            let directional: f64 = score.iter().zip(&v).map(|(g, v)| *g as f64 * *v as f64).sum();
            let scale: f64 = score
                .iter()
                .zip(&v)
                .map(|(g, v)| (*g as f64 * *v as f64).abs())
                .sum();
            let error = (difference - directional).abs();
            println!("σ {sigma}: <score, v> {directional:.4}, finite difference {difference:.4}");
            assert!(error <= 1e-2 * scale, "σ {sigma}: error {error} of {scale}");
            logps.push(logp);
        }
        assert!(
            logps.windows(2).any(|w| w[0] != w[1]),
            "σ changes nothing: {logps:?}"
        );
        for bad in [0.0, -1.0, f32::NAN] {
            let err = prior.noisy_score_into(&s, frames, bad, &mut score).unwrap_err();
            assert!(err.to_string().contains("noise level"), "{err}");
        }
        let mut toy = Prior::load(&runtime, &fixture("toy"), &SessionOptions::default()).unwrap();
        assert!(!toy.has_noisy_score() && toy.noise_ladder().is_empty());
        let err = toy.noisy_score_into(&s, frames, 1.0, &mut score).unwrap_err();
        assert!(err.to_string().contains("`noisy_score`"), "{err}");
    }

    /// A prior without a `score` graph loads and runs; asking it for the score is an error naming
    /// the graph. A graph of the wrong kind listed as `score` is refused at load.
    #[test]
    fn the_score_graph_is_optional_and_checked() {
        let runtime = runtime();
        let mut toy = Prior::load(&runtime, &fixture("toy"), &SessionOptions::default()).unwrap();
        assert!(!toy.has_score());
        let frames = 2;
        let mut score = vec![0.0; BINS * frames];
        assert!(matches!(
            toy.score_into(&vec![1.0; BINS * frames], frames, &mut score),
            Err(PriorError::Run { graph: "score", .. })
        ));
        let (_root, dir) = shipped_bass_copy(|j| {
            j["graphs"].as_object_mut().unwrap().remove("score");
        });
        let mut bass = Prior::load(&runtime, &dir, &SessionOptions::default()).unwrap();
        assert!(!bass.has_score() && bass.has_split_gradient());
        let mut s = vec![0.0; BINS * frames];
        bass.decode_into(&vec![0.0; BINS * frames], frames, &mut s)
            .unwrap();
        assert_eq!(
            interface_error_listing("encode", "score"),
            ("score", "score".into())
        );
    }

    /// The graph and tensor named when a copy of the shipped bass prior lists its graph `role`
    /// also under `as_role`, which must fail the interface check.
    fn interface_error_listing(role: &str, as_role: &str) -> (&'static str, String) {
        let (_root, dir) = shipped_bass_copy(|j| {
            let graph = j["graphs"][role].clone();
            j["graphs"][as_role] = graph;
        });
        match Prior::load(&runtime(), &dir, &SessionOptions::default()) {
            Err(PriorError::GraphInterface { graph, tensor, .. }) => (graph, tensor),
            other => panic!("expected an interface error, got {other:?}"),
        }
    }

    /// A manifest that lists graphs of the wrong kind under `forward` and `backward` is refused
    /// with the role and the missing tensor named.
    #[test]
    fn a_split_gradient_breaking_the_interface_is_named() {
        assert_eq!(
            interface_error_listing("decode", "forward"),
            ("forward", "logp".into())
        );
        assert_eq!(
            interface_error_listing("grad", "backward"),
            ("backward", "s".into())
        );
    }
}
