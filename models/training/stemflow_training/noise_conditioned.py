"""Noise-conditioned ("annealed") priors: one flow per stem conditioned on a noise level.

Jayaram & Thickstun (ICML 2020) separate by annealed Langevin dynamics under priors fine-tuned
at a ladder of Gaussian noise levels. Here one flow carries every level: each coupling network's
first convolution gets one extra input channel, c = ln(noise level) constant over time (the
step's `c1_ws` [H, 1, k], glow._nn), and models x~ = x + level * eps, eps ~ N(0, I), in the
flow's standardised domain x = (ln s - mu_b) / sigma_b. With `c1_ws` zero the conditioned flow is
the plain one at every level, which is where fine-tuning (noise_tune.py) starts.

Exported beside the prior's own graphs (CONTRACT.md, "Noise-conditioned score (optional)"):
`noisy_score.onnx` (inputs `s` [B, 513, T] and `sigma` [B], outputs `score` and `logp`, as the
`score` graph) with its weights in `noisy_weights.bin`, and the manifest's `annealing` section
(annealing_section.py).
"""
import json
import os

import numpy as np

from . import export, glow
# the manifest section's names and its reading and writing (its own module, which export.py
# reads too); kept here as this module's names, which callers use
from .annealing_section import (DOMAIN, SCORE_FILE, SECTION, WEIGHTS_FILE,  # noqa: F401
                                existing_section, verify_section, write_section)
from .files import sha256, write_atomic

LADDER = tuple(float(v) for v in np.geomspace(1.0, 0.01, 10))   # Jayaram & Thickstun's 10 levels


def conditioned(params):
    """The noise-conditioned parameters of a plain flow: each step gets a zero `c1_ws`, so the
    result computes exactly the plain flow's density at every noise level."""
    steps = []
    for st in params['steps']:
        st = dict(st)
        H, _, k = np.shape(st['c1_w'])
        st['c1_ws'] = np.zeros((H, 1, k), np.float32)
        steps.append(st)
    return {'steps': steps}


def prior_parameters(prior_dir):
    """(cfg, trainable parameters, norm, manifest) of an exported prior, from the constants of
    its own graphs (export.prepared_from_graphs, what `export --reexport` reads): ActNorm's
    log-scale from its exp, every 1x1 group matrix W back to Glow's LU parametrisation
    (glow.lu_params: W = P L U, U's diagonal as sign * exp(logs)). Float32 rounding aside, the
    parameters prepare() the same constants."""
    from .ops import JaxOps
    with open(os.path.join(prior_dir, 'manifest.json')) as f:
        manifest = json.load(f)
    cfg = export.config_from_manifest(manifest)
    consts = export.prepared_from_graphs(cfg, prior_dir)(JaxOps())
    G, gs, C2 = cfg.groups, cfg.group_size, cfg.channels
    steps = []
    for st in consts['steps']:
        W = np.asarray(st['W'], np.float64).reshape(G, gs, gs)
        new = {'an_bias': np.reshape(st['an_bias'], C2),
               'an_logs': np.log(np.asarray(st['an_scale'], np.float64)).reshape(C2),
               **glow.lu_params(W),
               **{k: st[k] for k in ('c1_w', 'c1_b', 'c2_w', 'c2_b', 'c3_w', 'c3_b')}}
        steps.append({k: np.asarray(v, np.float32) for k, v in new.items()})
    norm = {'mu': np.asarray(consts['mu'], np.float32).reshape(cfg.bins),
            'sigma': np.asarray(consts['sigma'], np.float32).reshape(cfg.bins)}
    return cfg, {'steps': steps}, norm, manifest


def jax_logp_s(cfg, P, s, noise):
    """log p_noise(s) [B] of a noise-conditioned flow with JAX-prepared constants P (JAX
    backend): the density the `noisy_score` graph's `logp` reports and differentiates."""
    import jax.numpy as jnp
    from .ops import JaxOps
    return glow.encode_s(JaxOps(), cfg, P, s, log_noise=jnp.log(noise))[1]


def build_score_graph(cfg, params, norm):
    """The `noisy_score` ModelProto: the `score` graph of the conditioned flow, with the noise
    level `sigma` [B] as a second input (its logarithm is the coupling networks' extra channel)."""
    from .ops import OnnxOps
    ops = OnnxOps(inputs=('s', 'sigma'))
    P = glow.prepare(cfg, params, norm, ops, np)
    sc, lp = glow.score_adjoint(ops, cfg, P, 's', log_noise=ops.log('sigma'))
    shape = ['B', cfg.bins, 'T']
    return ops.build('stemflow_noisy_score', [('s', 's', shape), ('sigma', 'sigma', ['B'])],
                     [('score', sc, shape), ('logp', lp, ['B'])],
                     "Stemflow noise-conditioned Glow-1d score; see models/CONTRACT.md")


def export_annealed(prior_dir, cfg, params, norm, sigmas, training):
    """Writes noisy_score.onnx and noisy_weights.bin (its large weights, the external-data layout
    of weights.bin) into the prior folder and adds or replaces the manifest's `annealing`
    section; every other file and manifest key is left as it was. Returns the section."""
    import onnx
    model = build_score_graph(cfg, params, norm)
    blob = export.share_weights({'noisy_score': model}, location=WEIGHTS_FILE)
    weights_path = os.path.join(prior_dir, WEIGHTS_FILE)
    write_atomic(weights_path, blob)
    score_path = os.path.join(prior_dir, SCORE_FILE)
    write_atomic(score_path, model.SerializeToString())
    onnx.checker.check_model(score_path)
    section = {'score': {'file': SCORE_FILE, 'sha256': sha256(score_path)},
               'weights': {'file': WEIGHTS_FILE, 'sha256': sha256(weights_path)},
               'sigmas': sorted((float(v) for v in sigmas), reverse=True),
               'domain': DOMAIN,
               'parameters': glow.param_count(params),
               'training': training}
    write_section(prior_dir, section)
    return section
