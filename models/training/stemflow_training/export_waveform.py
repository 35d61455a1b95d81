"""Export a time-domain (waveform) prior: score.onnx, manifest.json, and optionally the
noise-conditioned noisy_score.onnx with the manifest's `annealing` section (CONTRACT.md,
"Time-domain priors").

    python -m stemflow_training.export_waveform --random --stem sine --out DIR [--model wavenet]   # untrained, for tests

The graphs are self-contained (a toy-size FloWaveNet is well under 1 MB). Their initializers
are named after the parameters (b<block>f<flow>_<name>), so `read_params` recovers the weights
from score.onnx itself, which noise fine-tuning starts from.
"""
import argparse
import json
import math
import os

import numpy as np

from . import flowavenet, wavenet
from .files import sha256, write_atomic
from .ops import OnnxOps
from .stft import SAMPLE_RATE

SCORE_FILE = 'score.onnx'
NOISY_SCORE_FILE = 'noisy_score.onnx'
DOMAIN = 'waveform'
MODELS = {'flowavenet': flowavenet, 'wavenet': wavenet}


def kind_of(cfg):
    """The manifest's model kind of a config (flowavenet.Config or wavenet.Config)."""
    return 'wavenet' if isinstance(cfg, wavenet.Config) else 'flowavenet'


def _io():
    return ('x', 'x', ['B', 1, 'T'])


def build_score(cfg, params, noisy=False):
    """The score graph: x [B, 1, T] (and sigma [B] when `noisy`) -> score [B, 1, T], logp [B]."""
    model = MODELS[kind_of(cfg)]
    ops = OnnxOps(inputs=('x', 'sigma') if noisy else ('x',))
    P = model.prepare(cfg, params, ops, np)
    log_noise = ops.log('sigma') if noisy else None
    g, lp = model.score_adjoint(ops, cfg, P, 'x', log_noise=log_noise)
    inputs = [_io()] + ([('sigma', 'sigma', ['B'])] if noisy else [])
    name = 'stemflow_waveform_noisy_score' if noisy else 'stemflow_waveform_score'
    return ops.build(name, inputs, [('score', g, ['B', 1, 'T']), ('logp', lp, ['B'])],
                     f"Stemflow {kind_of(cfg)} waveform prior; see models/CONTRACT.md")


def _write_model(path, model):
    import onnx
    write_atomic(path, model.SerializeToString())
    onnx.checker.check_model(path)


def model_section(cfg, params):
    extra = {'receptive_field': cfg.receptive_field(), 'mu': wavenet.MU} if kind_of(cfg) == 'wavenet' else {}
    return dict(kind=kind_of(cfg), **cfg.to_dict(), **extra, parameters=MODELS[kind_of(cfg)].param_count(params))


def export_waveform_prior(out, stem, cfg, params, training):
    """Writes score.onnx and manifest.json (removing an annealing section of older weights)."""
    os.makedirs(out, exist_ok=True)
    _write_model(os.path.join(out, SCORE_FILE), build_score(cfg, params))
    noisy = os.path.join(out, NOISY_SCORE_FILE)
    if os.path.exists(noisy):
        os.remove(noisy)
    manifest = {
        'format': 'stemflow-prior', 'format_version': 1, 'stem': stem,
        'domain': DOMAIN, 'sample_rate': SAMPLE_RATE, 'time_multiple': cfg.time_multiple,
        'model': model_section(cfg, params),
        'graphs': {'score': {'file': SCORE_FILE, 'sha256': sha256(os.path.join(out, SCORE_FILE))}},
        'training': training,
    }
    write_atomic(os.path.join(out, 'manifest.json'), json.dumps(manifest, indent=2) + '\n', 'w')
    check_against_jax(out, cfg, params)


def add_annealing(out, cfg, params, sigmas, training):
    """Writes noisy_score.onnx and the manifest's annealing section for the conditioned params."""
    path = os.path.join(out, NOISY_SCORE_FILE)
    _write_model(path, build_score(cfg, params, noisy=True))
    with open(os.path.join(out, 'manifest.json')) as f:
        manifest = json.load(f)
    manifest['annealing'] = {
        'score': {'file': NOISY_SCORE_FILE, 'sha256': sha256(path)},
        'sigmas': [float(f"{s:.6g}") for s in sigmas],
        'domain': DOMAIN,
        'parameters': MODELS[kind_of(cfg)].param_count(params),
        'training': training,
    }
    write_atomic(os.path.join(out, 'manifest.json'), json.dumps(manifest, indent=2) + '\n', 'w')
    check_against_jax(out, cfg, params, sigma=sigmas[-1])


