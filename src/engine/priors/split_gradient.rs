//! A prior's gradient in two graphs (CONTRACT.md, "forward" and "backward"): `forward` runs the
//! flow's decode direction once and keeps the activations its reverse pass needs; `backward` turns
//! a cotangent into ∂/∂z from them. The latent search needs s = f(z) of every stem before any
//! stem's cotangent exists, so with `decode` + `grad` each iteration runs the flow forward twice;
//! with this pair, once.

use ort::session::Session;
use ort::value::{DynValue, TensorRef};

use crate::engine::constants::BINS;
use crate::engine::priors::graph_interface::GraphInterface;
use crate::engine::priors::prior_error::PriorError;
use crate::engine::priors::runtime::{Backend, Runtime, SessionOptions};
use crate::engine::priors::session_io::{common_backend, copy_output, Role};
use crate::engine::priors::verified_files::{ExternalData, VerifiedGraph};

/// Names of the forward outputs that are not saved activations.
const FORWARD_RESULTS: [&str; 2] = ["s", "logp"];
/// Names of the backward inputs that are not saved activations.
const BACKWARD_ARGUMENTS: [&str; 4] = ["z", "s", "g", "gamma"];

/// The two sessions and what the last forward run left for the backward run.
pub struct SplitGradient {
    /// z → (s, logp, saved activations).
    forward: Session,
    /// (z, s, g, gamma, saved activations) → grad_z.
    backward: Session,
    /// The saved activations' names: every forward output beyond `s` and `logp`, which must be
    /// exactly the backward inputs beyond `z`, `s`, `g` and `gamma`.
    saved_names: Vec<String>,
    /// What the last forward run produced, for the next backward run: the raw f(z) (the search
    /// keeps only calibrated copies), log p and the saved activations, with the time length they
    /// were made for. Taken by the backward run, so a backward run always pairs with the forward
    /// run just before it.
    pending: Option<Pending>,
}

/// One forward run's outputs, waiting for their backward run.
struct Pending {
    /// STFT frames of the run.
    frames: usize,
    /// f(z) as the forward graph returned it.
    s: DynValue,
    /// log p(f(z)) in nats.
    logp: f32,
    /// The saved activations, in `saved_names` order.
    saved: Vec<DynValue>,
}

impl SplitGradient {
    /// Creates both sessions and checks that each has the contract's inputs and outputs and that
    /// the forward's saved outputs are exactly the backward's extra inputs. Returns the backend
    /// both run on.
    pub fn load(
        runtime: &Runtime,
        forward_graph: &VerifiedGraph,
        backward_graph: &VerifiedGraph,
        external: Option<&ExternalData>,
        options: &SessionOptions,
    ) -> Result<(SplitGradient, Backend), PriorError> {
        let (forward, forward_backend) = runtime.session(forward_graph, external, options)?;
        let (backward, backward_backend) = runtime.session(backward_graph, external, options)?;
        let forward_interface = GraphInterface::of_session(&forward);
        let backward_interface = GraphInterface::of_session(&backward);
        forward_interface.check(Role::Forward)?;
        backward_interface.check(Role::Backward)?;
        let saved_names: Vec<String> = forward_interface
            .output_names()
            .filter(|n| !FORWARD_RESULTS.contains(n))
            .map(str::to_string)
            .collect();
        let mut extra_inputs: Vec<String> = backward_interface
            .input_names()
            .filter(|n| !BACKWARD_ARGUMENTS.contains(n))
            .map(str::to_string)
            .collect();
        let mut sorted = saved_names.clone();
        sorted.sort();
        extra_inputs.sort();
        if sorted != extra_inputs {
            return Err(PriorError::GraphInterface {
                graph: Role::Backward.name(),
                tensor: "saved activations".into(),
                expected: format!("the forward graph's extra outputs {}", sorted.join(", ")),
                found: extra_inputs.join(", "),
            });
        }
        let backend = common_backend(&[forward_backend, backward_backend]);
        Ok((
            SplitGradient {
                forward,
                backward,
                saved_names,
                pending: None,
            },
            backend,
        ))
    }

    /// Runs the forward graph: writes s = f(z) to `s_out` and keeps log p and the saved
    /// activations for [`SplitGradient::backward_into`].
    pub fn forward_into(&mut self, z: &[f32], frames: usize, s_out: &mut [f32]) -> Result<(), PriorError> {
        self.pending = None;
        let graph = Role::Forward.name();
        let run_error = |e: ort::Error| PriorError::Run {
            graph,
            reason: e.to_string(),
        };
        let z = TensorRef::from_array_view(([1usize, BINS, frames], z)).map_err(run_error)?;
        let mut outputs = self.forward.run(ort::inputs!["z" => z]).map_err(run_error)?;
        copy_output(&outputs, graph, "s", &[1, BINS as i64, frames as i64], s_out)?;
        let mut logp = [0.0f32];
        copy_output(&outputs, graph, "logp", &[1], &mut logp)?;
        let mut take = |name: &str| {
            outputs.remove(name).ok_or_else(|| PriorError::GraphInterface {
                graph,
                tensor: name.to_string(),
                expected: "an output".into(),
                found: "no such output".into(),
            })
        };
        let s = take("s")?;
        let saved = self
            .saved_names
            .iter()
            .map(|name| take(name))
            .collect::<Result<Vec<_>, _>>()?;
        self.pending = Some(Pending {
            frames,
            s,
            logp: logp[0],
            saved,
        });
        Ok(())
    }

    /// Runs the backward graph on the last forward run's activations: writes
    /// grad_z = J_f(z)ᵀ·g − gamma·∇_z log p(s(z)) to `grad_out` and returns log p(s) in nats.
    /// `z` must be the latent of that forward run.
    pub fn backward_into(
        &mut self,
        z: &[f32],
        g: &[f32],
        gamma: f32,
        frames: usize,
        grad_out: &mut [f32],
    ) -> Result<f32, PriorError> {
        let graph = Role::Backward.name();
        let pending = match self.pending.take() {
            Some(p) if p.frames == frames => p,
            _ => {
                return Err(PriorError::Run {
                    graph,
                    reason: format!("no forward run of {frames} frames to differentiate"),
                })
            }
        };
        let run_error = |e: ort::Error| PriorError::Run {
            graph,
            reason: e.to_string(),
        };
        let gamma = [gamma];
        let shape = [1usize, BINS, frames];
        let mut inputs: Vec<(&str, ort::session::SessionInputValue<'_>)> =
            Vec::with_capacity(BACKWARD_ARGUMENTS.len() + self.saved_names.len());
        inputs.push((
            "z",
            TensorRef::from_array_view((shape, z)).map_err(run_error)?.into(),
        ));
        inputs.push((
            "g",
            TensorRef::from_array_view((shape, g)).map_err(run_error)?.into(),
        ));
        inputs.push((
            "gamma",
            TensorRef::from_array_view(([1usize], &gamma[..]))
                .map_err(run_error)?
                .into(),
        ));
        inputs.push(("s", (&pending.s).into()));
        for (name, value) in self.saved_names.iter().zip(&pending.saved) {
            inputs.push((name.as_str(), value.into()));
        }
        let outputs = self.backward.run(inputs).map_err(run_error)?;
        copy_output(
            &outputs,
            graph,
            "grad_z",
            &[1, BINS as i64, frames as i64],
            grad_out,
        )?;
        Ok(pending.logp)
    }
}
