"""Export a prior (decode.onnx, grad.onnx, encode.onnx, manifest.json).

    python -m stemflow_training.export --random --stem sine --out models/priors/sine
(training exports through train.py --export-only.)
"""
import argparse
import hashlib
import json
import os
import numpy as np

from . import glow
from .files import sha256
from .ops import OnnxOps
from .stft import SAMPLE_RATE, N_FFT, HOP, FRAME_SECONDS, FRAMES, BINS


def _shape(c):
    return ['B', c, 'T']


def build_graphs(cfg, params, norm):
    """Returns {'decode': ModelProto, 'grad': ..., 'encode': ...}."""
    C = cfg.bins
    out = {}
    doc = "Stemflow Glow-1d prior; see models/CONTRACT.md"

    ops = OnnxOps()
    P = glow.prepare(cfg, params, norm, ops, np)
    s, _, _, _ = glow.decode_s(ops, cfg, P, 'z')
    out['decode'] = ops.build('stemflow_decode', [('z', 'z', _shape(C))], [('s', s, _shape(C))], doc)

    ops = OnnxOps()
    P = glow.prepare(cfg, params, norm, ops, np)
    s, gz, lp = glow.grad_adjoint(ops, cfg, P, 'z', 'g', 'gamma')
    out['grad'] = ops.build('stemflow_grad',
                            [('z', 'z', _shape(C)), ('g', 'g', _shape(C)), ('gamma', 'gamma', [1])],
                            [('s', s, _shape(C)), ('grad_z', gz, _shape(C)), ('logp', lp, ['B'])], doc)

    ops = OnnxOps()
    P = glow.prepare(cfg, params, norm, ops, np)
    z, lp = glow.encode_s(ops, cfg, P, 's')
    out['encode'] = ops.build('stemflow_encode', [('s', 's', _shape(C))],
                              [('z', z, _shape(C)), ('logp', lp, ['B'])], doc)
    return out


WEIGHTS_FILE = 'weights.bin'
# Initializers smaller than this stay inside their graph (biases, ActNorm vectors, scalars).
EXTERNAL_MIN_BYTES = 4096
# Offsets in the weight file are multiples of this (ONNX Runtime may memory-map the file).
EXTERNAL_ALIGN = 64


def share_weights(graphs, location=WEIGHTS_FILE):
    """Moves every large initializer of `graphs` into one byte string, stored once per distinct
    content: decode, grad and encode use the same coupling weights, so the prior holds them once
    instead of three times. Each initializer becomes an ONNX external-data reference (location,
    offset, length) into that file. Returns the file's bytes."""
    import onnx
    from onnx import external_data_helper, numpy_helper
    blob = bytearray()
    where = {}
    for model in graphs.values():
        for tensor in model.graph.initializer:
            if tensor.data_type != onnx.TensorProto.FLOAT:
                continue
            raw = numpy_helper.to_array(tensor).astype('<f4', copy=False).tobytes()
            if len(raw) < EXTERNAL_MIN_BYTES:
                continue
            key = hashlib.sha256(raw).digest()
            if key not in where:
                blob += b'\0' * ((-len(blob)) % EXTERNAL_ALIGN)
                where[key] = (len(blob), len(raw))
                blob += raw
            offset, length = where[key]
            if not tensor.HasField('raw_data'):
                tensor.raw_data = raw
                del tensor.float_data[:]
            external_data_helper.set_external_data(tensor, location, offset=offset, length=length)
            tensor.ClearField('raw_data')
    return bytes(blob)


