"""The score graph (hand-written adjoint of the encode direction) vs jax.grad of the flow's
log-density with respect to its input s, and its logp vs the encode graph's.

Relative error = max|onnx - jax| / max|jax| over the whole tensor (float32 on both sides). The
score in s contains the -1/s of the log-magnitude map, which dominates its largest values, so the
flow's own part is also checked alone: sigma * (s * score + 1) is the score of the standardised
x = (ln s - mu) / sigma, compared with jax.grad of the x-space density.
"""
import glob
import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import jax
import jax.numpy as jnp

from stemflow_training import glow, export
from stemflow_training.ops import JaxOps

TOL = 1e-4
PRIORS = os.path.join(os.path.dirname(__file__), '..', '..', 'priors')
SHIPPED = sorted(d for d in glob.glob(os.path.join(PRIORS, '*'))
                 if os.path.exists(os.path.join(d, 'score.onnx')))


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def session(model_or_path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(src, so, providers=['CPUExecutionProvider'])


@pytest.fixture(scope="module")
def model():
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, 1)
    graphs = export.build_graphs(cfg, params, norm)
    ops = JaxOps()
    P = glow.prepare(cfg, jax.tree_util.tree_map(jnp.asarray, params), norm, ops, jnp)
    return cfg, P, {k: session(graphs[k]) for k in ('decode', 'encode', 'score')}


def jax_reference(cfg, P, s):
    """jax.grad of sum_b log p(s_b) (encode direction, JAX backend) and of the x-space density."""
    ops = JaxOps()

    def logp(s_):
        return glow.encode_s(ops, cfg, P, s_)[1]
    lp, vjp = jax.vjp(logp, jnp.asarray(s))
    (score,) = vjp(jnp.ones_like(lp))
    x = (jnp.log(jnp.asarray(s)) - P['mu']) / P['sigma']

    def logpx(x_):
        z, ld = glow.encode_x(ops, cfg, P, x_)
        return jnp.sum(-0.5 * jnp.sum(z * z, axis=(1, 2)) + ld)
    score_x = jax.grad(logpx)(x)
    return np.asarray(score, np.float64), np.asarray(lp, np.float64), np.asarray(score_x, np.float64)


def x_score(s, score, sigma):
    """The score of x = (ln s - mu)/sigma from the score of s: d/dx = sigma s (d/ds) + sigma."""
    s, score = np.asarray(s, np.float64), np.asarray(score, np.float64)
    return np.asarray(sigma, np.float64) * (s * score + 1.0)


def random_inputs(cfg, P, rng, decode, B=2, T=16):
    """Magnitudes two ways: decoded from random latents (what the prior models) and drawn
    directly as exp(sigma x + mu) with random x (off the prior's typical set)."""
    z = (0.7 * rng.standard_normal((B, cfg.bins, T))).astype(np.float32)
    (s_dec,) = decode.run(None, {'z': z})
    x = rng.standard_normal((B, cfg.bins, T))
    s_raw = np.exp(np.asarray(P['sigma'], np.float64) * x + np.asarray(P['mu'], np.float64))
    return [('decoded', s_dec), ('random', s_raw.astype(np.float32))]


def check_score_graph(label, cfg, P, sess, s):
    """The score graph at s against jax.grad (in s and in x), its logp against JAX's and
    against the encode graph's (the same operations: equal to the bit)."""
    score_ref, lp_ref, score_x_ref = jax_reference(cfg, P, s)
    score, lp = sess['score'].run(None, {'s': s})
    _, lp_enc = sess['encode'].run(None, {'s': s})
    ex = rel(x_score(s, score, P['sigma']), score_x_ref)
    err = np.abs(np.asarray(score, np.float64) - score_ref)
    print(f"{label}: score max abs err {err.max():.2e} of max |score| {np.abs(score_ref).max():.2e} "
          f"(rel {rel(score, score_ref):.2e}), x-space rel {ex:.2e}, logp rel {rel(lp, lp_ref):.2e}")
    assert score.shape == s.shape and lp.shape == (s.shape[0],)
    assert rel(score, score_ref) <= TOL
    assert ex <= TOL
    assert rel(lp, lp_ref) <= TOL
    np.testing.assert_array_equal(lp, lp_enc)


def test_score_onnx_matches_jax_grad(model):
    cfg, P, sess = model
    rng = np.random.default_rng(5)
    for kind, s in random_inputs(cfg, P, rng, sess['decode']):
        check_score_graph(kind, cfg, P, sess, s)


def test_jax_score_adjoint_matches_autodiff(model):
    """The same hand-written adjoint on the JAX backend (no ONNX involved)."""
    cfg, P, sess = model
    rng = np.random.default_rng(9)
    for _, s in random_inputs(cfg, P, rng, sess['decode'], T=8):
        score_ref, lp_ref, _ = jax_reference(cfg, P, s)
        score, lp = glow.score_adjoint(JaxOps(), cfg, P, jnp.asarray(s))
        assert rel(score, score_ref) <= TOL
        assert rel(lp, lp_ref) <= TOL


def test_score_is_zero_below_the_encode_floor(model):
    """encode takes ln max(s, 1e-30): below that floor log p does not depend on s."""
    cfg, P, sess = model
    rng = np.random.default_rng(2)
    s = random_inputs(cfg, P, rng, sess['decode'], B=1, T=4)[0][1].copy()
    s[0, 3, 1], s[0, 100, 2], s[0, 200, 0] = 0.0, 1e-35, -1.0
    score, lp = sess['score'].run(None, {'s': s})
    _, lp_enc = sess['encode'].run(None, {'s': s})
    assert np.all(np.isfinite(score))
    assert score[0, 3, 1] == 0.0 and score[0, 100, 2] == 0.0 and score[0, 200, 0] == 0.0
    np.testing.assert_array_equal(lp, lp_enc)


def shipped_jax_constants(cfg, prior_dir):
    """The shipped prior's constants for the JAX backend, read from its graphs (the ONNX layout
    of the 1x1 group matrices, [G*gs, gs, 1], back to [G, gs, gs])."""
    P = export.prepared_from_graphs(cfg, prior_dir)(JaxOps())
    for st in P['steps']:
        for k in ('W', 'Winv'):
            st[k] = jnp.asarray(st[k]).reshape(cfg.groups, cfg.group_size, cfg.group_size)
    return jax.tree_util.tree_map(jnp.asarray, P)


@pytest.mark.parametrize("d", SHIPPED, ids=[os.path.basename(d) for d in SHIPPED])
def test_shipped_score_matches_jax_grad(d):
    """The shipped priors' score graphs (trained weights, shared weight file) against jax.grad of
    the same constants, and their logp against their encode graph's."""
    m = json.load(open(os.path.join(d, 'manifest.json')))['model']
    cfg = glow.Config(steps=m['steps'], hidden=m['hidden'], group_size=m['group_size'],
                      dilations=tuple(m['dilations']), kernel=m['kernel'])
    P = shipped_jax_constants(cfg, d)
    sess = {r: session(os.path.join(d, f'{r}.onnx')) for r in ('decode', 'encode', 'score')}
    rng = np.random.default_rng(3)
    for kind, s in random_inputs(cfg, P, rng, sess['decode'], B=1, T=32):
        check_score_graph(f"{os.path.basename(d)} {kind}", cfg, P, sess, s)
