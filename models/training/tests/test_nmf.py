"""The NMF dictionary (nmf.py, CONTRACT.md "NMF dictionary (optional)"): learning it, storing it
in a prior (nmf.bin + the manifest's `nmf` section), and the dictionaries the priors carry."""
import glob
import hashlib
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from stemflow_training import data, export, glow, nmf, synth, train
from stemflow_training.stft import stft

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', '..')
PRIORS = sorted(d for d in glob.glob(os.path.join(ROOT, 'models', 'priors', '*'))
                + glob.glob(os.path.join(ROOT, 'tests', 'fixtures', 'priors', '*')) if os.path.isdir(d))
NPZ = os.path.join(ROOT, 'models', 'training', 'nmf-dictionaries.npz')


def _dictionary(rng, bins=1025, atoms=6):
    W = rng.random((bins, atoms)) ** 4
    return (W / W.sum(axis=0)).astype(np.float32)


def _manifest(d):
    with open(os.path.join(d, 'manifest.json')) as f:
        return json.load(f)


def _fake_prior(d):
    os.makedirs(d)
    m = {'format': 'stemflow-prior', 'format_version': 1, 'stem': 'x', 'n_fft': 1024,
         'magnitude_scaling': {'kind': 'log-standardized', 'floor': 1e-05},
         'graphs': {'decode': {'file': 'decode.onnx', 'sha256': '0' * 64}},
         'training': {'data': 'none', 'steps': 0}}
    with open(os.path.join(d, 'manifest.json'), 'w') as f:
        json.dump(m, f, indent=2)
        f.write('\n')
    return m


def test_write_read_round_trip(tmp_path):
    d = str(tmp_path / 'x')
    before = _fake_prior(d)
    W = _dictionary(np.random.default_rng(0))
    section = nmf.write_dictionary(d, W, 2048, 512, {'source': 'test'})
    raw = open(os.path.join(d, 'nmf.bin'), 'rb').read()
    assert raw == W.astype('<f4').tobytes() and len(raw) == 1025 * 6 * 4
    assert section['sha256'] == hashlib.sha256(raw).hexdigest()
    # bin-major: atom k of bin b at b * atoms + k
    flat = np.frombuffer(raw, '<f4')
    assert flat[7 * 6 + 4] == W[7, 4]
    after = _manifest(d)
    assert list(after) == list(before) + ['nmf']
    assert {k: v for k, v in after.items() if k != 'nmf'} == before
    assert after['nmf'] == section and section == {
        'file': 'nmf.bin', 'sha256': section['sha256'], 'n_fft': 2048, 'hop': 512,
        'window': 'hann-periodic', 'center': 'zero', 'atoms': 6, 'bins': 1025,
        'training': {'source': 'test'}}
    text = open(os.path.join(d, 'manifest.json')).read()
    assert text == json.dumps(after, indent=2) + '\n'
    W2, s2 = nmf.read_dictionary(d)
    assert W2.tobytes() == raw and s2 == section

    # replaced in place: same keys, same order, the new file's hash
    W3 = _dictionary(np.random.default_rng(1), atoms=4)
    nmf.write_dictionary(d, W3, 2048, 512, {'source': 'again'})
    again = _manifest(d)
    assert list(again) == list(after) and again['nmf']['atoms'] == 4
    assert nmf.read_dictionary(d)[0].tobytes() == W3.tobytes()


def test_read_refuses_a_damaged_dictionary(tmp_path):
    d = str(tmp_path / 'x')
    _fake_prior(d)
    assert nmf.read_dictionary(d) is None
    nmf.write_dictionary(d, _dictionary(np.random.default_rng(0)), 2048, 512, {})
    path = os.path.join(d, 'nmf.bin')
    raw = bytearray(open(path, 'rb').read())
    raw[100] ^= 1
    open(path, 'wb').write(bytes(raw))
    with pytest.raises(ValueError, match='sha256'):
        nmf.read_dictionary(d)
    assert nmf.existing_section(d) is None
    with pytest.raises(ValueError):
        nmf.write_dictionary(d, -_dictionary(np.random.default_rng(0)), 2048, 512, {})
    with pytest.raises(ValueError):
        nmf.write_dictionary(d, _dictionary(np.random.default_rng(0), bins=513), 2048, 512, {})
    with pytest.raises(ValueError):
        nmf.write_dictionary(d, 2 * _dictionary(np.random.default_rng(0)), 2048, 512, {})


