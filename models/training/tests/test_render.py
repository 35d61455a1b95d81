"""The data renderer (generators, split by piece, FluidSynth), the STFT inverse the evaluation
uses, and the directory data source."""
import os

import numpy as np

from stemflow_training import generators as gen
from stemflow_training import stft


def require_fluidsynth(soundfont, package):
    """Fail (never skip) when libfluidsynth or a soundfont is missing: `cargo xtask test` installs
    the renderer's Debian packages before it runs these tests."""
    from stemflow_training import fluid
    missing = ([] if fluid.load_library() is not None else ['fluidsynth']) + \
        ([] if os.path.exists(soundfont) else [package])
    assert not missing, (f"missing Debian packages {' '.join(missing)} ({soundfont}): "
                         f"run `cargo xtask test`, which installs them, or `apt-get install {' '.join(missing)}`")


def test_istft_inverts_contract_stft():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(22050 + 123)
    y = stft.istft(stft.stft(x), len(x))
    assert np.max(np.abs(x - y)) < 1e-9


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
    from stemflow_training import render
    splits = render.plan(render.QUICK_COUNTS)
    train = {p['source'] for p in splits['train']}
    valid = {p['source'] for p in splits['valid']}
    assert train and valid and not (train & valid)
    ids = [p['id'] for p in splits['train'] + splits['valid']]
    assert len(ids) == len(set(ids))
    assert render.plan(render.QUICK_COUNTS) == splits          # fixed seeds


def test_extra_training_pieces_leave_the_base_plan_and_validation_alone():
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
    require_fluidsynth(path, 'avldrums.lv2-soundfont')
    synth = fluid.Synth(path)
    assert synth.has_preset(0, 0) and not synth.has_preset(128, 0)
    kick = synth.render([(0.0, 0.1, 36, 110), (0.5, 0.1, 38, 110)], 0, drums=True, bank=0)
    assert np.sqrt(np.mean(kick ** 2)) > 1e-4


def test_fluidsynth_renders_a_note():
    from stemflow_training import fluid, render
    path = render.SOUNDFONTS['timgm6mb'][0]
    require_fluidsynth(path, 'timgm6mb-soundfont')
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

# ---------------------------------------------------------------- reserved material
def test_no_reserved_piece_or_soundfont_can_be_drawn():
    """Neither the base plan nor the extra training pieces hold a piece of
    ../shared/RESERVED-EVALUATION.md, and no palette holds a reserved soundfont."""
    from stemflow_training import render, reserved
    splits = render.plan(render.COUNTS, render.EXTRA_TRAIN)
    drawn = [p['source'] for p in splits['train'] + splits['valid'] if p['family'] != 'generated']
    assert len(drawn) == sum(c[0] + c[1] for f, c in render.COUNTS.items() if f != 'generated') + \
        sum(n for f, n in render.EXTRA_TRAIN.items() if f != 'generated')
    assert not [p for p in drawn if reserved.is_reserved_piece(p)]
    for name, (path, package) in render.ALL_SOUNDFONTS.items():
        assert not reserved.is_reserved_soundfont(path, package), name
    assert not set(render.packages(wide=True)) & reserved.RESERVED_PACKAGES
    rng = np.random.default_rng(0)
    for palette in (None, 'wide'):
        for stem in render.STEMS:
            for heldout in (False, True):
                fonts = {render._choose_sf(rng, heldout, palette, stem) for _ in range(200)}
                for f in fonts:
                    assert not reserved.is_reserved_soundfont(*render.ALL_SOUNDFONTS[f]), (palette, stem, f)


def test_reserved_names_match_corpus_paths_and_fonts():
    from stemflow_training import reserved
    assert reserved.is_reserved_piece('bach/bwv43.11.mxl') and reserved.is_reserved_piece('bach/bwv43.11')
    assert reserved.is_reserved_piece('ryansMammoth/SalemHornpipe.abc')
    assert reserved.is_reserved_piece('mozart/k156/movement2.mxl')
    assert not reserved.is_reserved_piece('mozart/k156/movement4.mxl')
    assert not reserved.is_reserved_piece('bach/bwv43.1.mxl')
    assert reserved.is_reserved_soundfont('/usr/share/sounds/sf3/MuseScore_General_Full.sf3', 'x')
    assert reserved.is_reserved_soundfont('/x/font.sf2', 'csound-soundfont')
    assert not reserved.is_reserved_soundfont('/usr/share/sounds/sf3/MuseScore_General_Lite.sf3',
                                              'musescore-general-soundfont-small')
    import pytest
    with pytest.raises(ValueError):
        reserved.check_soundfonts({'full': ('/usr/share/sounds/sf3/MuseScore_General_Full.sf3',
                                            'musescore-general-soundfont')})


def test_reserved_piece_is_skipped_after_the_shuffle(monkeypatch):
    """A reserved piece in a family is never drawn, even when every piece is; the pieces drawn
    before it in the shuffle keep their place and seed."""
    from stemflow_training import corpus, render
    fake = [f'bach/bwv{i}.mxl' for i in range(1, 20)] + ['bach/bwv432.mxl', 'bach/bwv302.mxl']
    monkeypatch.setattr(corpus, 'list_family', lambda family: sorted(fake))
    splits = render.plan({'chorale': (17, 2)})
    drawn = [p['source'] for p in splits['train'] + splits['valid']]
    assert sorted(drawn) == sorted(fake[:19])


def test_base_plan_is_the_committed_manifests():
    """Excluding reserved pieces by name leaves the shipped data's pieces and seeds as they are, so
    models/data-manifest.json stays reproducible."""
    import json
    from stemflow_training import render
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, '..', '..', 'data-manifest.json')) as f:
        manifest = json.load(f)
    splits = render.plan(render.COUNTS)
    for split in ('train', 'valid'):
        got = [(p['id'], p['source'], p['seed']) for p in splits[split]]
        want = [(p['id'], p['source'], p['seed']) for p in manifest['splits'][split]]
        assert got == want, split
