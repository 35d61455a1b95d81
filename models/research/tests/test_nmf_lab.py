"""The NMF lab's convolutive KL-NMF: plain NMF is the trainer's update, learning lowers the
divergence, and the fitted masks share out the mixture."""
import numpy as np

from stemflow_research import nmf_lab as lab
from stemflow_training.nmf import kl_divergence, kl_nmf


def test_context_one_is_the_trainers_update():
    rng = np.random.default_rng(1)
    V = rng.random((20, 30))
    W = rng.random((20, 4)) + 0.1
    W /= W.sum(0)
    _, H_ref = kl_nmf(V, None, 25, np.random.default_rng(0), W=W.copy(), flat_start=True)
    _, H = lab.cnmf(V, W[None].copy(), lab.flat_start(V, W[None]), 25)
    assert np.allclose(H, H_ref, rtol=1e-10)


def test_convolutive_learning_lowers_the_divergence_and_keeps_atoms_normalised():
    rng = np.random.default_rng(2)
    V = rng.random((16, 40)) ** 3
    W = rng.random((3, 16, 5)) + 0.1
    W /= W.sum(axis=(0, 1))
    H = rng.random((5, 40)) + 0.1
    before = kl_divergence(V, lab.model(W, H))
    W2, H2 = lab.cnmf(V, W.copy(), H.copy(), 30, learn_w=True, sparsity=0.01)
    assert kl_divergence(V, lab.model(W2, H2)) < 0.8 * before
    assert np.allclose(W2.sum(axis=(0, 1)), 1.0)


def test_shift_and_advance_are_adjoint_and_smoothing_keeps_constants():
    rng = np.random.default_rng(3)
    A, B = rng.random((3, 9)), rng.random((3, 9))
    assert np.isclose(np.sum(lab.shifted(A, 2) * B), np.sum(A * lab.advanced(B, 2)))
    assert np.allclose(lab.smooth3(np.full((2, 7), 4.0)), 4.0)


def test_masks_share_out_the_mixture():
    rng = np.random.default_rng(4)
    mix = rng.standard_normal(22050)
    dicts = {s: rng.random((2, 1025, 3)) + 0.01 for s in ('a', 'b')}
    cfg = dict(lab.FIT, iters=5, sparsity=0.1, smooth=0.3, power=2.0)
    est = lab.separate(mix, dicts, ['a', 'b'], cfg)
    assert np.max(np.abs(est['a'] + est['b'] - mix)) < 1e-6


def test_specs_parse_typed_with_defaults():
    specs = lab.parse_specs("x:atoms=96,fonts=fluidr3+opl3; y:", lab.LEARN)
    assert specs[0] == ('x', dict(lab.LEARN, atoms=96, fonts='fluidr3+opl3'))
    assert specs[1] == ('y', lab.LEARN)
