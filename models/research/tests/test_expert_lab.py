"""The expert lab's combinations: every mask-based one shares out the mixture exactly, and a
product with perfect flows' stems keeps most of their quality."""
import numpy as np

from stemflow_research import evaluate as ev
from stemflow_research import expert_lab as lab


def test_mask_combinations_sum_to_the_mix_and_a_product_with_perfect_flows_separates():
    rng = np.random.default_rng(5)
    n = 22050
    t = np.arange(n) / 22050
    refs = {'low': np.sin(2 * np.pi * 110 * t), 'high': 0.5 * np.sin(2 * np.pi * 2500 * t)}
    mix = refs['low'] + refs['high']
    dicts = {s: np.abs(rng.standard_normal((1025, 3))) + 1e-3 for s in refs}
    for d in dicts.values():
        d /= d.sum(axis=0, keepdims=True)
    out = lab.combinations(mix, refs, dicts, list(refs))
    for name, est in out.items():
        if name in ('flows', 'stems average'):
            continue
        residual = np.max(np.abs(sum(est.values()) - mix))
        assert residual < 1e-6, (name, residual)
    sdr = lambda name, s: np.median(ev.segment_sdrs(refs[s], out[name][s], n))
    # random dictionaries cannot separate; the flows' perfect stems carry the product
    for s in refs:
        assert sdr('product 0.5/0.5', s) > sdr('nmf', s) + 3.0
