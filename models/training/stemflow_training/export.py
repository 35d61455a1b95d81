"""Export a prior (decode, grad, encode, forward, backward and score graphs, manifest.json).
An NMF dictionary already in the folder (nmf.bin, see nmf.py) is kept if it still matches its
manifest section.

    python -m stemflow_training.export --random --stem sine --out models/priors/sine
    python -m stemflow_training.export --reexport models/priors/bass   # current layout, same weights
    python -m stemflow_training.export --add-score tests/fixtures/priors/sine   # + score.onnx
(training exports through train.py --export-only.)
"""
import argparse
import hashlib
import json
import os
import numpy as np

from . import annealing_section, glow
from .files import sha256
from .ops import OnnxOps
from .stft import SAMPLE_RATE, N_FFT, HOP, FRAME_SECONDS, FRAMES, BINS


def _shape(c):
    return ['B', c, 'T']


def _saved_shape(cfg, name):
    """Shape of a saved activation (glow.saved_names): the network's hidden channels for h1/h2,
    the transformed half (bins channels) for th/xb, over the squeezed time T/2."""
    c = cfg.hidden if name.endswith(('_h1', '_h2')) else cfg.bins
    return ['B', c, 'T2']


def build_graphs(cfg, params, norm, prepared=None):
    """Returns {'decode', 'grad', 'encode', 'forward', 'backward', 'score': ModelProto}. The constants come
    from `prepare(params, norm)`, or from `prepared(ops)` (re-export of existing graphs)."""
    C = cfg.bins
    out = {}
    doc = "Stemflow Glow-1d prior; see models/CONTRACT.md"

    def new():
        ops = OnnxOps()
        P = prepared(ops) if prepared is not None else glow.prepare(cfg, params, norm, ops, np)
        return ops, P

    ops, P = new()
    s, _, _, _ = glow.decode_s(ops, cfg, P, 'z')
    out['decode'] = ops.build('stemflow_decode', [('z', 'z', _shape(C))], [('s', s, _shape(C))], doc)

    ops, P = new()
    s, gz, lp = glow.grad_adjoint(ops, cfg, P, 'z', 'g', 'gamma')
    out['grad'] = ops.build('stemflow_grad',
                            [('z', 'z', _shape(C)), ('g', 'g', _shape(C)), ('gamma', 'gamma', [1])],
                            [('s', s, _shape(C)), ('grad_z', gz, _shape(C)), ('logp', lp, ['B'])], doc)

    ops, P = new()
    z, lp = glow.encode_s(ops, cfg, P, 's')
    out['encode'] = ops.build('stemflow_encode', [('s', 's', _shape(C))],
                              [('z', z, _shape(C)), ('logp', lp, ['B'])], doc)

    names = glow.saved_names(cfg)
    ops, P = new()
    s, lp, saved = glow.forward_saved(ops, cfg, P, 'z')
    out['forward'] = ops.build(
        'stemflow_forward', [('z', 'z', _shape(C))],
        [('s', s, _shape(C)), ('logp', lp, ['B'])]
        + [(n, saved[n], _saved_shape(cfg, n)) for n in names], doc)

    ops, P = new()
    gz = glow.backward_saved(ops, cfg, P, 'z', 's', {n: n for n in names}, 'g', 'gamma')
    out['backward'] = ops.build(
        'stemflow_backward',
        [('z', 'z', _shape(C)), ('s', 's', _shape(C)), ('g', 'g', _shape(C)), ('gamma', 'gamma', [1])]
        + [(n, n, _saved_shape(cfg, n)) for n in names],
        [('grad_z', gz, _shape(C))], doc)

    ops, P = new()
    sc, lp = glow.score_adjoint(ops, cfg, P, 's')
    out['score'] = ops.build('stemflow_score', [('s', 's', _shape(C))],
                             [('score', sc, _shape(C)), ('logp', lp, ['B'])], doc)
    return out


