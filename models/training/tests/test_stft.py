"""(d) STFT convention of CONTRACT.md: periodic Hann, hop 256, zero-padded centring."""
import numpy as np

from stemflow_training.stft import stft, segment_magnitude, hann_periodic, SEGMENT_SAMPLES


def direct(x, t, b):
    n = np.arange(1024)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / 1024)
    idx = t * 256 - 512 + n
    seg = np.where((idx >= 0) & (idx < len(x)), x[np.clip(idx, 0, len(x) - 1)], 0.0)
    return np.sum(w * seg * np.exp(-2j * np.pi * b * n / 1024))


def test_matches_direct_dft():
    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050) + 0.1 * rng.standard_normal(22050)
    X = stft(x)
    assert X.shape == (513, 1 + 22050 // 256)
    for t in (0, 1, 7, X.shape[1] - 1):           # first frames see the left zero padding
        for b in (0, 20, 21, 300, 512):
            assert abs(X[b, t] - direct(x, t, b)) < 1e-8 * max(1.0, abs(direct(x, t, b)))


def test_window_and_frames():
    w = hann_periodic()
    assert w[0] == 0.0 and abs(w[512] - 1.0) < 1e-15 and abs(w[256] - 0.5) < 1e-12
    m = segment_magnitude(np.ones(SEGMENT_SAMPLES))
    assert m.shape == (513, 432)
    # frame 431 is centred on sample 110336 > 110249: only its left part sees signal
    assert m[0, 431] > 0 and m[0, 431] < m[0, 200]
    # DC of a full frame of ones is sum(w) = 512
    assert abs(m[0, 200] - 512.0) < 1e-3
