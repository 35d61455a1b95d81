"""(c) encode(decode(z)) == z through the exported ONNX graphs, logp agrees."""
import numpy as np
import onnxruntime as ort

from stemflow_training import glow, export


def test_onnx_roundtrip():
    cfg = glow.Config()
    params, norm = export.random_prior(cfg, 3)
    graphs = export.build_graphs(cfg, params, norm)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    S = {k: ort.InferenceSession(m.SerializeToString(), so, providers=['CPUExecutionProvider'])
         for k, m in graphs.items()}
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, cfg.bins, 32)).astype(np.float32)
    (s,) = S['decode'].run(None, {'z': z})
    assert np.all(s > 0)
    z2, lp_enc = S['encode'].run(None, {'s': s})
    _, _, lp_grad = S['grad'].run(None, {'z': z, 'g': np.zeros_like(z), 'gamma': np.zeros(1, np.float32)})
    assert np.max(np.abs(z2 - z)) < 2e-3, np.max(np.abs(z2 - z))
    assert np.max(np.abs(lp_enc - lp_grad)) <= 1e-4 * np.max(np.abs(lp_grad))
