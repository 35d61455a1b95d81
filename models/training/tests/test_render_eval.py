"""Issue 3 groundwork: the data renderer's generators / split, and the evaluation's
STFT inverse, SDR definition and baselines."""
import os

import numpy as np
import pytest

from stemflow_training import evaluate as ev
from stemflow_training import generators as gen


def test_istft_inverts_contract_stft():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(22050 + 123)
    y = ev.istft(ev.stft(x), len(x))
    assert np.max(np.abs(x - y)) < 1e-9


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


def test_kl_nmf_fits_a_low_rank_matrix():
    rng = np.random.default_rng(3)
    V = rng.random((30, 3)) @ rng.random((3, 200))
    W, H = ev.kl_nmf(V, 3, 300, rng)
    assert np.allclose(W.sum(axis=0), 1.0)
    assert np.mean(np.abs(W @ H - V)) / np.mean(V) < 0.05
    _, H2 = ev.kl_nmf(V, None, 300, rng, W=W)     # fixed dictionary: activations only
    assert np.mean(np.abs(W @ H2 - V)) / np.mean(V) < 0.05


def test_generators_are_seeded_and_in_range():
    def make(seed):
        rng = np.random.default_rng(seed)
        tonic, mode, chords = gen.harmony(rng, 8, 4)
        bass, _ = gen.bass_line(rng, chords, 4)
        drums, _ = gen.drum_groove(rng, 8, 4)
        comp, _ = gen.comp(rng, chords, 4, 'guitar')
        return bass, drums, comp
    a, b = make(5), make(5)
    assert a == b
    bass, drums, comp = a
    lo, hi = gen.RANGES['bass']
    assert all(lo <= p <= hi for _, _, p, _ in bass)
    keys = {p for _, _, p, _ in drums}
    assert keys & {gen.KICK, gen.KICK2} and keys & {gen.SNARE, gen.SNARE2, gen.CLAP, gen.STICK}
    lo, hi = gen.RANGES['guitar']
    assert all(lo <= p <= hi for _, _, p, _ in comp)
    assert gen.fit_range([(0, 1, 90, 80), (1, 1, 96, 80)], 28, 55)[0][2] <= 55


def test_split_is_by_piece():
    pytest.importorskip('music21')
    from stemflow_training import render
    splits = render.plan(render.QUICK_COUNTS)
    train = {p['source'] for p in splits['train']}
    valid = {p['source'] for p in splits['valid']}
    assert train and valid and not (train & valid)
    ids = [p['id'] for p in splits['train'] + splits['valid']]
    assert len(ids) == len(set(ids))
    assert render.plan(render.QUICK_COUNTS) == splits          # fixed seeds


def test_extra_training_pieces_leave_the_base_plan_and_validation_alone():
    pytest.importorskip('music21')
    from stemflow_training import render
    extra = {'chorale': 2, 'folk': 1, 'generated': 2}
    base, wide = render.plan(render.QUICK_COUNTS), render.plan(render.QUICK_COUNTS, extra)
    assert wide['valid'] == base['valid']
    n = len(base['train'])
    assert wide['train'][:n] == base['train']                  # base pieces first, unchanged
    more = wide['train'][n:]
    assert len(more) == sum(extra.values()) and all(p['palette'] == 'wide' for p in more)
    ids = [p['id'] for p in wide['train'] + wide['valid']]
    assert len(ids) == len(set(ids))
    sources = {p['source'] for p in wide['valid']}
    assert not sources & {p['source'] for p in more}


def test_wide_palette_draws_only_training_soundfonts_and_kits_only_for_drums():
    from stemflow_training import render
    rng = np.random.default_rng(0)
    drums = {render._choose_sf(rng, False, 'wide', 'drums') for _ in range(400)}
    others = {render._choose_sf(rng, False, 'wide', 'bass') for _ in range(400)}
    assert render.HELDOUT_SOUNDFONT not in drums | others
    assert set(render.DRUM_KIT_SOUNDFONTS) <= drums and not others & set(render.DRUM_KIT_SOUNDFONTS)
    assert others == set(render.WIDE_WEIGHTS) and set(render.WIDE_WEIGHTS) <= set(render.ALL_SOUNDFONTS)


def test_drum_kit_soundfont_renders_from_bank_0():
    from stemflow_training import fluid, render
    path = render.DRUM_KIT_SOUNDFONTS['avl-black-pearl'][0]
    if fluid.load_library() is None or not os.path.exists(path):
        pytest.skip('fluidsynth / avldrums.lv2-soundfont not installed (the renderer installs them)')
    synth = fluid.Synth(path)
    assert synth.has_preset(0, 0) and not synth.has_preset(128, 0)
    kick = synth.render([(0.0, 0.1, 36, 110), (0.5, 0.1, 38, 110)], 0, drums=True, bank=0)
    assert np.sqrt(np.mean(kick ** 2)) > 1e-4


def test_fluidsynth_renders_a_note():
    from stemflow_training import fluid, render
    path = render.SOUNDFONTS['timgm6mb'][0]
    if fluid.load_library() is None or not os.path.exists(path):
        pytest.skip('fluidsynth / timgm6mb-soundfont not installed (the renderer installs them)')
    synth = fluid.Synth(path)
    y = synth.render([(0.1, 0.5, 40, 100)], 33)
    assert len(y) > 22050 and np.max(np.abs(y[:2000])) < 1e-6 and np.sqrt(np.mean(y ** 2)) > 1e-4
    d = synth.render([(0.0, 0.1, 36, 110)], 0, drums=True)
    assert np.sqrt(np.mean(d ** 2)) > 1e-4
    # no state (reverb tail, chorus phase) carries over from one part to the next
    a = synth.render([(0.0, 0.3, 60, 90), (0.2, 0.3, 64, 90)], 0, reverb=True, chorus=True)
    synth.render([(0.0, 1.0, 48, 127)] * 3, 48, reverb=True, chorus=True, tail=0.1)
    b = synth.render([(0.0, 0.3, 60, 90), (0.2, 0.3, 64, 90)], 0, reverb=True, chorus=True)
    assert np.array_equal(a, b)


def test_prior_check_prefers_own_source(tmp_path):
    import soundfile as sf
    from stemflow_training import prior_check, synth
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


def test_dir_source_with_separate_validation_folder(tmp_path):
    import soundfile as sf
    from stemflow_training import data
    rng = np.random.default_rng(4)
    for split, n in (('train', 3), ('valid', 1)):
        os.makedirs(tmp_path / split)
        for i in range(n):
            sf.write(str(tmp_path / split / f'p{i}_00.wav'), 0.1 * rng.standard_normal((110250, 2)), 22050)
    tr, va, desc = data.load_source(f'dir:{tmp_path / "train"},{tmp_path / "valid"}', None, None)
    assert tr.shape == (3, 513, 432) and va.shape == (1, 513, 432)
    assert 'valid dir:' in desc


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
