"""Training checkpoints (train.py save_ckpt / latest_ckpt / resume, checkpoint.py): arrays and JSON
only, read back exactly, never unpickled; a resumed run continues from the saved step."""
import os
import pickle
import time

import numpy as np
import pytest

from stemflow_training import checkpoint, glow, train

TINY = glow.Config(bins=8, steps=2, hidden=4, group_size=4)
CROP, FRAMES = 8, 16


def _args(ckdir, tmp_path, *extra):
    return train.parse_args(['--stem', 'tiny', '--out', str(tmp_path / 'out'), '--ckpt-dir', str(ckdir),
                             '--batch', '2', '--crop', str(CROP), '--ckpt-every', '2', '--eval-every', '2',
                             *extra])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    mag = np.exp(rng.normal(-3.0, 1.0, (4, TINY.bins, FRAMES))).astype(np.float32)
    norm = train.compute_norm(mag, TINY.floor)
    X = train.standardise(mag, norm, TINY.floor)
    noise_x = (0.1 / norm['sigma']).astype(np.float32)
    return norm, X, noise_x


def _new_state(a):
    norm, X, noise_x = _data()
    return train.new_state(a, TINY, norm, X, noise_x, 'synthetic:test', 'test data', 0.0)


def _files(d):
    return sorted(os.listdir(d))


def assert_identical(a, b, path='state'):
    """Same tree (types, dict key order, tuple vs list), same dtypes, shapes and values."""
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_identical(a[k], b[k], f'{path}/{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f'{path}/{i}')
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), (path, a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, path


def test_saved_state_loads_back_identical(tmp_path):
    ckdir = tmp_path / 'ck'
    a = _args(ckdir, tmp_path)
    state = _new_state(a)
    rng = np.random.default_rng(3)
    # what a trained state holds besides the new one's zeros: moments, history, run figures
    state['m'] = {'steps': [{k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in st.items()}
                            for st in state['params']['steps']]}
    state['v'] = {'steps': [{k: rng.random(v.shape).astype(v.dtype) for k, v in st.items()}
                            for st in state['params']['steps']]}
    state['step'] = 7
    state['hist'] = {'train': [(50, 3.25), (100, 2.5)], 'valid': [(100, 2.75), (150, float('nan'))]}
    state['info'].update(steps_per_second=1.234, train_bits_per_dim=2.1234, valid_bits_per_dim=None,
                         flag=True, npscalar=np.float32(0.5), empty=np.zeros((0, 3), np.int64))
    assert all(v.dtype == np.float32 for st in state['params']['steps'] for v in st.values())

    train.save_ckpt(str(ckdir), state)
    assert _files(ckdir) == ['ckpt_0000007.npz']           # no temporary file left behind
    back = train.latest_ckpt(str(ckdir))
    assert_identical(state, back)
    assert back['step'] == 7 and isinstance(back['step'], int)
    assert glow.Config.from_dict(back['cfg']) == TINY

    # the archive is plain arrays: readable with pickling disabled, arrays named by their path
    with np.load(ckdir / 'ckpt_0000007.npz', allow_pickle=False) as z:
        assert 'params/steps/1/c1_w' in z.files and 'norm/sigma' in z.files and 'm/steps/0/W_L' in z.files
        assert all(z[k].dtype != object for k in z.files)

    # rotation as before: the two highest-numbered checkpoints are kept
    for step in (8, 9):
        state['step'] = step
        train.save_ckpt(str(ckdir), state)
    assert _files(ckdir) == ['ckpt_0000008.npz', 'ckpt_0000009.npz']
    assert train.latest_ckpt(str(ckdir))['step'] == 9


def test_unstorable_state_is_refused_when_saving(tmp_path):
    for bad in ({'x': object()}, {1: 2}, {'a': np.array([None], dtype=object)}):
        with pytest.raises(TypeError):
            checkpoint.write(str(tmp_path / 'ckpt_0000001.npz'), bad)


class _Bomb:
    """Unpickling it creates `marker` (stands for arbitrary code run by a pickle)."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_pickle_checkpoints_are_never_loaded(tmp_path, capsys):
    payload = pickle.dumps({'step': 500, 'x': _Bomb(str(tmp_path / 'control'))})
    pickle.loads(payload)                                    # the payload really does run code...
    assert (tmp_path / 'control').exists()

    marker = tmp_path / 'pwned'
    payload = pickle.dumps({'step': 500, 'x': _Bomb(str(marker))})
    ckdir = tmp_path / 'ck'
    ckdir.mkdir()
    (ckdir / 'ckpt_0000500.pkl').write_bytes(payload)

    # ...but resuming ignores it, says so in one line, and starts a new model
    assert train.resume(_args(ckdir, tmp_path), str(ckdir)) is None
    assert not marker.exists()
    lines = [l for l in capsys.readouterr().out.splitlines() if 'ckpt_0000500.pkl' in l]
    assert len(lines) == 1 and 'ignoring' in lines[0] and 'code' in lines[0] and '--fresh' in lines[0], lines

    # with a new-format checkpoint beside it, that one is resumed, the pickle still not read
    state = _new_state(_args(ckdir, tmp_path))
    state['step'] = 250
    train.save_ckpt(str(ckdir), state)
    assert train.resume(_args(ckdir, tmp_path), str(ckdir))['step'] == 250
    assert not marker.exists()
    assert 'resuming from ckpt_0000250.npz' in capsys.readouterr().out

    # a pickle under the new name is refused, not unpickled
    (ckdir / 'ckpt_0000600.npz').write_bytes(payload)
    with pytest.raises(ValueError, match='not a readable'):
        train.resume(_args(ckdir, tmp_path), str(ckdir))
    assert not marker.exists()

    # --fresh deletes both kinds without reading them
    assert train.resume(_args(ckdir, tmp_path, '--fresh'), str(ckdir)) is None
    assert _files(ckdir) == [] and not marker.exists()


def test_resume_continues_from_the_saved_step(tmp_path):
    ckdir = tmp_path / 'ck'
    norm, X, noise_x = _data()
    aug = (norm, TINY.floor, 0.0)

    a = _args(ckdir, tmp_path, '--steps', '3')
    state = train.new_state(a, TINY, norm, X, noise_x, 'synthetic:test', 'test data', 0.0)
    train.train_loop(a, state, TINY, X, X[:2], X[:2], noise_x, aug, str(ckdir), time.time())
    assert state['step'] == 3
    assert _files(ckdir) == ['ckpt_0000002.npz', 'ckpt_0000003.npz']

    a = _args(ckdir, tmp_path, '--steps', '5')
    resumed = train.resume(a, str(ckdir))
    assert_identical(state, resumed)                        # exactly where the first run ended
    saved_params = resumed['params']
    train.train_loop(a, resumed, TINY, X, X[:2], X[:2], noise_x, aug, str(ckdir), time.time())
    assert resumed['step'] == 5
    # the second run took steps 4 and 5 only (evaluated every 2 steps and at the end)
    assert [s for s, _ in resumed['hist']['valid']] == [2, 3, 4, 5]
    assert _files(ckdir) == ['ckpt_0000004.npz', 'ckpt_0000005.npz']
    assert not np.array_equal(resumed['params']['steps'][0]['c1_w'], saved_params['steps'][0]['c1_w'])
    assert_identical(resumed, train.latest_ckpt(str(ckdir)))