def test_learned_dictionary_is_normalised_and_non_negative():
    clips = [synth.render('saw', 2_000_000 + i, 2.0, 22050) for i in range(3)]
    W, info = nmf.learn_dictionary(clips, atoms=8, iters=30, max_frames=150)
    assert W.dtype == np.float32 and W.shape == (1025, 8)
    assert np.all(np.isfinite(W)) and np.all(W >= 0)
    np.testing.assert_allclose(W.sum(axis=0), 1.0, atol=1e-5)
    assert info['frames'] == 150 and info['items'] in (2, 3)   # <= 87 frames a clip
    # silent frames (a silent clip, the clips' rests) are not learned from
    V, used = nmf.dictionary_frames(clips + [np.zeros(22050)], max_frames=10_000, rng=np.random.default_rng(0))
    assert used == 4 and V.shape[1] < 3 * 87 and np.all(V.sum(axis=0) > nmf.SILENT_FRAME)
    # deterministic: the seed fixes the order and the start
    W2, _ = nmf.learn_dictionary(clips, atoms=8, iters=30, max_frames=150)
    assert W2.tobytes() == W.tobytes()


def _low_rank(rng, W_true, frames):
    H = rng.gamma(0.5, 1.0, (W_true.shape[1], frames))
    return W_true @ H


def _fitted_kl(V, W, iters=150):
    _, H = nmf.kl_nmf(V, None, iters, np.random.default_rng(7), W=W.astype(np.float64))
    return nmf.kl_divergence(V, W @ H) / V.sum()


def test_kl_decreases_and_the_dictionary_explains_its_own_source():
    rng = np.random.default_rng(0)
    bins, k = 64, 5
    # two sources: a few spectral shapes each, drawn from different parts of the spectrum
    shape = lambda centre: np.exp(-0.5 * ((np.arange(bins)[:, None] - centre[None, :]) / 2.0) ** 2)
    W_a = shape(rng.uniform(0, bins / 2, k))
    W_b = shape(rng.uniform(bins / 2, bins, k))
    V = _low_rank(rng, W_a, 300)

    kls = []
    for iters in range(0, 40):
        W, H = nmf.kl_nmf(V, k, iters, np.random.default_rng(3))
        kls.append(nmf.kl_divergence(V, W @ H))
    assert all(b <= a * (1 + 1e-9) for a, b in zip(kls, kls[1:])), kls
    assert kls[-1] < 0.05 * kls[0]

    W, _ = nmf.kl_nmf(V, k, 300, np.random.default_rng(3))
    own = _fitted_kl(_low_rank(rng, W_a, 100), W)
    other = _fitted_kl(_low_rank(rng, W_b, 100), W)
    assert own < 0.1 * other, (own, other)


def test_fixture_dictionaries_explain_their_own_held_out_source():
    """Each synthetic fixture prior's dictionary fits held-out (validation-seed) audio of its own
    source with a lower KL per unit magnitude than the other source's."""
    dicts = {}
    for stem in ('sine', 'noise'):
        got = nmf.read_dictionary(os.path.join(ROOT, 'tests', 'fixtures', 'priors', stem))
        if got is None:
            pytest.skip(f"fixture prior {stem} has no nmf section")
        dicts[stem] = got[0]
    V = {s: np.abs(stft(data.synthetic_clip(s, 0, valid=True), n_fft=2048, hop=512)) for s in dicts}
    for stem, W in dicts.items():
        other = 'noise' if stem == 'sine' else 'sine'
        own, theirs = _fitted_kl(V[stem], W, 100), _fitted_kl(V[other], W, 100)
        assert own < theirs, (stem, own, theirs)


