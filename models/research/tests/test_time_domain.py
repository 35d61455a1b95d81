"""The toy experiment's Langevin chains and masks, on Gaussian priors whose posterior is known."""
import numpy as np

from stemflow_research import time_domain as td


class Gaussian:
    """A white zero-mean Gaussian waveform prior of variance v (and v + σ² under noise σ)."""

    def __init__(self, v):
        self.v = v
        self.ladder = [0.3, 0.1, 0.03]

    def score(self, x, sigma=None):
        v = self.v + (sigma ** 2 if sigma else 0.0)
        return -x / v, -0.5 * np.sum(x * x, axis=-1) / v


def gain(est, m):
    """The least-squares gain b of est ≈ b·m (the posterior is wide, so elementwise the chains'
    mean is noisy; over thousands of samples its gain on the mix is sharp)."""
    return float(np.sum(est * m) / np.sum(m * m))


def test_textbook_and_annealed_chains_find_the_posterior_mean_of_two_gaussians():
    """m = s1 + s2 + noise of width sigma: E[s_k | m] = v_k / (v1 + v2 + sigma^2) m."""
    rng = np.random.default_rng(0)
    v = (0.01, 0.09)
    T, sigma = 4096, 0.05
    s = np.stack([np.sqrt(vk) * rng.standard_normal((3, T)) for vk in v])
    m = (s.sum(axis=0) + sigma * rng.standard_normal((3, T))).astype(np.float32)
    priors = [Gaussian(vk) for vk in v]
    want = [vk / (sum(v) + sigma ** 2) for vk in v]       # 0.098 and 0.88
    est = td.langevin(priors, m, 400, 2e-4, sigma, 'textbook', seed=1)
    for k in range(2):
        assert abs(gain(est[k], m) - want[k]) < 0.03, (k, gain(est[k], m), want[k])
    # annealed: the last level (0.03) targets the priors smoothed by it, N(0, v + 0.03²), with
    # the likelihood width λ·0.03 = sigma
    ann = td.langevin(priors, m, 500, 0.05, sigma, 'annealed', seed=1, ladder=[0.3, 0.1, 0.03], lam=sigma / 0.03)
    smooth = [vk + 0.03 ** 2 for vk in v]
    for k in range(2):
        want_k = smooth[k] / (sum(smooth) + sigma ** 2)
        assert abs(gain(ann[k], m) - want_k) < 0.03, (k, gain(ann[k], m), want_k)
    # the same seed gives the same chains
    np.testing.assert_array_equal(est, td.langevin(priors, m, 400, 2e-4, sigma, 'textbook', seed=1))


def test_diverging_chains_raise_instead_of_returning_nan():
    priors = [Gaussian(0.01), Gaussian(0.01)]
    m = np.ones((1, 256), np.float32)
    try:
        td.langevin(priors, m, 200, 1.0, 0.01, 'textbook', seed=0)
    except FloatingPointError as e:
        assert 'diverged' in str(e)
    else:
        raise AssertionError("a step far above 2 sigma^2 / N must diverge")


def test_consistent_masks_share_out_the_mix_and_the_oracle_beats_mixture_over_four():
    m, refs, _ = td.toy_sources.mix(0)
    masked = td.consistent_masks(refs, m)
    np.testing.assert_allclose(masked.sum(axis=0), m, atol=1e-4)
    oracle = np.median([td.sdr(r, e) for r, e in zip(refs, masked)])
    quarter = np.median([td.sdr(r, m / 4) for r in refs])
    assert oracle > quarter + 2.0


def test_chains_in_chunks_resume_at_the_first_unfinished_chunk(tmp_path):
    """A run stopped after its first chunk resumes there: the finished chunk is not run again,
    and the estimates equal an uninterrupted run's."""
    m = np.arange(5 * 8, dtype=np.float32).reshape(5, 8)
    calls = []

    def run(part, first):
        calls.append(first)
        if first == 2 and len(calls) == 2:
            raise KeyboardInterrupt  # stopped in the second chunk
        return np.stack([part * (k + 1) + first for k in range(3)])

    path = str(tmp_path / 'chains.npz')
    try:
        td.chains_in_chunks(run, m, 2, path, log=lambda msg: None)
    except KeyboardInterrupt:
        pass
    est, secs = td.chains_in_chunks(run, m, 2, path, log=lambda msg: None)
    assert calls == [0, 2, 2, 4]
    whole, _ = td.chains_in_chunks(run, m, 2, str(tmp_path / 'whole.npz'), log=lambda msg: None)
    np.testing.assert_array_equal(est, whole)
    assert est.shape == (3, 5, 8) and secs >= 0
