"""Render isolated instrument stems (bass, drums, guitar, piano) from MIDI-like note
lists with FluidSynth: the data for the instrument priors.

    python -m stemflow_training.render --out models/training/.cache/data
        [--manifest models/data-manifest.json] [--no-install] [--quick] [--extra-train]

Material: real composed music from the music21 corpus (Bach chorales, Haydn / Mozart
string quartets, Palestrina, fiddle tunes from Ryan's Mammoth Collection) with its
voices assigned to instruments and transposed into their ranges, plus generated
songs (progressions, bass lines, drum grooves, comping voicings, arpeggios, melodies)
for coverage.  Each piece gets a random tempo, transposition, velocity level,
articulation, program (piano 0-7, guitar 24-31, bass 32-39, drums: channel 10 kits)
and soundfont.  Everything derives from fixed seeds; the split is BY PIECE.

The recipe in full (models/README.md, "Data", summarises it):
- Material (corpus.py, generators.py): 130 training and 16 validation pieces --
  Bach chorales 44 + 4, Haydn/Mozart string-quartet movements 10 + 2 (90-beat excerpts from a
  bar line), Palestrina 16 + 3, fiddle tunes from Ryan's Mammoth Collection 24 + 3, generated
  songs 36 + 4. Voices of a score are ordered by mean pitch: lowest -> bass; the upper voices go to
  piano and guitar in one of three ways (top voices piano / rest guitar, top voice guitar / inner
  voices piano, or all upper voices piano and the guitar arpeggiating/strumming the sounding
  harmony). A fiddle tune's melody goes to piano or guitar, a triad per bar is fitted to it, and
  the bass line and the other instrument's comping are generated on those chords. Generated songs:
  random key/mode, progression (incl. 12-bar blues), bass style (root, eighths, root-fifth,
  octaves, walking, funk 16ths, arpeggio, sustained), comping (block, strum with staggered
  up/down strokes, arpeggios, Alberti, off-beat, power chords, pads, broken chords) and melodies.
  Drums are always generated: 13 grooves (rock, pop 16ths, funk with ghost notes, half-time,
  shuffle, disco, jazz ride, bossa, metal double kick, reggae one-drop, breakbeat, waltz, ballad)
  with kick/snare/side-stick/clap, closed/pedal/open hats, ride, crashes/splash/china, tom fills
  every 4 or 8 bars, percussion.
- Variation per piece and stem: tempo (chorales 60-100 bpm, quartets 70-140, Palestrina
  100-170, tunes 90-170, generated 70-165), transposition -5...+6 semitones then octave-fitting
  into each instrument's range (bass E1-G3, guitar E2-G5, piano A1-C7), velocity level 45-117
  with accents and +-7 jitter, articulation (duration x 1.0 / 0.92 / 0.8 / 0.55), timing
  humanisation up to 12 ms, swing, reverb on for 35 % and chorus for 15 % of stems, GM program
  (piano 0-7, guitar 24-31, bass 32-39; drums: channel 10 kits 0, 8, 16, 24, 25, 32, 40, 48
  where the soundfont has them), soundfont (training: FluidR3 45 %, MuseScore General 40 %,
  OPL-3 FM 15 %), level (the RMS of the stem's active 100-ms frames set to -30...-18 dBFS;
  absolute level matters: the priors model unnormalised magnitudes).
- Held-out soundfont: TimGM6mb is never used for training; the 16 validation pieces are
  rendered a second time with it (valid-heldout-sf/). The fonts reserved.py lists are never
  used.
- Split by piece (seed 20261122 shuffles each corpus family; the first n are validation;
  generated pieces: training seeds 100000+i, validation 900000+i). A chorale melody harmonised
  twice in the corpus under two BWV numbers, or two movements of one quartet, can still fall on
  both sides.
- Segments: each training stem is cut into 5-s segments from its first sound; a segment is
  kept if its RMS is >= -50 dBFS and >= 30 % of its 100-ms frames are above -60 dBFS. Training
  pieces are capped at 40 s, validation pieces at 30 s. Validation mixtures are the plain sum of
  the piece's four stems (all four scaled together if the sum would peak above 0.98); no mixture
  is ever used for training.
- Every part is rendered on a fresh FluidSynth synthesizer that borrows the loaded soundfont
  (fluid.py), so no reverb tail or chorus phase carries over from the previously rendered part.
- `--extra-stem strings|organ` also renders a fifth stem for the "bring your own stem" check (GM
  strings 40, 41, 42, 44, 48-51 in G2-C6, or organs 16-20; sustained voicings or a counter-line
  over the harmony the other three pitched stems sound): train/<it>/, valid/<it>/, and 5-stem
  mixtures in valid-5stem/ and valid-heldout-sf-5stem/. It uses its own random stream, so the
  four-stem data are unchanged by it.
- `--extra-train` (EXTRA_TRAIN: chorales 100, quartet movements 10, Palestrina 40, fiddle tunes
  60, generated 90, seeds from a separate stream) renders with the three training fonts and, for
  35 % of their drum parts, one of the two AVL acoustic kits (avldrums.lv2-soundfont, one
  GM-mapped kit in bank 0 each).

Extra training pieces (`--extra-train`: EXTRA_TRAIN, 300 more; the shipped priors do not use them): the next
pieces of each family's shuffle and more generated seeds, rendered with a wider timbre palette
(the training fonts, and for drums the two AVL acoustic kits).  They only add training data: the
base pieces and both validation sets come out sample-identical with or without them.

Reserved material (`reserved.py`, the list of ../shared/RESERVED-EVALUATION.md) is never drawn:
a reserved corpus piece is skipped by name after the seeded shuffle (the next path of the shuffle
takes its place, so the other draws are unchanged), and a palette with a reserved soundfont is
refused.

Output (a cache; this command regenerates it):
  OUT/train/<stem>/<piece>_<k>.wav          5-s training segments (silence-trimmed)
  OUT/valid/<stem>/<piece>_<k>.wav          5-s validation segments (for NLL)
  OUT/valid/mixtures/<piece>.wav            validation mixture = sum of its 4 stems
  OUT/valid/references/<piece>/<stem>.wav   the stems of that mixture
  OUT/valid-heldout-sf/...                  the same pieces, rendered with a soundfont
                                            never used in training (generalisation check)
All mono float32 WAV at 22050 Hz.  The committed manifest lists every piece (corpus
path or generator seed), program, soundfont, style and gain of both splits.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from . import corpus, generators as gen, reserved
from .files import sha256
from .fluid import Synth, load_library

SR = 22050
SEG = 5 * SR
STEMS = ('bass', 'drums', 'guitar', 'piano')
PROGRAMS = {'piano': list(range(0, 8)), 'guitar': list(range(24, 32)), 'bass': list(range(32, 40))}
# a fifth stem for the "bring your own stem" check (--extra-stem): rendered with its own random
# stream, so the four-stem data stays bit-identical with or without it
EXTRA_STEMS = {
    'strings': {'programs': [40, 41, 42, 44, 48, 49, 50, 51], 'range': (43, 84)},   # violin .. synth strings
    'organ': {'programs': [16, 17, 18, 19, 20], 'range': (36, 84)},                # drawbar .. reed organ
}
DRUM_KITS = [0, 8, 16, 24, 25, 32, 40, 48]  # standard, room, power, electronic, 808, jazz, brush, orchestral

# name -> (path, Debian package, sampling weight in training)
SOUNDFONTS = {
    'fluidr3': ('/usr/share/sounds/sf2/FluidR3_GM.sf2', 'fluid-soundfont-gm', 0.45),
    'musescore': ('/usr/share/sounds/sf3/MuseScore_General_Lite.sf3', 'musescore-general-soundfont-small', 0.40),
    'opl3': ('/usr/share/sounds/sf2/OPL-3_FM_128M.sf2', 'opl3-soundfont', 0.15),
    'timgm6mb': ('/usr/share/sounds/sf2/TimGM6mb.sf2', 'timgm6mb-soundfont', 0.0),
}
TRAIN_SOUNDFONTS = ('fluidr3', 'musescore', 'opl3')
# The wider palette of the extra training pieces (EXTRA_TRAIN): the training fonts and, for drums
# only, the two AVL acoustic kits (each a single GM-mapped kit in bank 0); no font reserved.py
# lists.  The base pieces and both validation sets are unchanged.
WIDE_ONLY_SOUNDFONTS = {}   # name -> (path, package): fonts only the wide palette uses (none today)
WIDE_WEIGHTS = {'fluidr3': 0.45, 'musescore': 0.40, 'opl3': 0.15}
DRUM_KIT_SOUNDFONTS = {   # name -> (path, package); chosen for an extra piece's drums with DRUM_KIT_SHARE
    'avl-black-pearl': ('/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2', 'avldrums.lv2-soundfont'),
    'avl-red-zeppelin': ('/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2', 'avldrums.lv2-soundfont'),
}
DRUM_KIT_SHARE = 0.35
HELDOUT_SOUNDFONT = 'timgm6mb'   # never in training
BASE_SOUNDFONTS = {n: v[:2] for n, v in SOUNDFONTS.items()}    # name -> (path, package)
ALL_SOUNDFONTS = {**BASE_SOUNDFONTS, **WIDE_ONLY_SOUNDFONTS, **DRUM_KIT_SOUNDFONTS}
reserved.check_soundfonts(ALL_SOUNDFONTS)   # no reserved font in any palette (raises at import)


def packages(wide=False):
    """The Debian packages a render needs (`wide`: also those of the extra pieces' palette)."""
    fonts = ALL_SOUNDFONTS if wide else BASE_SOUNDFONTS
    return ('fluidsynth',) + tuple(dict.fromkeys(v[1] for v in fonts.values()))

# pieces per family: (train, valid).  Valid pieces come first in each seeded shuffle.
COUNTS = {'chorale': (44, 4), 'quartet': (10, 2), 'palestrina': (16, 3), 'folk': (24, 3), 'generated': (36, 4)}
# extra training pieces per family, appended after the base plan with their own random stream and
# the wider timbre palette (more pieces and more timbres than a prior can memorise)
EXTRA_TRAIN = {'chorale': 100, 'quartet': 10, 'palestrina': 40, 'folk': 60, 'generated': 90}
QUICK_COUNTS = {'chorale': (3, 1), 'quartet': (1, 1), 'palestrina': (1, 1), 'folk': (2, 1), 'generated': (2, 1)}
SPLIT_SEED = 20261122
GEN_SEED_BASE = {'train': 100000, 'valid': 900000}
MAX_SECONDS = {'train': 40.0, 'valid': 30.0}
SILENCE_DBFS = -50.0     # a 5-s segment below this RMS is silence (as data.py)
MIN_ACTIVE = 0.3         # ... or with fewer than 30 % of its 100-ms frames above -60 dBFS


# ---------------------------------------------------------------- packages
def check_packages(install=True, wide=False):
    missing = []
    for pkg in packages(wide):
        r = subprocess.run(['dpkg-query', '-W', '-f=${Status}', pkg], capture_output=True, text=True)
        if 'install ok installed' not in r.stdout:
            missing.append(pkg)
    if missing and install:
        print(f"render: installing Debian packages {' '.join(missing)}", flush=True)
        apt = ['apt-get'] if os.geteuid() == 0 else ['sudo', '-n', 'apt-get']
        subprocess.run(apt + ['update', '-qq'], check=False)
        r = subprocess.run(apt + ['install', '-y', '-qq'] + missing,
                           env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))
        if r.returncode != 0:
            sys.exit(f"render: could not install {' '.join(missing)}: run "
                     f"`apt-get install {' '.join(missing)}` as root")
        return check_packages(install=False, wide=wide)
    if missing:
        sys.exit(f"render: missing Debian packages: {' '.join(missing)} (apt-get install {' '.join(missing)})")
    if load_library() is None:
        sys.exit("render: libfluidsynth.so.3 not loadable (package fluidsynth)")
    for name, (path, pkg) in (ALL_SOUNDFONTS if wide else BASE_SOUNDFONTS).items():
        if not os.path.exists(path):
            sys.exit(f"render: soundfont {path} missing (package {pkg})")
    versions = {}
    for pkg in packages(wide):
        r = subprocess.run(['dpkg-query', '-W', '-f=${Version}', pkg], capture_output=True, text=True)
        versions[pkg] = r.stdout.strip()
    return versions


