"""The autoregressive μ-law WaveNet prior: causal, its continuous density close to normalised,
its hand-written score against jax.grad, and the exported graphs against the JAX model.

Relative error = max|a - b| / max|b| over the whole tensor (float32 on both sides).
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest

from stemflow_training import export_waveform, wavenet
from stemflow_training.ops import JaxOps

TOL = 1e-4
SMALL = wavenet.Config(blocks=2, layers=3, width=8)


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def params(seed=0, conditioned=False):
    rng = np.random.default_rng(seed)
    p = wavenet.init_params(SMALL, rng, conditioned=conditioned)
    if conditioned:
        p['in_ws'] = (0.3 * rng.standard_normal(p['in_ws'].shape)).astype(np.float32)
    return p


def wave(B=2, T=96, seed=1):
    return (0.2 * np.random.default_rng(seed).standard_normal((B, 1, T))).astype(np.float32)


def logits(p, x):
    ops = JaxOps()
    P = wavenet.prepare(SMALL, p, ops, jnp)
    y, _, _, _ = wavenet._mu_law(ops, jnp.asarray(x))
    return np.asarray(wavenet._network(ops, SMALL, P, y)[0])


def test_each_samples_distribution_depends_only_on_the_samples_before_it():
    p, x = params(), wave(B=1)
    t0 = 40
    x2 = x.copy()
    x2[0, 0, t0] += 0.3
    a, b = logits(p, x), logits(p, x2)
    np.testing.assert_array_equal(a[..., :t0 + 1], b[..., :t0 + 1])
    assert np.max(np.abs(a[..., t0 + 1] - b[..., t0 + 1])) > 1e-4


def test_the_continuous_density_of_a_sample_integrates_to_about_one():
    """p(x_1 | x_0) over x_1 in [-1, 1]: log-linear between codes, so at most the categorical's
    mass (Jensen) and not far below it."""
    p = params(seed=2)
    p['o2_w'] = p['o2_w'] * 8.0     # a peaked categorical
    y = np.linspace(-1, 1, 20001)
    x1 = np.sign(y) * np.expm1(np.abs(y) * np.log1p(wavenet.MU)) / wavenet.MU
    x = np.stack([np.full_like(x1, 0.1), x1], axis=1)[:, None, :].astype(np.float32)
    lp = np.asarray(wavenet.jax_logpx(SMALL, p, x), np.float64)
    lp0 = float(wavenet.jax_logpx(SMALL, p, x[:1, :, :1])[0])
    dxdy = np.gradient(x1, y)
    mass = np.trapezoid(np.exp(lp - lp0) * dxdy, y)
    assert 0.8 < mass <= 1.0 + 1e-3


@pytest.mark.parametrize('noise', [None, 0.05])
def test_the_hand_written_score_is_the_gradient_of_the_log_density(noise):
    p, x = params(conditioned=noise is not None), wave()
    sig = None if noise is None else jnp.full((2,), noise, jnp.float32)
    ref = jax.grad(lambda x: jnp.sum(wavenet.jax_logpx(SMALL, p, x, sig)))(x)
    ops = JaxOps()
    P = wavenet.prepare(SMALL, p, ops, jnp)
    g, lp = wavenet.score_adjoint(ops, SMALL, P, jnp.asarray(x), None if sig is None else jnp.log(sig))
    assert rel(g, np.asarray(ref)) < TOL
    assert rel(lp, np.asarray(wavenet.jax_logpx(SMALL, p, x, sig))) < 1e-6


def test_the_exported_graphs_match_the_jax_model_and_read_back(tmp_path):
    p = params(seed=3)
    out = str(tmp_path / 'sine')
    export_waveform.export_waveform_prior(out, 'sine', SMALL, p, {'steps': 0})
    m = json.load(open(os.path.join(out, 'manifest.json')))
    assert m['domain'] == 'waveform' and m['time_multiple'] == 1 and m['model']['kind'] == 'wavenet'
    assert m['model']['receptive_field'] == SMALL.receptive_field()
    sess = ort.InferenceSession(os.path.join(out, 'score.onnx'), providers=['CPUExecutionProvider'])
    x = wave(T=77)   # any length
    g, lp = sess.run(['score', 'logp'], {'x': x})
    ref = jax.grad(lambda x: jnp.sum(wavenet.jax_logpx(SMALL, p, x)))(x)
    assert rel(g, np.asarray(ref)) < 1e-3
    assert rel(lp, np.asarray(wavenet.jax_logpx(SMALL, p, x))) < 1e-5
    cfg, q, _ = export_waveform.read_params(out)
    assert cfg == SMALL and q.keys() == p.keys()
    for k in p:
        np.testing.assert_allclose(p[k], q[k], rtol=1e-6, atol=1e-7)
    cond = params(seed=3, conditioned=True)
    export_waveform.add_annealing(out, SMALL, cond, [0.1, 0.01], {'steps': 0})
    noisy = ort.InferenceSession(os.path.join(out, 'noisy_score.onnx'), providers=['CPUExecutionProvider'])
    g, _ = noisy.run(['score', 'logp'], {'x': x, 'sigma': np.full(2, 0.1, np.float32)})
    sig = jnp.full((2,), 0.1, jnp.float32)
    ref = jax.grad(lambda x: jnp.sum(wavenet.jax_logpx(SMALL, cond, x, sig)))(x)
    assert rel(g, np.asarray(ref)) < 1e-3
