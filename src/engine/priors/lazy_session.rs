//! A graph of a prior whose session is made when the graph first runs.
//!
//! Making a session is most of a prior's load time, and most runs use only some of a prior's
//! graphs (the default search runs the split gradient; the score graphs serve other separators;
//! `decode` serves the level calibration when the prior stores none). Such a graph is checked
//! against the contract at load from its declared interface, read from its verified bytes, and
//! its session is made on its first run and then kept; a graph the first frame needs is opened
//! at load instead, so its backend is known and a failure shows before any audio is read.

use ort::session::Session;

use crate::engine::priors::graph_interface::GraphInterface;
use crate::engine::priors::prior_error::PriorError;
use crate::engine::priors::runtime::{Backend, Runtime, SessionOptions};
use crate::engine::priors::session_io::Role;
use crate::engine::priors::verified_files::{ExternalData, VerifiedGraph};

/// One checked graph and, once made, its session.
pub(crate) struct LazySession {
    /// What the graph is (its contract).
    role: Role,
    /// The verified graph the session is made from.
    graph: VerifiedGraph,
    /// The external data it reads its weights from.
    weights: Option<ExternalData>,
    /// How the prior's other sessions run.
    options: SessionOptions,
    /// The session, once made.
    session: Option<Session>,
}

impl LazySession {
    /// Checks the interface `graph` declares against the contract for `role`, without a session.
    pub fn checked(
        role: Role,
        graph: VerifiedGraph,
        weights: Option<ExternalData>,
        options: &SessionOptions,
    ) -> Result<LazySession, PriorError> {
        let interface = GraphInterface::of_bytes(&graph.bytes).map_err(|e| PriorError::GraphInterface {
            graph: role.name(),
            tensor: "the model".into(),
            expected: "a readable ONNX model".into(),
            found: e.to_string(),
        })?;
        interface.check(role)?;
        Ok(LazySession {
            role,
            graph,
            weights,
            options: *options,
            session: None,
        })
    }

    /// Makes the session now and checks the interface it reports; returns the graph and the
    /// backend the session runs on.
    pub fn opened(
        runtime: &Runtime,
        role: Role,
        graph: VerifiedGraph,
        weights: Option<ExternalData>,
        options: &SessionOptions,
    ) -> Result<(LazySession, Backend), PriorError> {
        let (session, backend) = runtime.session(&graph, weights.as_ref(), options)?;
        GraphInterface::of_session(&session).check(role)?;
        let opened = LazySession {
            role,
            graph,
            weights,
            options: *options,
            session: Some(session),
        };
        Ok((opened, backend))
    }

    /// The graph's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session, made now if this is the graph's first run.
    pub fn session(&mut self) -> Result<&mut Session, PriorError> {
        if self.session.is_none() {
            let runtime = Runtime::loaded().ok_or_else(|| PriorError::Run {
                graph: self.role.name(),
                reason: "ONNX Runtime is not loaded".into(),
            })?;
            let (session, _) = runtime.session(&self.graph, self.weights.as_ref(), &self.options)?;
            self.session = Some(session);
        }
        Ok(self.session.as_mut().expect("made above"))
    }
}