# ---------------------------------------------------------------- planning
def _piece_id(family, path):
    parts = os.path.splitext(path)[0].split('/')[1:]   # drop the composer folder
    return family[:4] + '-' + '_'.join(parts).replace('.', '_')


def plan(counts, extra_train=None):
    """The list of pieces of each split: {id, family, source, seed}.  `extra_train` ({family: n})
    appends n more training pieces per family (marked palette 'wide'): the next paths of the same
    shuffle, seeds from a separate stream, so the base plan and validation are unchanged."""
    rng = np.random.default_rng(SPLIT_SEED)
    xrng = np.random.default_rng([SPLIT_SEED, 1])
    extra_train = extra_train or {}
    wide = []
    splits = {'train': [], 'valid': []}
    for family, (n_train, n_valid) in counts.items():
        if family == 'generated':
            for split, n in (('valid', n_valid), ('train', n_train)):
                for i in range(n):
                    seed = GEN_SEED_BASE[split] + i
                    splits[split].append({'id': f'gen{seed}', 'family': 'generated', 'source': f'seed:{seed}', 'seed': seed})
            for i in range(n_train, n_train + extra_train.get(family, 0)):
                seed = GEN_SEED_BASE['train'] + i
                wide.append({'id': f'gen{seed}', 'family': 'generated', 'source': f'seed:{seed}', 'seed': seed,
                             'palette': 'wide'})
            continue
        paths = corpus.list_family(family)
        # the shuffle runs over the whole family and reserved pieces are skipped after it, so a
        # family without reserved pieces among its first draws gives the same pieces and seeds
        order = [i for i in rng.permutation(len(paths)) if not reserved.is_reserved_piece(paths[i])]
        chosen = [paths[i] for i in order[:n_valid + n_train]]
        for j, p in enumerate(chosen):
            split = 'valid' if j < n_valid else 'train'
            seed = int(rng.integers(1 << 30))
            splits[split].append({'id': _piece_id(family, p), 'family': family, 'source': p, 'seed': seed})
        more = [paths[i] for i in order[n_valid + n_train:n_valid + n_train + extra_train.get(family, 0)]]
        for p in more:
            wide.append({'id': _piece_id(family, p), 'family': family, 'source': p, 'seed': int(xrng.integers(1 << 30)),
                         'palette': 'wide'})
    splits['train'] += wide   # after the base pieces
    return splits


