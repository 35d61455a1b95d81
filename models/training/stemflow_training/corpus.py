"""Real composed music from the music21 corpus, as note lists per voice.

A piece is named by its path relative to music21's corpus folder (e.g.
`bach/bwv66.6.mxl`); `voices(path)` returns its parts ordered from highest to lowest
mean pitch, each a list of (start_beat, dur_beats, midi_pitch, velocity), plus the
time signature's beats per bar.  Parsing is slow (seconds per score), so results are
cached as JSON under the render cache.
"""
import json
import os

import numpy as np

FAMILIES = ('chorale', 'quartet', 'palestrina', 'folk')


def corpus_root():
    import music21
    return os.path.join(os.path.dirname(music21.__file__), 'corpus')


def list_family(family):
    """Sorted corpus paths (relative) of one family."""
    from music21 import corpus
    root = corpus_root()
    if family == 'chorale':
        paths = [p for p in corpus.getComposer('bach') if os.path.basename(str(p)).startswith('bwv')]
    elif family == 'quartet':
        paths = corpus.getComposer('haydn') + corpus.getComposer('mozart')
    elif family == 'palestrina':
        paths = corpus.getComposer('palestrina')
    elif family == 'folk':
        paths = corpus.getComposer('ryansMammoth')
    else:
        raise ValueError(family)
    rel = sorted(os.path.relpath(str(p), root) for p in paths)
    return rel


def _parse(relpath):
    from music21 import converter, meter
    score = converter.parse(os.path.join(corpus_root(), relpath))
    if hasattr(score, 'scores') and not hasattr(score, 'parts'):
        score = score.scores[0]
    if type(score).__name__ == 'Opus':
        score = score.scores[0]
    parts = list(score.parts) if hasattr(score, 'parts') and len(score.parts) else [score]
    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    beats_per_bar = float(ts.barDuration.quarterLength) if ts is not None else 4.0
    out = []
    for part in parts:
        notes = []
        for el in part.stripTies().flatten().notes:
            start = float(el.offset)
            dur = float(el.duration.quarterLength)
            if dur <= 0:
                continue  # grace notes
            for p in el.pitches:
                notes.append((start, dur, int(p.midi), 80))
        if notes:
            out.append(sorted(notes))
    out.sort(key=lambda ns: -float(np.mean([n[2] for n in ns])))
    key_pc, mode = 0, 'major'
    try:
        from music21 import key as m21key
        ks = score.recurse().getElementsByClass(m21key.KeySignature).first()
        if ks is not None:
            k = ks.asKey() if not isinstance(ks, m21key.Key) else ks
            key_pc, mode = int(k.tonic.pitchClass), (k.mode if k.mode in ('major', 'minor') else 'major')
    except Exception:  # noqa: BLE001 - a key signature is a nicety
        pass
    return {'path': relpath, 'beats_per_bar': beats_per_bar, 'voices': out, 'key': key_pc, 'mode': mode}


def voices(relpath, cache_dir):
    os.makedirs(cache_dir, exist_ok=True)
    cpath = os.path.join(cache_dir, relpath.replace('/', '__') + '.json')
    if os.path.exists(cpath):
        with open(cpath) as f:
            d = json.load(f)
        d['voices'] = [[tuple(n) for n in v] for v in d['voices']]
        return d
    d = _parse(relpath)
    with open(cpath + '.tmp', 'w') as f:
        json.dump(d, f)
    os.replace(cpath + '.tmp', cpath)
    return d


def excerpt(voices_, start, length):
    """Notes of each voice inside [start, start+length) beats, re-based to 0."""
    out = []
    for v in voices_:
        ns = [(s - start, min(d, start + length - s), p, vel) for s, d, p, vel in v if start <= s < start + length]
        out.append(ns)
    return out


def fit_chords(melody_notes, beats_per_bar, tonic, mode, length):
    """One diatonic triad per bar that best covers the melody's pitch classes."""
    from .generators import chord_pcs
    chords = []
    bars = int(np.ceil(length / beats_per_bar))
    for b in range(bars):
        t0, t1 = b * beats_per_bar, (b + 1) * beats_per_bar
        w = np.zeros(12)
        for s, d, p, _ in melody_notes:
            ov = min(s + d, t1) - max(s, t0)
            if ov > 0:
                w[p % 12] += ov
        best, best_score = 0, -1.0
        for deg in (0, 3, 4, 5, 1):
            pcs = chord_pcs(tonic, mode, deg)
            score = sum(w[pc] for pc in pcs) + (0.01 if deg == 0 else 0)
            if score > best_score:
                best, best_score = deg, score
        chords.append((t0, beats_per_bar, chord_pcs(tonic, mode, best)))
    return chords
