"""(a) exported grad.onnx (hand-written adjoint) vs jax.grad of the same objective.

Objective: L(z) = sum(g * s(z)) - gamma * sum_b logp_b(z); grad.onnx returns dL/dz.
Relative error = max|onnx - jax| / max|jax| over the whole tensor (float32 on both
sides, non-zero random weights: the zero-initialised last layers are perturbed).
"""
import numpy as np
import onnxruntime as ort
import pytest
import jax
import jax.numpy as jnp

from stemflow_training import glow, export
from stemflow_training.ops import JaxOps

TOL = 1e-4


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def model():
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, 1)
    graphs = export.build_graphs(cfg, params, norm)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = {k: ort.InferenceSession(m.SerializeToString(), so, providers=['CPUExecutionProvider'])
            for k, m in graphs.items()}
    return cfg, params, norm, sess


def jax_reference(cfg, params, norm, z, g, gamma):
    ops = JaxOps()
    jp = jax.tree_util.tree_map(jnp.asarray, params)
    P = glow.prepare(cfg, jp, norm, ops, jnp)

    def obj(z):
        s, lp = glow.decode_logp(ops, cfg, P, z)
        return jnp.sum(g * s) - gamma * jnp.sum(lp), (s, lp)
    (_, (s, lp)), gz = jax.value_and_grad(obj, has_aux=True)(jnp.asarray(z))
    return np.asarray(s), np.asarray(gz), np.asarray(lp)


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_grad_onnx_matches_jax(model, gamma):
    cfg, params, norm, sess = model
    rng = np.random.default_rng(7)
    B, T = 2, 16
    z = (0.7 * rng.standard_normal((B, cfg.bins, T))).astype(np.float32)
    g = rng.standard_normal((B, cfg.bins, T)).astype(np.float32)
    s_ref, gz_ref, lp_ref = jax_reference(cfg, params, norm, z, g, gamma)
    s, gz, lp = sess['grad'].run(None, {'z': z, 'g': g, 'gamma': np.array([gamma], np.float32)})
    print(f"gamma={gamma}: rel err s {rel(s, s_ref):.2e} grad_z {rel(gz, gz_ref):.2e} "
          f"logp {rel(lp, lp_ref):.2e}")
    assert rel(s, s_ref) <= TOL
    assert rel(gz, gz_ref) <= TOL
    assert rel(lp, lp_ref) <= TOL
    (s_dec,) = sess['decode'].run(None, {'z': z})
    assert rel(s_dec, s_ref) <= TOL


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_forward_backward_onnx_match_grad(model, gamma):
    """The split gradient: forward.onnx then backward.onnx on its saved activations computes what
    grad.onnx computes (the same operations in two graphs), and so matches jax.grad."""
    cfg, params, norm, sess = model
    rng = np.random.default_rng(11)
    B, T = 2, 16
    z = (0.7 * rng.standard_normal((B, cfg.bins, T))).astype(np.float32)
    g = rng.standard_normal((B, cfg.bins, T)).astype(np.float32)
    gam = np.array([gamma], np.float32)
    names = [o.name for o in sess['forward'].get_outputs()]
    outs = dict(zip(names, sess['forward'].run(None, {'z': z})))
    assert names[:2] == ['s', 'logp'] and len(names) == 2 + 4 * cfg.steps
    feed = {k: v for k, v in outs.items() if k != 'logp'}
    feed.update(z=z, g=g, gamma=gam)
    (gz,) = sess['backward'].run(None, feed)
    s_ref, gz_ref, lp_ref = jax_reference(cfg, params, norm, z, g, gamma)
    assert rel(gz, gz_ref) <= TOL and rel(outs['s'], s_ref) <= TOL and rel(outs['logp'], lp_ref) <= TOL
    s1, gz1, lp1 = sess['grad'].run(None, {'z': z, 'g': g, 'gamma': gam})
    np.testing.assert_array_equal(outs['s'], s1)
    np.testing.assert_array_equal(outs['logp'], lp1)
    assert rel(gz, gz1) <= 1e-6


def test_jax_adjoint_matches_autodiff(model):
    """The same hand-written adjoint on the JAX backend (no ONNX involved)."""
    cfg, params, norm, _ = model
    rng = np.random.default_rng(3)
    z = (0.7 * rng.standard_normal((2, cfg.bins, 8))).astype(np.float32)
    g = rng.standard_normal(z.shape).astype(np.float32)
    ops = JaxOps()
    P = glow.prepare(cfg, jax.tree_util.tree_map(jnp.asarray, params), norm, ops, jnp)
    s, gz, lp = glow.grad_adjoint(ops, cfg, P, jnp.asarray(z), jnp.asarray(g), 0.5)
    s_ref, gz_ref, lp_ref = jax_reference(cfg, params, norm, z, g, 0.5)
    assert rel(np.asarray(gz), gz_ref) <= TOL
    assert rel(np.asarray(lp), lp_ref) <= TOL