def _choose_sf(rng, heldout, palette=None, stem=None):
    if heldout:
        return HELDOUT_SOUNDFONT
    if palette == 'wide':
        if stem == 'drums' and rng.random() < DRUM_KIT_SHARE:
            return sorted(DRUM_KIT_SOUNDFONTS)[int(rng.integers(len(DRUM_KIT_SOUNDFONTS)))]
        names = sorted(WIDE_WEIGHTS)
        w = np.array([WIDE_WEIGHTS[n] for n in names])
        return names[int(rng.choice(len(w), p=w / w.sum()))]
    w = np.array([SOUNDFONTS[n][2] for n in TRAIN_SOUNDFONTS])
    return TRAIN_SOUNDFONTS[int(rng.choice(len(w), p=w / w.sum()))]


def articulate(rng, notes, instrument):
    """Velocity level and accents, duration (legato .. staccato), timing humanisation."""
    base = int(rng.integers(45, 118))
    dscale = float(rng.choice([1.0, 0.92, 0.8, 0.55]))
    hum = float(rng.uniform(0.0, 0.012))
    out = []
    for s, d, p, _ in notes:
        acc = 8 if abs(s - round(s)) < 1e-6 and int(round(s)) % 2 == 0 else 0
        out.append((s, d * dscale, p, gen.velocity(rng, base, acc, 7)))
    return out, {'velocity': base, 'duration_scale': dscale, 'humanize_s': round(hum, 4)}, hum