@pytest.mark.parametrize("d", PRIORS, ids=[os.path.relpath(d, ROOT) for d in PRIORS])
def test_prior_dictionary_matches_its_manifest(d):
    got = nmf.read_dictionary(d)
    if got is None:
        pytest.skip("no nmf section")
    W, section = got
    assert W.shape == (section['bins'], section['atoms']) and section['bins'] == section['n_fft'] // 2 + 1
    assert os.path.getsize(os.path.join(d, section['file'])) == section['bins'] * section['atoms'] * 4
    assert section['window'] == 'hann-periodic' and section['center'] == 'zero'
    assert np.all(np.isfinite(W)) and np.all(W >= 0)
    np.testing.assert_allclose(W.astype(np.float64).sum(axis=0), 1.0, atol=1e-4)
    # every prior that can be used together shares the dictionary STFT
    assert (section['n_fft'], section['hop']) == (nmf.N_FFT, nmf.HOP)


def test_shipped_dictionaries_are_the_evaluation_dictionaries():
    z = np.load(NPZ)
    for stem in (s for s in z.files if s != 'info'):
        got = nmf.read_dictionary(os.path.join(ROOT, 'models', 'priors', stem))
        if got is None:
            continue
        assert got[0].tobytes() == z[stem].astype('<f4').tobytes(), stem


def _small_export(d):
    cfg = glow.Config(steps=2, hidden=8)
    params, norm = export.random_prior(cfg, seed=1)
    return export.export_prior(d, 'x', cfg, params, norm, {'data': 'none', 'steps': 0}, check=False)


def test_export_keeps_a_matching_dictionary(tmp_path):
    d = str(tmp_path / 'x')
    _small_export(d)
    W = _dictionary(np.random.default_rng(2))
    section = nmf.write_dictionary(d, W, 2048, 512, {'source': 'test'})
    m = _small_export(d)
    assert m['nmf'] == section and _manifest(d)['nmf'] == section
    assert list(_manifest(d))[-1] == 'nmf'
    os.remove(os.path.join(d, 'nmf.bin'))          # a section whose file is gone is dropped
    assert 'nmf' not in _small_export(d)


def test_training_audio_is_what_the_flow_trains_on(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(str(tmp_path / f'f{i}.wav'), 0.1 * rng.standard_normal(int(22050 * 7.6)), 22050)
    items, load, _ = data.training_audio(f'dir:{tmp_path}')
    assert [os.path.basename(f) for f in items] == ['f0.wav', 'f1.wav', 'f2.wav']   # f3 held out
    segs = [s for f in items for s in load(f)]
    assert len(segs) == 6                                           # 5 s + 2.6 s per file
    mags = data.dir_segments(str(tmp_path))
    np.testing.assert_array_equal(mags, np.stack([data.segment_magnitude(s) for s in segs]))
    items, load, _ = data.training_audio('synthetic:sine')
    first = load(next(iter(items)))[0]
    np.testing.assert_array_equal(data.segment_magnitude(first), data.synthetic_segments('sine', 5)[0])


def test_trainer_writes_the_dictionary_of_its_source(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rec = tmp_path / 'rec'
    rec.mkdir()
    for i in range(3):
        sf.write(str(rec / f'f{i}.wav'), 0.1 * rng.standard_normal(22050 * 5), 22050)
    d = str(tmp_path / 'x')
    _small_export(d)
    a = SimpleNamespace(no_nmf=False, nmf_atoms=4, nmf_iters=10, nmf_max_frames=300)
    train.export_nmf(d, f'dir:{rec}', a)
    W, section = nmf.read_dictionary(d)
    assert W.shape == (1025, 4) and section['training']['source'] == f'dir:{rec}'
    assert section['training']['files'] == 2 and section['training']['frames'] == 300
    assert 'NMF dictionary: 4 atoms' in capsys.readouterr().out
    # a source that is gone: the prior keeps what it has
    train.export_nmf(d, f'dir:{tmp_path / "gone"}', a)
    assert nmf.read_dictionary(d)[1] == section