def export_prior(out_dir, stem, cfg, params, norm, training_info, check=True, shared_weights=True):
    """Writes the three graphs and manifest.json to `out_dir`. With `shared_weights` (the default)
    the large weights go once into `weights.bin`, which the graphs reference (CONTRACT.md,
    "Shared weights"); without it every graph embeds its own copy (format of the first priors)."""
    import onnx
    os.makedirs(out_dir, exist_ok=True)
    graphs = build_graphs(cfg, params, norm)
    entries = {}
    weights_path = os.path.join(out_dir, WEIGHTS_FILE)
    if shared_weights:
        blob = share_weights(graphs)
        with open(weights_path, 'wb') as f:
            f.write(blob)
    elif os.path.exists(weights_path):
        os.remove(weights_path)
    for role, model in graphs.items():
        path = os.path.join(out_dir, f"{role}.onnx")
        onnx.save(model, path)
        if check:
            onnx.checker.check_model(path)
        entries[role] = {"file": f"{role}.onnx", "sha256": sha256(path)}
    if shared_weights:
        entries['weights'] = {"file": WEIGHTS_FILE, "sha256": sha256(weights_path)}
    manifest = {
        "format": "stemflow-prior",
        "format_version": 1,
        "stem": stem,
        "sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "window": "hann-periodic",
        "center": "zero", "frame_seconds": FRAME_SECONDS, "frames": FRAMES, "bins": BINS,
        "time_multiple": 2,
        "magnitude_scaling": {"kind": "log-standardized", "floor": cfg.floor},
        "model": {"kind": "glow-1d", "steps": cfg.steps, "hidden": cfg.hidden,
                  "coupling_layers": 3, "dilations": list(cfg.dilations),
                  "group_size": cfg.group_size, "kernel": cfg.kernel,
                  "log_scale_bound": glow.BOUND, "squeeze": 2,
                  "parameters": glow.param_count(params)},
        "graphs": entries,
        "training": training_info,
    }
    with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=2)
        f.write('\n')
    if check:
        smoke_test(out_dir)
    return manifest


def smoke_test(out_dir, T=8):
    import onnxruntime as ort
    rng = np.random.default_rng(0)
    z = (0.5 * rng.standard_normal((1, BINS, T))).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    dec = ort.InferenceSession(os.path.join(out_dir, 'decode.onnx'), so, providers=['CPUExecutionProvider'])
    s = dec.run(None, {'z': z})[0]
    assert s.shape == z.shape and np.all(s > 0) and np.all(np.isfinite(s))
    gr = ort.InferenceSession(os.path.join(out_dir, 'grad.onnx'), so, providers=['CPUExecutionProvider'])
    s2, gz, lp = gr.run(None, {'z': z, 'g': np.ones_like(z), 'gamma': np.array([0.5], np.float32)})
    assert np.allclose(s, s2, rtol=1e-5) and np.all(np.isfinite(gz)) and lp.shape == (1,)
    enc = ort.InferenceSession(os.path.join(out_dir, 'encode.onnx'), so, providers=['CPUExecutionProvider'])
    z2, lp2 = enc.run(None, {'s': s})
    assert np.max(np.abs(z2 - z)) < 1e-2, np.max(np.abs(z2 - z))


def random_prior(cfg, seed):
    """Untrained prior with non-zero weights; mu/sigma from synthetic data stats-ish."""
    rng = np.random.default_rng(seed)
    params = glow.init_params(cfg, rng, random_last=0.02, random_actnorm=0.1)
    norm = {'mu': (-2.0 + 0.5 * rng.standard_normal(cfg.bins)).astype(np.float32),
            'sigma': (2.0 + 0.2 * rng.random(cfg.bins)).astype(np.float32)}
    return params, norm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--random', action='store_true', help='export an UNTRAINED prior with random weights')
    ap.add_argument('--stem', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    if not a.random:
        raise SystemExit("use train.py --export-only for trained priors")
    cfg = glow.Config()
    params, norm = random_prior(cfg, a.seed)
    m = export_prior(a.out, a.stem, cfg, params, norm,
                     {"data": "none (UNTRAINED: random non-zero weights, for engine tests only)",
                      "steps": 0, "train_bits_per_dim": 0.0, "valid_bits_per_dim": 0.0})
    print(json.dumps(m['graphs'], indent=1))


if __name__ == '__main__':
    main()
