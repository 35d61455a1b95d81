"""The evaluation's SDR definition, masks and baselines, its estimate cache, and the
prior-preference check."""
import json
import os

import numpy as np

from stemflow_research import evaluate as ev


def test_sdr_definition_and_silence():
    seg = 1000
    ref = np.concatenate([np.ones(seg), np.zeros(seg), np.ones(seg)])
    est = 0.5 * ref
    v = ev.segment_sdrs(ref, est, seg)
    assert len(v) == 2                                  # the silent middle segment is skipped
    assert abs(v[0] - 10 * np.log10(1 / 0.25)) < 1e-6   # 6.02 dB
    bias = ev.segment_level_bias(ref, est, seg)
    assert len(bias) == 2                               # the same segments are scored
    assert abs(bias[0] - 10 * np.log10(0.25)) < 1e-6    # half the amplitude: −6.02 dB


def test_masks_sum_to_the_mix():
    rng = np.random.default_rng(2)
    refs = {s: rng.standard_normal(8000) * (i + 1) for i, s in enumerate(ev.STEMS)}
    mix = sum(refs.values())
    for power in (1.0, 2.0):
        est = ev.oracle_separate(mix, refs, ev.STEMS, power)
        assert np.max(np.abs(sum(est.values()) - mix)) < 1e-8
    dicts = {s: np.abs(rng.standard_normal((513, 4))).astype(np.float32) for s in ev.STEMS}
    est = ev.nmf_separate(mix, dicts, 20, rng)
    assert np.max(np.abs(sum(est.values()) - mix)) < 1e-8
    dicts = {s: np.abs(rng.standard_normal((1025, 4))).astype(np.float32) for s in ev.STEMS}
    est = ev.nmf_separate(mix, dicts, 20, rng, power=1.0, n_fft=2048, hop=512)
    assert np.max(np.abs(sum(est.values()) - mix)) < 1e-8


def test_kl_nmf_fits_a_low_rank_matrix():
    rng = np.random.default_rng(3)
    V = rng.random((30, 3)) @ rng.random((3, 200))
    W, H = ev.kl_nmf(V, 3, 300, rng)
    assert np.allclose(W.sum(axis=0), 1.0)
    assert np.mean(np.abs(W @ H - V)) / np.mean(V) < 0.05
    _, H2 = ev.kl_nmf(V, None, 300, rng, W=W)     # fixed dictionary: activations only
    assert np.mean(np.abs(W @ H2 - V)) / np.mean(V) < 0.05


def test_prior_check_prefers_own_source(tmp_path):
    import soundfile as sf
    from stemflow_research import prior_check
    from stemflow_training import synth
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    priors = os.path.join(repo, 'tests', 'fixtures', 'priors')
    for kind in ('sine', 'noise'):
        os.makedirs(tmp_path / kind)
        for i in range(2):
            y = synth.render(kind, 2_500_000 + synth.KIND_OFFSET[kind] + i, 5.0, 22050)
            sf.write(str(tmp_path / kind / f'{i}.wav'), y, 22050, subtype='FLOAT')
    table, counts = prior_check.matrix(priors, ['sine', 'noise'], str(tmp_path), ['sine', 'noise'], 0)
    assert counts == {'sine': 2, 'noise': 2}
    assert table['sine']['sine'] > table['noise']['sine']
    assert table['noise']['noise'] > table['sine']['noise']
    assert '**' in prior_check.markdown(table, ['sine', 'noise'])


def test_crops_of_same_named_pieces_from_two_sets_do_not_collide(tmp_path):
    """--max-seconds crops (what the Glow CLI separates) live under the source file's hash: two
    sets with the same piece names, evaluated into one work folder, keep their own crops."""
    import soundfile as sf
    work = tmp_path / 'work'
    sources = {}
    for seed, name in ((1, 'a'), (2, 'b')):
        root = tmp_path / name
        (root / 'mixtures').mkdir(parents=True)
        (root / 'references' / 'piece').mkdir(parents=True)
        mix = np.random.default_rng(seed).uniform(-0.5, 0.5, 22050).astype(np.float32)
        sf.write(root / 'mixtures' / 'piece.wav', mix, 22050, subtype='FLOAT')
        for stem in ev.STEMS:
            sf.write(root / 'references' / 'piece' / f'{stem}.wav', mix / 4, 22050, subtype='FLOAT')
        ev.main(['--mixtures', str(root / 'mixtures'), '--references', str(root / 'references'),
                 '--max-seconds', '0.5', '--nmf', str(tmp_path / 'none.npz'), '--work', str(work)])
        sources[ev.file_key(str(root / 'mixtures' / 'piece.wav'))] = mix[:11025]
    crops = sorted((work / 'crop-0.5s').glob('*/piece.wav'))
    assert len(crops) == 2
    for crop in crops:
        audio, _ = sf.read(crop, dtype='float32')
        np.testing.assert_array_equal(audio, sources[crop.parent.name])


def test_a_prior_row_is_named_after_its_family_and_search(tmp_path):
    for name, manifest in (('glow', {'stem': 'bass', 'model': {'kind': 'glow'}}),
                           ('flow', {'stem': 'bass', 'domain': 'waveform', 'model': {'kind': 'flowavenet'}})):
        (tmp_path / name / 'bass').mkdir(parents=True)
        (tmp_path / name / 'bass' / 'manifest.json').write_text(json.dumps(manifest))
    assert ev.prior_row_name(str(tmp_path / 'glow'), ['bass'], 'mle', '') == 'Glow MLE'
    assert ev.prior_row_name(str(tmp_path / 'glow'), ['bass'], 'map:0.5', '--steps 50') == 'Glow MAP γ=0.5'
    assert ev.prior_row_name(str(tmp_path / 'flow'), ['bass'], 'mle', '--separator sgld --steps 30') == 'FloWaveNet + sgld'