def read_params(prior_dir):
    """(cfg, params, manifest) of an exported prior, the weights read back from score.onnx."""
    import onnx
    from onnx import numpy_helper
    with open(os.path.join(prior_dir, 'manifest.json')) as f:
        manifest = json.load(f)
    kind = manifest['model'].get('kind')
    if manifest.get('domain') != DOMAIN or kind not in MODELS:
        raise ValueError(f"{prior_dir} is not a waveform prior of a kind this exporter writes")
    cfg = MODELS[kind].Config.from_dict(manifest['model'])
    model = onnx.load(os.path.join(prior_dir, SCORE_FILE))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    if kind == 'wavenet':
        shapes = wavenet.init_params(cfg, np.random.default_rng(0))
        # causal kernels were exported with their k - 1 zero taps after the centre
        return cfg, {n: inits[n][..., :v.shape[-1]].reshape(v.shape).astype(np.float32)
                     for n, v in shapes.items()}, manifest
    shapes = flowavenet.init_params(cfg, np.random.default_rng(0))
    blocks = []
    for b, flows in enumerate(shapes['blocks']):
        fl = []
        for i, f in enumerate(flows):
            key = lambda n: f"b{b}f{i}_{n}"
            q = {}
            for name, v in f.items():
                if name == 'an_logs':
                    q[name] = np.log(inits[key('an_scale')]).reshape(v.shape).astype(np.float32)
                else:
                    q[name] = inits[key(name)].reshape(v.shape).astype(np.float32)
            fl.append(q)
        blocks.append(fl)
    return cfg, {'blocks': blocks}, manifest


def check_against_jax(out, cfg, params, sigma=None, T=256, tol=1e-3):
    """The exported graph's score and logp against jax.grad of the JAX flow on a random wave."""
    import jax
    import jax.numpy as jnp
    import onnxruntime as ort
    rng = np.random.default_rng(5)
    x = (0.2 * rng.standard_normal((2, 1, T))).astype(np.float32)
    noise = None if sigma is None else jnp.full((2,), sigma, jnp.float32)
    model = MODELS[kind_of(cfg)]
    f = lambda x: jnp.sum(model.jax_logpx(cfg, params, x, noise))
    ref_g = np.asarray(jax.grad(f)(x))
    ref_lp = np.asarray(model.jax_logpx(cfg, params, x, noise))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    path = os.path.join(out, NOISY_SCORE_FILE if sigma is not None else SCORE_FILE)
    sess = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
    feed = {'x': x} if sigma is None else {'x': x, 'sigma': np.full(2, sigma, np.float32)}
    g, lp = sess.run(['score', 'logp'], feed)
    err = np.abs(g - ref_g).max() / max(np.abs(ref_g).max(), 1e-12)
    lerr = np.abs(lp - ref_lp).max() / max(np.abs(ref_lp).max(), 1.0)
    if not (err < tol and lerr < tol):
        raise RuntimeError(f"{path}: score relative error {err:.2e}, logp {lerr:.2e} (tolerance {tol})")
    return err, lerr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--random', action='store_true', required=True,
                    help='untrained weights with non-zero output layers (test graphs)')
    ap.add_argument('--stem', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--model', choices=sorted(MODELS), default='flowavenet')
    ap.add_argument('--blocks', type=int, default=2)
    ap.add_argument('--flows', type=int, default=2)
    ap.add_argument('--layers', type=int, default=2)
    ap.add_argument('--width', type=int, default=8)
    ap.add_argument('--with-noise', action='store_true', help='also a noise-conditioned graph')
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    if a.model == 'wavenet':
        cfg = wavenet.Config(blocks=a.blocks, layers=a.layers, width=a.width)
        params = wavenet.init_params(cfg, rng, random_last=0.05)
    else:
        cfg = flowavenet.Config(blocks=a.blocks, flows=a.flows, layers=a.layers, width=a.width)
        params = flowavenet.init_params(cfg, rng, random_last=0.05)
    export_waveform_prior(a.out, a.stem, cfg, params, {'data': 'none (random weights)', 'steps': 0})
    if a.with_noise:
        cond = MODELS[a.model].conditioned(params)
        for f in (sum(cond['blocks'], []) if a.model == 'flowavenet' else [cond]):
            f['in_ws'] = (0.05 * rng.standard_normal(f['in_ws'].shape)).astype(np.float32)
        add_annealing(a.out, cfg, cond, [0.1, 0.01], {'data': 'none (random weights)', 'steps': 0})
    print(f"exported {a.out}")


if __name__ == '__main__':
    main()
