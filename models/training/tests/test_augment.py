"""Timbre augmentation (train.py --augment) and the chunked statistics behave as documented."""
import math

import numpy as np

from stemflow_training import train
from stemflow_training.stft import BINS

FLOOR = 1e-5


def _norm_and_crops(seed=0, n=3, frames=8):
    rng = np.random.default_rng(seed)
    mag = np.exp(rng.normal(-4.0, 2.0, (n, BINS, frames))).astype(np.float32)
    return mag, train.compute_norm(mag, FLOOR)


def test_chunked_norm_matches_the_direct_statistics():
    mag, norm = _norm_and_crops(n=train.CHUNK * 2 + 5)
    y = np.log(mag.astype(np.float64) + FLOOR)
    np.testing.assert_allclose(norm['mu'], y.mean(axis=(0, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm['sigma'], np.maximum(y.std(axis=(0, 2)), train.SIGMA_MIN), rtol=1e-4)
    x = train.standardise(mag, norm, FLOOR)
    np.testing.assert_allclose(x, (y - norm['mu'][None, :, None]) / norm['sigma'][None, :, None], atol=1e-4)


def test_equaliser_is_a_bounded_smooth_gain_and_leaves_a_quarter_untouched():
    rng = np.random.default_rng(1)
    g_db = train.random_equaliser(rng, 4000, 1.0) * 20.0 / math.log(10.0)
    untouched = np.all(g_db == 0.0, axis=1)
    assert 0.2 < untouched.mean() < 0.3
    assert np.abs(g_db).max() < 30.0                           # tilt ≤ 3.5 dB, level ≤ 3 dB, bells ~N(0, 3)
    # smooth across neighbouring bins where they are close on the octave axis (above ~430 Hz
    # a bin is < 0.07 octave wide; below, a narrow bell may legitimately differ bin to bin)
    assert np.abs(np.diff(g_db[:, 20:], axis=1)).max() < 1.5
    assert np.all(train.random_equaliser(rng, 10, 0.0) == 0.0)


def test_augment_applies_the_gain_to_magnitudes_exactly():
    mag, norm = _norm_and_crops()
    x = train.standardise(mag, norm, FLOOR)
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    out = train.augment(x, rng_a, norm, FLOOR, 1.0)
    gain = np.exp(train.random_equaliser(rng_b, len(x), 1.0))[:, :, None]
    expected = train.standardise((mag * gain).astype(np.float32), norm, FLOOR)
    np.testing.assert_allclose(out, expected, atol=2e-3)
    # strength 0: the crops come back unchanged
    np.testing.assert_allclose(train.augment(x, np.random.default_rng(3), norm, FLOOR, 0.0), x, atol=1e-4)