def harmony_from_voices(voices, beats_per_bar, length, step):
    """Chords (start, length, pitch classes) sampled from the sounding voices."""
    chords = []
    for t in np.arange(0, length, step):
        pcs = []
        for v in voices:
            for s, d, p, _ in v:
                if s <= t + 1e-6 < s + d and p % 12 not in pcs:
                    pcs.append(p % 12)
        if pcs:
            chords.append((float(t), step, pcs))
    return chords


def compose(piece, cache_dir):
    """Beat-time note lists per stem, tempo and a description, deterministic in the piece."""
    rng = np.random.default_rng(piece['seed'])
    fam = piece['family']
    desc = {}
    if fam == 'generated':
        bpb = 3 if rng.random() < 0.15 else 4
        bpm = float(rng.uniform(70, 165))
        bars = int(np.ceil(75.0 * bpm / 60.0 / bpb))
        tonic, mode, chords = gen.harmony(rng, bars, bpb)
        length = bars * bpb
        bass, bstyle = gen.bass_line(rng, chords, bpb)
        parts = {'bass': bass}
        r = rng.random()
        if r < 0.35:
            parts['piano'] = gen.melody(rng, chords, bpb, 'piano', tonic, mode)
            parts['guitar'], gstyle = gen.comp(rng, chords, bpb, 'guitar')
            desc.update(piano='melody', guitar=gstyle)
        elif r < 0.65:
            parts['guitar'] = gen.melody(rng, chords, bpb, 'guitar', tonic, mode)
            parts['piano'], pstyle = gen.comp(rng, chords, bpb, 'piano')
            desc.update(guitar='melody', piano=pstyle)
        else:
            parts['guitar'], gstyle = gen.comp(rng, chords, bpb, 'guitar')
            parts['piano'], pstyle = gen.comp(rng, chords, bpb, 'piano')
            desc.update(guitar=gstyle, piano=pstyle)
        desc.update(bass=bstyle, key=int(tonic), mode=mode, meter=bpb)
        transpose = 0
    else:
        d = corpus.voices(piece['source'], cache_dir)
        bpb = d['beats_per_bar'] if d['beats_per_bar'] in (2.0, 3.0, 4.0, 6.0) else 4.0
        bpm = float({'chorale': rng.uniform(60, 100), 'quartet': rng.uniform(70, 140),
                     'palestrina': rng.uniform(100, 170), 'folk': rng.uniform(90, 170)}[fam])
        transpose = int(rng.integers(-5, 7))
        vs = [[(s, dd, p + transpose, v) for s, dd, p, v in voice] for voice in d['voices']]
        total = max((s + dd for v in vs for s, dd, _, _ in v), default=0.0)
        want = 90.0 * bpm / 60.0
        start = 0.0
        if total > want:  # excerpt starting on a bar line
            start = float(bpb * int(rng.integers(0, int((total - want) / bpb) + 1)))
        vs = corpus.excerpt(vs, start, want)
        vs = [v for v in vs if v]
        length = max((s + dd for v in vs for s, dd, _, _ in v), default=0.0)
        desc.update(excerpt_beats=[start, start + length], transpose=transpose)
        if fam == 'folk' or len(vs) == 1:
            mel = vs[0]
            tonic = (d['key'] + transpose) % 12
            chords = corpus.fit_chords(mel, bpb, tonic, d['mode'], length)
            bass, bstyle = gen.bass_line(rng, chords, bpb)
            parts = {'bass': bass}
            lead = 'piano' if rng.random() < 0.5 else 'guitar'
            other = 'guitar' if lead == 'piano' else 'piano'
            parts[lead] = mel
            parts[other], cstyle = gen.comp(rng, chords, bpb, other)
            desc.update(bass=bstyle, **{lead: 'tune', other: cstyle})
        else:
            low, upper = vs[-1], vs[:-1]
            parts = {'bass': low}
            r = rng.random()
            if r < 0.4 or len(upper) < 2:
                k = max(1, len(upper) // 2)
                parts['piano'] = [n for v in upper[:k] for n in v]
                parts['guitar'] = [n for v in upper[k:] for n in v] or list(upper[-1])
                desc.update(bass='lowest voice', piano=f'upper voices 1-{k}', guitar='other upper voices')
            elif r < 0.7:
                parts['guitar'] = list(upper[0])
                parts['piano'] = [n for v in upper[1:] for n in v]
                desc.update(bass='lowest voice', guitar='top voice', piano='inner voices')
            else:
                parts['piano'] = [n for v in upper for n in v]
                chords = harmony_from_voices(vs, bpb, length, float(rng.choice([1.0, 2.0])))
                parts['guitar'], cstyle = gen.comp(rng, chords, bpb, 'guitar',
                                                   style=str(rng.choice(['arp_up', 'arp_updown', 'strum', 'block', 'broken', 'pad'])))
                desc.update(bass='lowest voice', piano='upper voices', guitar=f'{cstyle} on the harmony')
    bars = int(np.ceil(length / bpb))
    parts['drums'], dstyle = gen.drum_groove(rng, bars, int(bpb) if bpb in (3.0, 4.0) else 4)
    parts['drums'] = [n for n in parts['drums'] if n[0] < length]
    desc['drums'] = dstyle
    for inst in ('bass', 'guitar', 'piano'):
        lo, hi = gen.RANGES[inst]
        parts[inst] = gen.fit_range(parts[inst], lo, hi)
    swing = float(rng.choice([0.0, 0.0, 0.0, 0.5, 1.0])) if dstyle in ('shuffle', 'jazz') or rng.random() < 0.1 else 0.0
    return parts, bpm, swing, desc


def extra_part(rng, parts, beats, extra):
    """Notes (beats) for the fifth stem: sustained voicings or a counter-line over the
    harmony that bass, guitar and piano sound together."""
    lo, hi = EXTRA_STEMS[extra]['range']
    chords = harmony_from_voices([parts['bass'], parts['guitar'], parts['piano']], 4, beats,
                                 float(rng.choice([2.0, 4.0])))
    if not chords:
        return [], 'none'
    if rng.random() < 0.5:
        notes = []
        for start, length, pcs in chords:
            for p in gen.voicing(rng, pcs, lo, min(hi, lo + 24), int(rng.integers(2, 4))):
                notes.append((start, length * 0.98, p, gen.velocity(rng, int(rng.integers(50, 100)), 0, 5)))
        return notes, 'sustained voicings'
    hist = np.zeros(12)
    for _, d, p, _ in parts['bass']:
        hist[p % 12] += d
    tonic = int(np.argmax(hist))
    return gen.melody(rng, chords, 4, 'piano', tonic, 'major'), 'counter-line'


def render_piece(piece, synths, cache_dir, heldout, split, extra=None, sr=SR):
    """Render the stems of one piece with `synths(soundfont_name)` (synthesisers at rate `sr`)."""
    parts, bpm, swing, desc = compose(piece, cache_dir)
    rng = np.random.default_rng(piece['seed'] + (7 if heldout else 0) + 1)
    spec = {'id': piece['id'], 'family': piece['family'], 'source': piece['source'], 'seed': piece['seed'],
            'bpm': round(bpm, 2), 'swing': swing, 'material': desc, 'stems': {}}
    if piece.get('palette'):
        spec['palette'] = piece['palette']
    audio = {}
    max_len = int(MAX_SECONDS[split] * sr)
    for stem in STEMS:
        sf = _choose_sf(rng, heldout, piece.get('palette'), stem)
        synth = synths(sf)
        bank = 0 if sf in DRUM_KIT_SOUNDFONTS or stem != 'drums' else 128   # a kit-only font: bank 0
        if sf in DRUM_KIT_SOUNDFONTS:
            program, notes, art, hum = 0, parts['drums'], {'velocity': 'groove'}, 0.0
        elif stem == 'drums':
            kits = [k for k in DRUM_KITS if synth.has_preset(128, k)] or [0]
            if desc['drums'] == 'jazz' and any(k in kits for k in (32, 40)):
                kits = [k for k in (32, 40) if k in kits]
            program = int(rng.choice(kits))
            notes, art = parts['drums'], {'velocity': 'groove'}
            hum = 0.0
        else:
            progs = [p for p in PROGRAMS[stem] if synth.has_preset(0, p)]
            program = int(rng.choice(progs))
            notes, art, hum = articulate(rng, parts[stem], stem)
        secs = gen.to_seconds(notes, bpm, swing=swing, rng=rng, humanize=hum)
        reverb = bool(rng.random() < 0.35)
        chorus = bool(rng.random() < 0.15)
        y = synth.render(secs, program, drums=(stem == 'drums'), reverb=reverb, chorus=chorus, bank=bank)
        gain_db = float(rng.uniform(-30.0, -18.0))   # target RMS of the active part, dBFS
        audio[stem] = (y, gain_db)
        spec['stems'][stem] = {'soundfont': sf, 'bank': bank, 'program': program,
                               'notes': len(secs), 'reverb': reverb, 'chorus': chorus, 'target_rms_dbfs': round(gain_db, 2),
                               'articulation': art}
    # common start (first sound of any stem) and length
    n = max(len(y) for y, _ in audio.values())
    first = min(_first_sound(y) for y, _ in audio.values())
    out = {}
    for stem, (y, gain_db) in audio.items():
        z = np.zeros(n, dtype=np.float64)
        z[:len(y)] = y
        z = z[first:first + max_len]
        out[stem] = z * 10 ** ((gain_db - _active_rms_db(z, sr)) / 20.0)
    if extra:
        xr = np.random.default_rng([piece['seed'], 5, int(heldout)])
        beats = max((st + d for pp in parts.values() for st, d, _, _ in pp), default=0.0)
        notes, style = extra_part(xr, parts, beats, extra)
        sfn = _choose_sf(xr, heldout)
        synth = synths(sfn)
        progs = [p for p in EXTRA_STEMS[extra]['programs'] if synth.has_preset(0, p)]
        program = int(xr.choice(progs))
        notes, art, hum = articulate(xr, gen.fit_range(notes, *EXTRA_STEMS[extra]['range']), extra)
        secs = gen.to_seconds(notes, bpm, swing=swing, rng=xr, humanize=hum)
        reverb = bool(xr.random() < 0.35)
        y = synth.render(secs, program, reverb=reverb)
        z = np.zeros(first + len(out['bass']))
        m = min(len(y), len(z))
        z[:m] = y[:m]
        z = z[first:]
        gain_db = float(xr.uniform(-30.0, -18.0))
        out[extra] = z * 10 ** ((gain_db - _active_rms_db(z, sr)) / 20.0)
        spec['extra'] = {'stem': extra, 'material': style, 'soundfont': sfn, 'bank': 0, 'program': program,
                         'notes': len(secs), 'reverb': reverb, 'target_rms_dbfs': round(gain_db, 2), 'articulation': art}
    return spec, out


def _first_sound(y, thresh=1e-4):
    idx = np.flatnonzero(np.abs(y) > thresh)
    return int(idx[0]) if len(idx) else len(y)


def _active_rms_db(y, sr=SR):
    """RMS in dBFS of the 100-ms frames above -60 dBFS."""
    fr = sr // 10
    k = len(y) // fr
    if k == 0:
        return -120.0
    e = np.mean(y[:k * fr].reshape(k, fr) ** 2, axis=1)
    act = e[e > 10 ** (-60 / 10)]
    if len(act) == 0:
        return -120.0
    return float(10 * np.log10(np.mean(act)))


def good_segment(seg):
    rms = np.sqrt(np.mean(seg ** 2)) + 1e-12
    if 20 * np.log10(rms) < SILENCE_DBFS:
        return False
    fr = 2205
    e = np.mean(seg[:len(seg) // fr * fr].reshape(-1, fr) ** 2, axis=1)
    return np.mean(e > 10 ** (-60 / 10)) >= MIN_ACTIVE


def write_segments(y, dirpath, pid):
    import soundfile as sf
    os.makedirs(dirpath, exist_ok=True)
    start = _first_sound(y)
    k = 0
    for s in range(start, len(y) - SEG + 1, SEG):
        seg = y[s:s + SEG]
        if good_segment(seg):
            sf.write(os.path.join(dirpath, f'{pid}_{k:02d}.wav'), seg.astype(np.float32), SR, subtype='FLOAT')
            k += 1
    return k


def parse_args(argv):
    """The command line (see the module doc)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache', 'data'))
    ap.add_argument('--manifest', default=None, help='where to write the data manifest (default: none with --quick, '
                    'else models/data-manifest.json)')
    ap.add_argument('--no-install', action='store_true', help='only check the Debian packages')
    ap.add_argument('--quick', action='store_true', help='a few pieces only (smoke test)')
    ap.add_argument('--extra-train', action='store_true',
                    help='also render the 300 extra training pieces with the wider timbre palette (EXTRA_TRAIN; '
                         'not used by the shipped priors, see models/EXPERIMENTS.md)')
    ap.add_argument('--extra-stem', choices=sorted(EXTRA_STEMS), default=None,
                    help='also render a fifth stem: train/<it>/, valid/<it>/ and 5-stem validation '
                         'mixtures in valid-5stem/ (the four-stem data are unchanged)')
    return ap.parse_args(argv)


def data_manifest(versions, counts, extra, extra_stem):
    """The data manifest's fixed part: rules, seeds, packages, soundfonts (with their sha256),
    programs and counts; `splits` is filled piece by piece."""
    manifest = {'format': 'stemflow-data-manifest', 'format_version': 1,
                'command': 'python -m stemflow_training.render --out models/training/.cache/data',
                'sample_rate': SR, 'segment_seconds': 5.0,
                'silence_rule': f'5-s segments from each stem\'s first sound; kept if RMS >= {SILENCE_DBFS} dBFS and '
                                f'>= {int(MIN_ACTIVE * 100)}% of 100-ms frames above -60 dBFS',
                'level_rule': 'each stem scaled so the RMS of its active 100-ms frames equals target_rms_dbfs; '
                              'validation mixtures are the plain sum of their stems',
                'split': 'by piece: corpus paths shuffled with seed %d, the first n of each family are validation; '
                         'generated pieces: train seeds %d+i, validation seeds %d+i' % (SPLIT_SEED, GEN_SEED_BASE['train'], GEN_SEED_BASE['valid']),
                'packages': versions,
                'soundfonts': {n: {'path': p, 'package': pkg, 'sha256': sha256(p),
                                   'use': ('held out: validation-heldout-sf only' if n == HELDOUT_SOUNDFONT else f'train and validation (weight {w})')}
                               for n, (p, pkg, w) in SOUNDFONTS.items()},
                'programs': {**{k: v for k, v in PROGRAMS.items()}, 'drums': 'channel 10, bank 128, kits ' + str(DRUM_KITS) + ' where present'},
                'counts': {f: {'train': c[0], 'valid': c[1]} for f, c in counts.items()},
                'splits': {}}
    if extra:
        manifest['extra_train'] = {
            'counts': extra,
            'rule': 'extra training pieces ("palette": "wide"): the next paths of each family\'s shuffle (generated: '
                    'the next train seeds), piece seeds from a stream seeded [%d, 1]; soundfonts drawn from '
                    'wide_soundfonts, drums with share %g from drum_kits (a bank-0 kit)' % (SPLIT_SEED, DRUM_KIT_SHARE),
            'wide_soundfonts': {n: {'path': ALL_SOUNDFONTS[n][0], 'package': ALL_SOUNDFONTS[n][1],
                                    'sha256': sha256(ALL_SOUNDFONTS[n][0]), 'weight': w}
                                for n, w in WIDE_WEIGHTS.items()},
            'drum_kits': {n: {'path': p, 'package': pkg, 'sha256': sha256(p)}
                          for n, (p, pkg) in DRUM_KIT_SOUNDFONTS.items()}}
    if extra_stem:
        manifest['extra_stem'] = {'stem': extra_stem, **EXTRA_STEMS[extra_stem],
                                  'outputs': f'train/{extra_stem}, valid/{extra_stem}, valid-5stem/, '
                                             'valid-heldout-sf-5stem/'}
    try:
        import music21
        manifest['music21'] = music21.__version__
    except Exception:  # noqa: BLE001
        pass
    return manifest


def write_mixture(base, pid, stems):
    """BASE/mixtures/<pid>.wav (the plain sum of `stems`) and BASE/references/<pid>/<stem>.wav,
    all scaled together if the sum would peak above 0.98; returns the scale."""
    import soundfile as sf
    mix = sum(stems.values())
    peak = float(np.max(np.abs(mix)))
    scale = 0.98 / peak if peak > 0.98 else 1.0
    refdir = os.path.join(base, 'references', pid)
    os.makedirs(refdir, exist_ok=True)
    os.makedirs(os.path.join(base, 'mixtures'), exist_ok=True)
    for stem, y in stems.items():
        sf.write(os.path.join(refdir, f'{stem}.wav'), (y * scale).astype(np.float32), SR, subtype='FLOAT')
    sf.write(os.path.join(base, 'mixtures', f'{pid}.wav'), (mix * scale).astype(np.float32), SR, subtype='FLOAT')
    return scale


def write_extra_stem(out, split_name, pid, spec, stems, extra_stem, y5, stats):
    """The fifth stem of one piece: training segments, or (validation splits) its segments and the
    5-stem mixture and references in <split>-5stem/."""
    if split_name == 'train':
        k = write_segments(y5, os.path.join(out, 'train', extra_stem), pid)
        stats[extra_stem]['train_segments'] += k
    else:
        scale5 = write_mixture(os.path.join(out, split_name + '-5stem'), pid, {**stems, extra_stem: y5})
        k = write_segments(y5, os.path.join(out, split_name, extra_stem), pid)
        if split_name == 'valid':
            stats[extra_stem]['valid_segments'] += k
        spec['extra']['mix_scale_5stem'] = round(scale5, 4)
    spec['extra']['segments'] = k


def write_piece(out, split_name, pid, spec, stems, stats):
    """The four stems of one piece: training segments, or (validation splits) the mixture, the
    references and the validation segments; the counts go into `spec` and `stats`."""
    if split_name == 'train':
        for stem, y in stems.items():
            k = write_segments(y, os.path.join(out, 'train', stem), pid)
            spec['stems'][stem]['segments'] = k
            stats[stem]['train_segments'] += k
        return
    base = os.path.join(out, split_name)
    scale = write_mixture(base, pid, stems)
    for stem, y in stems.items():
        k = write_segments(y * scale, os.path.join(base, stem), pid)
        spec['stems'][stem]['segments'] = k
        if split_name == 'valid':
            stats[stem]['valid_segments'] += k
    spec['seconds'] = round(len(next(iter(stems.values()))) / SR, 2)
    spec['mix_scale'] = round(scale, 4)


def render_split(out, split_name, pieces, synths, cache_dir, heldout, split, extra_stem, stats):
    """Render and write every piece of one output split; returns the pieces' manifest specs."""
    t0 = time.time()
    specs = []
    for piece in pieces:
        spec, stems = render_piece(piece, synths, cache_dir, heldout, split, extra_stem)
        if extra_stem:
            y5 = stems.pop(extra_stem)
            write_extra_stem(out, split_name, piece['id'], spec, stems, extra_stem, y5, stats)
        write_piece(out, split_name, piece['id'], spec, stems, stats)
        specs.append(spec)
        print(f"{split_name:16s} {piece['id']:28s} " + ' '.join(
            f"{s}:{spec['stems'][s]['soundfont']}/{spec['stems'][s]['program']}" for s in STEMS)
            + (f" {extra_stem}:{spec['extra']['soundfont']}/{spec['extra']['program']}" if extra_stem else ''),
            flush=True)
    print(f"render: {split_name}: {len(specs)} pieces in {time.time() - t0:.1f} s", flush=True)
    return specs


def finish(manifest, stats, out, manifest_path, elapsed):
    """Add the statistics to the manifest, write it (OUT/manifest.json and the committed copy) and
    print the minutes per stem."""
    manifest['statistics'] = {s: {'train_minutes': round(v['train_segments'] * 5 / 60, 1),
                                  'valid_minutes': round(v['valid_segments'] * 5 / 60, 1), **v} for s, v in stats.items()}
    manifest['render_seconds'] = round(elapsed, 1)
    with open(os.path.join(out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    if manifest_path:
        with open(manifest_path, 'w') as f:
            json.dump(manifest, f, indent=1)
            f.write('\n')
    for s, v in stats.items():
        print(f"render: {s:6s} train {v['train_segments'] * 5 / 60:5.1f} min ({v['train_segments']} segments), "
              f"valid {v['valid_segments'] * 5 / 60:4.1f} min")
    print(f"render: done in {elapsed:.0f} s -> {out}" + (f"; manifest {manifest_path}" if manifest_path else ''))


def main(argv=None):
    """Render the whole data cache (train, valid, valid-heldout-sf) and write the manifest."""
    args = parse_args(argv)
    # libsndfile is loaded before libfluidsynth, as it always was: in the other order some parts
    # render with different low bits (~1e-5), and the data would no longer be sample-identical
    import soundfile  # noqa: F401
    t_start = time.time()
    versions = check_packages(install=not args.no_install, wide=args.extra_train)
    repo_models = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    manifest_path = args.manifest or (None if args.quick else os.path.join(repo_models, 'data-manifest.json'))
    counts = QUICK_COUNTS if args.quick else COUNTS
    extra = EXTRA_TRAIN if (args.extra_train and not args.quick) else {}
    out = args.out
    if os.path.exists(out):
        shutil.rmtree(out)
    cache_dir = os.path.join(os.path.dirname(os.path.abspath(out)), 'music21-notes')
    pieces = plan(counts, extra)
    loaded = {}

    def synths(name):
        if name not in loaded:
            loaded[name] = Synth(ALL_SOUNDFONTS[name][0], SR)
        return loaded[name]

    all_stems = STEMS + ((args.extra_stem,) if args.extra_stem else ())
    stats = {s: {'train_segments': 0, 'valid_segments': 0} for s in all_stems}
    manifest = data_manifest(versions, counts, extra, args.extra_stem)
    for split_name, split, heldout in (('train', 'train', False), ('valid', 'valid', False), ('valid-heldout-sf', 'valid', True)):
        manifest['splits'][split_name] = render_split(out, split_name, pieces[split], synths, cache_dir, heldout,
                                                      split, args.extra_stem, stats)
    finish(manifest, stats, out, manifest_path, time.time() - t_start)


if __name__ == '__main__':
    main()
