"""Shared weights (CONTRACT.md): a prior exported with one weight file computes exactly what the
self-contained export computes, stores each distinct weight once, and is much smaller."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort

from stemflow_training import export, glow
from stemflow_training.stft import BINS


def _run(d, role, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(d, f'{role}.onnx'), so, providers=['CPUExecutionProvider'])
    return sess.run(None, feeds)


def _size(d):
    m = json.load(open(os.path.join(d, 'manifest.json')))
    return sum(os.path.getsize(os.path.join(d, e['file'])) for e in m['graphs'].values())


def test_shared_weights_match_embedded_weights(tmp_path):
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, seed=5)
    info = {"data": "none (test)", "steps": 0, "train_bits_per_dim": 0.0, "valid_bits_per_dim": 0.0}
    shared, embedded = str(tmp_path / 'shared' / 'sine'), str(tmp_path / 'embedded' / 'sine')
    ms = export.export_prior(shared, 'sine', cfg, params, norm, info, shared_weights=True)
    me = export.export_prior(embedded, 'sine', cfg, params, norm, info, shared_weights=False)
    assert 'weights' in ms['graphs'] and 'weights' not in me['graphs']
    assert not os.path.exists(os.path.join(embedded, export.WEIGHTS_FILE))

    rng = np.random.default_rng(1)
    z = (0.7 * rng.standard_normal((1, BINS, 16))).astype(np.float32)
    g = rng.standard_normal(z.shape).astype(np.float32)
    feeds = {'z': z, 'g': g, 'gamma': np.array([0.3], np.float32)}
    for a, b in zip(_run(shared, 'grad', feeds), _run(embedded, 'grad', feeds)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_run(shared, 'decode', {'z': z})[0], _run(embedded, 'decode', {'z': z})[0])
    s = _run(embedded, 'decode', {'z': z})[0]
    for a, b in zip(_run(shared, 'encode', {'s': s}), _run(embedded, 'encode', {'s': s})):
        np.testing.assert_array_equal(a, b)

    # Every large float weight lives in the one file; the three graphs keep only small tensors.
    for role in ('decode', 'grad', 'encode'):
        model = onnx.load(os.path.join(shared, f'{role}.onnx'), load_external_data=False)
        for t in model.graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) * 4 >= export.EXTERNAL_MIN_BYTES:
                assert t.data_location == onnx.TensorProto.EXTERNAL, (role, t.name)
    # Stored once: the weight file is about one graph's worth, not three.
    assert _size(shared) < 0.45 * _size(embedded), (_size(shared), _size(embedded))


def test_reexport_keeps_the_arithmetic(tmp_path):
    """`export --reexport` rewrites a self-contained prior in the current layout (shared weights,
    forward, backward and score added) from its own graphs: the same outputs, bit for bit."""
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, 5)
    old = str(tmp_path / 'sine')
    export.export_prior(old, 'sine', cfg, params, norm, {"data": "test"}, shared_weights=False)
    z = (0.5 * np.random.default_rng(2).standard_normal((1, BINS, 8))).astype(np.float32)
    feeds = {'z': z, 'g': np.ones_like(z), 'gamma': np.array([0.25], np.float32)}
    before = {r: _run(old, r, f) for r, f in (('decode', {'z': z}), ('grad', feeds))}
    m = export.reexport_prior(old)
    assert set(m['graphs']) == {'decode', 'grad', 'encode', 'forward', 'backward', 'score', 'weights'}
    assert m['model']['parameters'] == glow.param_count(params)
    for role, f in (('decode', {'z': z}), ('grad', feeds)):
        for a, b in zip(before[role], _run(old, role, f)):
            np.testing.assert_array_equal(a, b)