def prepared_from_graphs(cfg, prior_dir):
    """The prepared constants of an exported prior, read back from its grad and encode graphs
    (every constant `glow.prepare` makes is an initializer of one of them, under its own name), so
    a prior can be re-exported in a newer layout without its training checkpoint. Returns a
    function of an OnnxOps that registers them, as `prepare` would."""
    import onnx
    from onnx import numpy_helper
    arrays = {}
    for role in ('encode', 'grad'):
        model = onnx.load(os.path.join(prior_dir, f"{role}.onnx"))  # resolves external data
        for t in model.graph.initializer:
            arrays.setdefault(t.name, numpy_helper.to_array(t))
    step_keys = ('an_scale', 'an_iscale', 'an_bias', 'W', 'Winv',
                 'c1_w', 'c1_b', 'c2_w', 'c2_b', 'c3_w', 'c3_b')

    def register(ops):
        P = {'steps': []}
        for i in range(cfg.steps):
            P['steps'].append({k: ops.const(f"s{i}_{k}", arrays[f"s{i}_{k}"]) for k in step_keys})
        for k in ('mu', 'sigma', 'inv_sigma'):
            P[k] = ops.const(k, arrays[k])
        P['const_s'] = float(arrays['logp_const_per_frame'])
        return P
    return register


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


def export_prior(out_dir, stem, cfg, params, norm, training_info, check=True, shared_weights=True,
                 prepared=None, parameters=None, keep_annealing=False):
    """Writes the graphs and manifest.json to `out_dir`. With `shared_weights` (the default)
    the large weights go once into `weights.bin`, which the graphs reference (CONTRACT.md,
    "Shared weights"); without it every graph embeds its own copy and only decode, grad and
    encode are written (format of the first priors: six self-contained graphs would not fit
    the size limit). `prepared`/`parameters`: re-export from existing graphs (`reexport_prior`).
    A noise-conditioned flow in the folder (noise_conditioned.py) was fine-tuned from the old
    weights: its section is kept with `keep_annealing` (the same weights), else it and its files
    are removed."""
    import onnx
    from .nmf import existing_section
    os.makedirs(out_dir, exist_ok=True)
    # an NMF dictionary already in the folder (nmf.bin, still matching its manifest section) is
    # not the flow's: the rewritten manifest keeps its section (train.py then learns a new one)
    nmf_section = existing_section(out_dir) if os.path.exists(os.path.join(out_dir, 'manifest.json')) else None
    annealing = annealing_section.existing_section(out_dir) if keep_annealing else None
    if annealing is None:
        for name in (annealing_section.SCORE_FILE, annealing_section.WEIGHTS_FILE):
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
    graphs = build_graphs(cfg, params, norm, prepared=prepared)
    if not shared_weights:
        for role in ('forward', 'backward', 'score'):
            del graphs[role]
            if os.path.exists(os.path.join(out_dir, f"{role}.onnx")):
                os.remove(os.path.join(out_dir, f"{role}.onnx"))
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
                  "parameters": parameters if parameters is not None else glow.param_count(params)},
        "graphs": entries,
        "training": training_info,
    }
    if nmf_section is not None:
        manifest["nmf"] = nmf_section
    if annealing is not None:
        manifest[annealing_section.SECTION] = annealing
    with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=2)
        f.write('\n')
    if check:
        smoke_test(out_dir)
    return manifest


def config_from_manifest(manifest):
    """The flow's Config as an exported prior's manifest.json (parsed) records it."""
    m = manifest['model']
    cfg = glow.Config(steps=m['steps'], hidden=m['hidden'], group_size=m['group_size'],
                      dilations=tuple(m['dilations']), kernel=m['kernel'],
                      floor=manifest['magnitude_scaling']['floor'])
    cfg.check()
    return cfg


