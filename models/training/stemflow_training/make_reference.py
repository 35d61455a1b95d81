"""Reference vectors for the Rust tests: tests/fixtures/grad_reference/.

    python -m stemflow_training.make_reference [--prior tests/fixtures/priors/sine]

Weights are read from the prior's grad.onnx initializers (the exact float32 values
shipped); s, grad_z and logp are then computed by jax.grad of
  L(z) = sum(g * s(z)) - gamma * sum(logp(z))
through glow.decode_logp in float64 (JAX autodiff, not the hand-written adjoint and
not onnxruntime), and stored as little-endian float32.
"""
import argparse
import json
import os

import numpy as np

from .files import sha256

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
T = 8
GAMMA = 0.5
Z_SEED, G_SEED = 20261122, 20261123


def params_from_onnx(prior_dir):
    """Decode-direction constants (JaxOps layout) from grad.onnx."""
    import onnx
    from onnx import numpy_helper
    from . import glow
    man = json.load(open(os.path.join(prior_dir, 'manifest.json')))
    md = man['model']
    cfg = glow.Config(bins=man['bins'], steps=md['steps'], hidden=md['hidden'], group_size=md['group_size'],
                      dilations=tuple(md['dilations']), kernel=md.get('kernel', 3),
                      floor=man['magnitude_scaling']['floor'])
    g = onnx.load(os.path.join(prior_dir, man['graphs']['grad']['file'])).graph
    W = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    P = {'steps': []}
    for i in range(cfg.steps):
        w = lambda k: W[f's{i}_{k}']
        P['steps'].append({'an_iscale': w('an_iscale'), 'an_bias': w('an_bias'),
                           'Winv': w('Winv').reshape(cfg.groups, cfg.group_size, cfg.group_size),
                           **{k: w(k) for k in ('c1_w', 'c1_b', 'c2_w', 'c2_b', 'c3_w', 'c3_b')}})
    P['mu'], P['sigma'] = W['mu'], W['sigma']
    P['const_s'] = float(W['logp_const_per_frame'])
    return cfg, P, man


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--prior', default=os.path.join(ROOT, 'tests', 'fixtures', 'priors', 'sine'))
    ap.add_argument('--out', default=os.path.join(ROOT, 'tests', 'fixtures', 'grad_reference'))
    a = ap.parse_args()
    import jax
    jax.config.update('jax_enable_x64', True)
    import jax.numpy as jnp
    from . import glow
    from .ops import JaxOps
    cfg, P, man = params_from_onnx(a.prior)
    P = jax.tree_util.tree_map(lambda v: jnp.asarray(v) if isinstance(v, np.ndarray) else v, P)
    C = cfg.bins
    z = (0.5 * np.random.default_rng(Z_SEED).standard_normal((1, C, T))).astype(np.float32)
    g = np.random.default_rng(G_SEED).standard_normal((1, C, T)).astype(np.float32)
    ops = JaxOps()

    def obj(zz):
        s, lp = glow.decode_logp(ops, cfg, P, zz)
        return jnp.sum(jnp.asarray(g, jnp.float64) * s) - GAMMA * jnp.sum(lp), (s, lp)
    (_, (s, lp)), gz = jax.value_and_grad(obj, has_aux=True)(jnp.asarray(z, jnp.float64))
    s, gz, lp = (np.asarray(v) for v in (s, gz, lp))

    # how far is the shipped ONNX graph from this reference? (recorded, not used)
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(a.prior, 'grad.onnx'), so, providers=['CPUExecutionProvider'])
    so_, gz_, lp_ = sess.run(None, {'z': z, 'g': g, 'gamma': np.array([GAMMA], np.float32)})
    rel = lambda x, y: float(np.max(np.abs(x - y)) / np.max(np.abs(y)))

    os.makedirs(a.out, exist_ok=True)
    files = {}
    for name, arr in (('z', z), ('g', g), ('s', s), ('grad_z', gz), ('logp', lp)):
        path = os.path.join(a.out, f'{name}.bin')
        arr.astype('<f4').tofile(path)
        files[name] = {'file': f'{name}.bin', 'shape': list(arr.shape), 'dtype': 'float32-le',
                       'sha256': sha256(path)}
    ref = {
        'prior': os.path.relpath(a.prior, ROOT),
        'stem': man['stem'],
        'grad_onnx_sha256': man['graphs']['grad']['sha256'],
        'layout': '[B, 513, T] bin-major, data[b*T + t] for B = 1',
        'B': 1, 'T': T, 'bins': C, 'gamma': GAMMA,
        'inputs': {'z': f'0.5 * numpy default_rng({Z_SEED}).standard_normal((1, 513, {T})) as float32',
                   'g': f'numpy default_rng({G_SEED}).standard_normal((1, 513, {T})) as float32',
                   'gamma': [GAMMA]},
        'expected': ['s', 'grad_z', 'logp'],
        'files': files,
        'how': ('python -m stemflow_training.make_reference: weights read from grad.onnx initializers; '
                's, logp by glow.decode_logp and grad_z = d/dz [sum(g*s) - gamma*sum(logp)] by jax.value_and_grad, '
                'all in float64 (JAX autodiff, not the ONNX graph), stored as float32'),
        'onnxruntime_vs_reference_max_rel_error': {'s': rel(so_, s), 'grad_z': rel(gz_, gz), 'logp': rel(lp_, lp)},
        'relative_error_definition': 'max|onnx - ref| / max|ref| over the tensor',
        'suggested_tolerance': 1e-4,
    }
    with open(os.path.join(a.out, 'reference.json'), 'w') as f:
        json.dump(ref, f, indent=2)
        f.write('\n')
    print(json.dumps(ref['onnxruntime_vs_reference_max_rel_error']), 'logp', lp.tolist())


if __name__ == '__main__':
    main()