def reexport_prior(prior_dir):
    """Rewrites an exported prior in the current layout (shared weights, all six graphs) from its
    own graphs' constants, keeping its manifest's model and training records, its NMF
    dictionary (`nmf` section and nmf.bin, unchanged; export_prior carries it over) and its
    noise-conditioned score (`annealing` section and files, unchanged). The arithmetic is
    unchanged: every constant is the float32 value the old graphs held."""
    with open(os.path.join(prior_dir, 'manifest.json')) as f:
        old = json.load(f)
    m = old['model']
    cfg = config_from_manifest(old)
    prepared = prepared_from_graphs(cfg, prior_dir)
    return export_prior(prior_dir, old['stem'], cfg, None, None, old['training'],
                        prepared=prepared, parameters=m['parameters'], keep_annealing=True)


def add_score(prior_dir):
    """Writes a self-contained `score.onnx` (CONTRACT.md) into a prior of the first layout
    (self-contained graphs, no `weights.bin`) from its own graphs' constants and lists it in the
    manifest, leaving every other file and manifest key as it is: the test-fixture priors keep
    the graphs their reference vectors hash, and gain the score a Langevin search needs."""
    import onnx
    path = os.path.join(prior_dir, 'manifest.json')
    with open(path) as f:
        manifest = json.load(f)
    if 'weights' in manifest['graphs']:
        raise SystemExit(f"{prior_dir} has shared weights: use --reexport")
    cfg = config_from_manifest(manifest)
    graphs = build_graphs(cfg, None, None, prepared=prepared_from_graphs(cfg, prior_dir))
    score_path = os.path.join(prior_dir, 'score.onnx')
    onnx.save(graphs['score'], score_path)
    onnx.checker.check_model(score_path)
    manifest['graphs']['score'] = {"file": "score.onnx", "sha256": sha256(score_path)}
    with open(path, 'w') as f:
        json.dump(manifest, f, indent=2)
        f.write('\n')
    smoke_test(prior_dir)
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
    if os.path.exists(os.path.join(out_dir, 'forward.onnx')):
        fw = ort.InferenceSession(os.path.join(out_dir, 'forward.onnx'), so, providers=['CPUExecutionProvider'])
        bw = ort.InferenceSession(os.path.join(out_dir, 'backward.onnx'), so, providers=['CPUExecutionProvider'])
        outs = dict(zip([o.name for o in fw.get_outputs()], fw.run(None, {'z': z})))
        assert np.array_equal(outs['s'], s2) and np.array_equal(outs['logp'], lp)
        feed = {k: v for k, v in outs.items() if k != 'logp'}
        feed.update(z=z, g=np.ones_like(z), gamma=np.array([0.5], np.float32))
        gz2 = bw.run(None, feed)[0]
        assert np.allclose(gz2, gz, rtol=1e-5, atol=1e-6 * np.abs(gz).max())
    if os.path.exists(os.path.join(out_dir, 'score.onnx')):
        sc = ort.InferenceSession(os.path.join(out_dir, 'score.onnx'), so, providers=['CPUExecutionProvider'])
        score, lp3 = sc.run(None, {'s': s})
        assert score.shape == s.shape and np.all(np.isfinite(score))
        assert np.allclose(lp3, lp2, rtol=1e-6, atol=1e-3), (lp3, lp2)


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
    ap.add_argument('--reexport', metavar='DIR',
                    help='rewrite the prior in DIR in the current layout from its own graphs')
    ap.add_argument('--add-score', metavar='DIR',
                    help='add a self-contained score graph to the first-layout prior in DIR')
    ap.add_argument('--stem')
    ap.add_argument('--out')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    if a.reexport:
        m = reexport_prior(a.reexport)
        print(json.dumps(m['graphs'], indent=1))
        return
    if a.add_score:
        m = add_score(a.add_score)
        print(json.dumps(m['graphs'], indent=1))
        return
    if not (a.stem and a.out):
        raise SystemExit("--stem and --out are needed with --random")
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
