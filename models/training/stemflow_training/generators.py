"""Generated musical parts for the instrument data: harmony, bass lines,
drum grooves, comping voicings, arpeggios, melodies.

Everything is a function of a numpy Generator, so a (generator, seed) pair in the
data manifest reproduces a part exactly.  Times are in beats; `to_seconds` applies a
tempo.  A note is (start_beat, dur_beats, midi_pitch, velocity).
"""
import numpy as np

# Instrument pitch ranges (MIDI note numbers, sounding pitch in General-MIDI soundfonts).
RANGES = {
    'bass': (28, 55),     # E1 .. G3
    'guitar': (40, 79),   # E2 .. G5
    'piano': (33, 96),    # A1 .. C7
}

MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]

# Progressions as scale degrees (0-based), one chord per bar (or per half bar).
PROGRESSIONS = [
    [0, 4, 5, 3], [0, 5, 3, 4], [0, 3, 4, 4], [5, 3, 0, 4], [0, 3, 0, 4],
    [1, 4, 0, 0], [0, 0, 3, 4], [0, 5, 1, 4], [0, 3, 5, 4], [0, 4, 3, 3],
    [0, 6, 5, 4], [0, 2, 3, 4], [0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4],  # 12-bar blues
]

# GM percussion keys
KICK, KICK2, STICK, SNARE, CLAP, SNARE2 = 36, 35, 37, 38, 39, 40
HH_CLOSED, HH_PEDAL, HH_OPEN = 42, 44, 46
CRASH, CRASH2, RIDE, RIDE_BELL, SPLASH, CHINA = 49, 57, 51, 53, 55, 52
TOMS = [41, 43, 45, 47, 48, 50]  # low floor .. high
TAMB, COWBELL, SHAKER = 54, 56, 70


def chord_pcs(tonic, mode, degree, seventh=False):
    scale = MAJOR if mode == 'major' else MINOR
    idx = [degree, degree + 2, degree + 4] + ([degree + 6] if seventh else [])
    return [(tonic + scale[i % 7] + 12 * (i // 7)) % 12 for i in idx]


def fold(pitch, lo, hi):
    while pitch < lo:
        pitch += 12
    while pitch > hi:
        pitch -= 12
    return pitch


def fit_range(notes, lo, hi):
    """Transpose a part by octaves so its median sits in the middle of [lo, hi], then
    fold any note still outside into range."""
    if not notes:
        return notes
    med = float(np.median([n[2] for n in notes]))
    mid = (lo + hi) / 2.0
    shift = 12 * int(round((mid - med) / 12.0))
    return [(s, d, fold(p + shift, lo, hi), v) for s, d, p, v in notes]


def harmony(rng, bars, beats_per_bar, mode=None):
    """A key and one chord (pitch classes, root pc) per bar."""
    tonic = int(rng.integers(12))
    mode = mode or ('major' if rng.random() < 0.65 else 'minor')
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    sev = rng.random() < 0.3
    chords = []
    for b in range(bars):
        deg = prog[b % len(prog)]
        pcs = chord_pcs(tonic, mode, deg, seventh=sev and rng.random() < 0.6)
        chords.append((b * beats_per_bar, beats_per_bar, pcs))
    return tonic, mode, chords


def velocity(rng, base, accent=0.0, spread=8):
    return int(np.clip(base + accent + rng.normal(0, spread), 12, 127))


# ---------------------------------------------------------------- bass
BASS_STYLES = ['root', 'root8', 'rootfifth', 'octaves', 'walking', 'funk', 'arp', 'sustain']


def bass_line(rng, chords, beats_per_bar, style=None, base_vel=None):
    style = style or BASS_STYLES[int(rng.integers(len(BASS_STYLES)))]
    lo, hi = RANGES['bass']
    base_vel = base_vel or int(rng.integers(60, 115))
    stac = float(rng.uniform(0.5, 0.98))
    notes = []
    for start, length, pcs in chords:
        root = fold(36 + pcs[0], 28, 43)
        fifth = root + 7
        tones = [fold(36 + pc, 30, 50) for pc in pcs]
        if style == 'sustain':
            notes.append((start, length * 0.98, root, velocity(rng, base_vel)))
        elif style in ('root', 'root8'):
            step = 1.0 if style == 'root' else 0.5
            for k in np.arange(0, length, step):
                notes.append((start + k, step * stac, root, velocity(rng, base_vel, 8 if k % 2 == 0 else 0)))
        elif style == 'rootfifth':
            for k in range(int(length)):
                p = root if k % 2 == 0 else (fifth if fifth <= hi else fifth - 12)
                notes.append((start + k, stac, p, velocity(rng, base_vel)))
        elif style == 'octaves':
            for k in np.arange(0, length, 0.5):
                p = root if int(k * 2) % 2 == 0 else root + 12
                notes.append((start + k, 0.45 * stac, p, velocity(rng, base_vel)))
        elif style == 'walking':
            for k in range(int(length)):
                if k == 0:
                    p = root
                else:
                    p = tones[int(rng.integers(len(tones)))] + int(rng.choice([-12, 0, 0]))
                    p = fold(p + int(rng.choice([0, 0, 2, -1, 1])), lo, hi)
                notes.append((start + k, 0.9, p, velocity(rng, base_vel, 6 if k == 0 else 0)))
        elif style == 'funk':
            grid = np.arange(0, length, 0.25)
            for k in grid:
                if k == 0 or rng.random() < 0.35:
                    p = root + int(rng.choice([0, 0, 0, 12, 7, 10]))
                    p = fold(p, lo, hi)
                    notes.append((start + k, 0.22 * stac, p, velocity(rng, base_vel, 10 if k == 0 else -5 * rng.random())))
        elif style == 'arp':
            seq = [root, tones[1 % len(tones)], tones[2 % len(tones)], root + 12]
            for i, k in enumerate(np.arange(0, length, 0.5)):
                notes.append((start + k, 0.45, fold(seq[i % 4], lo, hi), velocity(rng, base_vel)))
    return notes, style


# ---------------------------------------------------------------- drums
DRUM_STYLES = ['rock', 'pop16', 'funk', 'halftime', 'shuffle', 'disco', 'jazz', 'bossa',
               'metal', 'reggae', 'breakbeat', 'waltz', 'ballad']


def _hit(notes, rng, t, key, vel, humanize=0.01):
    t = max(0.0, t + rng.normal(0, humanize))
    notes.append((t, 0.25, key, int(np.clip(vel + rng.normal(0, 7), 8, 127))))


def drum_groove(rng, bars, beats_per_bar, style=None, base_vel=None, fills=True):
    """A drum part with kick / snare / hats / ride / toms / cymbals."""
    if beats_per_bar == 3:
        style = style or ('waltz' if rng.random() < 0.6 else 'jazz')
    style = style or DRUM_STYLES[int(rng.integers(len(DRUM_STYLES) - 1))]
    v = base_vel or int(rng.integers(65, 118))
    hat = HH_CLOSED if rng.random() < 0.8 else RIDE
    kick = KICK if rng.random() < 0.7 else KICK2
    snare = SNARE if rng.random() < 0.75 else (SNARE2 if rng.random() < 0.6 else CLAP)
    notes = []
    fill_every = int(rng.choice([4, 8]))
    for bar in range(bars):
        t0 = bar * beats_per_bar
        last = fills and (bar % fill_every == fill_every - 1)
        if bar % fill_every == 0 and rng.random() < 0.7:
            _hit(notes, rng, t0, int(rng.choice([CRASH, CRASH2, SPLASH, CHINA], p=[.5, .3, .1, .1])), v + 10)
        span = beats_per_bar - (1 if last else 0)
        if style in ('rock', 'pop16', 'halftime', 'metal', 'ballad', 'breakbeat', 'funk'):
            step = 0.25 if style in ('pop16', 'funk') else 0.5
            if style == 'ballad':
                step = 1.0
            for k in np.arange(0, span, step):
                acc = 10 if k == int(k) else -8
                _hit(notes, rng, t0 + k, hat, v - 15 + acc)
            if style == 'metal':
                for k in np.arange(0, span, 0.25):
                    _hit(notes, rng, t0 + k, kick, v - 5)
            else:
                pat = {'rock': [0, 2, 2.5], 'pop16': [0, 1.75, 2.5], 'halftime': [0, 1.5],
                       'ballad': [0, 2.5], 'breakbeat': [0, 0.75, 2.5, 3.25],
                       'funk': [0, 0.75, 1.5, 2.75]}[style]
                for k in pat:
                    if k < span:
                        _hit(notes, rng, t0 + k, kick, v)
            sn = [2.0] if style == 'halftime' else [1.0, 3.0]
            for k in sn:
                if k < span:
                    _hit(notes, rng, t0 + k, snare, v + 5)
            if style == 'funk':
                for k in np.arange(0, span, 0.25):
                    if rng.random() < 0.15:
                        _hit(notes, rng, t0 + k, SNARE, v - 45)  # ghost notes
            if style in ('rock', 'pop16') and rng.random() < 0.3:
                _hit(notes, rng, t0 + span - 0.5, HH_OPEN, v - 10)
        elif style == 'shuffle':
            for b in range(int(span)):
                _hit(notes, rng, t0 + b, hat, v - 10)
                _hit(notes, rng, t0 + b + 2 / 3, hat, v - 25)
                if b % 2 == 0:
                    _hit(notes, rng, t0 + b, kick, v)
                else:
                    _hit(notes, rng, t0 + b, snare, v)
        elif style == 'disco':
            for b in range(int(span)):
                _hit(notes, rng, t0 + b, kick, v)
                _hit(notes, rng, t0 + b + 0.5, HH_OPEN, v - 15)
                _hit(notes, rng, t0 + b, HH_CLOSED, v - 25)
                if b % 2 == 1:
                    _hit(notes, rng, t0 + b, snare if rng.random() < 0.7 else CLAP, v)
        elif style == 'jazz':
            for b in range(int(span)):
                _hit(notes, rng, t0 + b, RIDE, v - 10 + (6 if b % 2 else 0), 0.006)
                if b % 2 == 1:
                    _hit(notes, rng, t0 + b + 2 / 3, RIDE, v - 25, 0.006)
                    _hit(notes, rng, t0 + b, HH_PEDAL, v - 20)
                if rng.random() < 0.25:
                    _hit(notes, rng, t0 + b + float(rng.choice([0, 2 / 3])), SNARE, v - 35)
                if rng.random() < 0.12:
                    _hit(notes, rng, t0 + b, kick, v - 30)
        elif style == 'bossa':
            for k in np.arange(0, span, 0.5):
                _hit(notes, rng, t0 + k, HH_CLOSED if rng.random() < .7 else SHAKER, v - 25)
            for k in [0, 1.5, 2, 3.5]:
                if k < span:
                    _hit(notes, rng, t0 + k, kick, v - 10)
            for k in ([0, 1.5, 3] if bar % 2 == 0 else [1, 2.5]):
                if k < span:
                    _hit(notes, rng, t0 + k, STICK, v - 5)
        elif style == 'reggae':
            for k in np.arange(0, span, 0.5):
                _hit(notes, rng, t0 + k, hat, v - 20)
            for k in [2.0]:
                if k < span:
                    _hit(notes, rng, t0 + k, kick, v)
                    _hit(notes, rng, t0 + k, STICK if rng.random() < 0.6 else snare, v)
        elif style == 'waltz':
            for b in range(int(span)):
                _hit(notes, rng, t0 + b, kick if b == 0 else hat, v - (0 if b == 0 else 15))
                if b > 0:
                    _hit(notes, rng, t0 + b, snare if rng.random() < 0.5 else STICK, v - 20)
        if rng.random() < 0.15:
            _hit(notes, rng, t0 + float(rng.integers(beats_per_bar)), int(rng.choice([TAMB, COWBELL, SHAKER])), v - 20)
        if last:  # one-beat fill on toms / snare
            t = t0 + beats_per_bar - 1
            n = int(rng.choice([3, 4, 6]))
            seq = sorted(rng.choice(TOMS + [SNARE], size=n), reverse=True)
            for i, key in enumerate(seq):
                _hit(notes, rng, t + i / n, int(key), v + int(rng.integers(-5, 10)), 0.004)
    return sorted(notes), style


# ---------------------------------------------------------------- comping / arpeggios
COMP_STYLES = ['block', 'strum', 'arp_up', 'arp_updown', 'alberti', 'offbeat', 'power', 'pad', 'broken']


def voicing(rng, pcs, lo, hi, n_voices):
    """A close/open voicing of the chord's pitch classes inside [lo, hi]."""
    base = int(rng.integers(lo, max(lo + 1, hi - 14)))
    notes, p = [], base
    order = list(pcs)
    for i in range(n_voices):
        pc = order[i % len(order)]
        while p % 12 != pc:
            p += 1
        notes.append(p)
        p += 1
    return [fold(x, lo, hi) for x in notes]


def comp(rng, chords, beats_per_bar, instrument, style=None, base_vel=None):
    lo, hi = RANGES[instrument]
    lo = max(lo, 40 if instrument == 'piano' else lo)
    hi = min(hi, 84)
    style = style or COMP_STYLES[int(rng.integers(len(COMP_STYLES)))]
    base_vel = base_vel or int(rng.integers(45, 110))
    stac = float(rng.uniform(0.4, 1.0))
    notes = []
    nv = int(rng.integers(3, 6 if instrument == 'guitar' else 5))
    for start, length, pcs in chords:
        vo = voicing(rng, pcs, lo, hi, nv)
        if style == 'power':
            r = fold(40 + pcs[0], 40, 57)
            vo = [r, r + 7, r + 12]
        if style in ('block', 'power'):
            step = float(rng.choice([1.0, 2.0, 0.5])) if style == 'block' else 0.5
            for k in np.arange(0, length, step):
                for p in vo:
                    notes.append((start + k, step * stac, p, velocity(rng, base_vel, 6 if k == 0 else 0, 5)))
        elif style == 'strum':
            pattern = [0, 1, 1.5, 2.5, 3] if length >= 4 else [0, 1, 2]
            for i, k in enumerate(pattern):
                if k >= length:
                    continue
                up = i % 2 == 1
                seq = vo[::-1] if up else vo
                spread = float(rng.uniform(0.015, 0.05))
                for j, p in enumerate(seq):
                    notes.append((start + k + j * spread, 0.9 * stac, p, velocity(rng, base_vel, -8 if up else 4, 5)))
        elif style in ('arp_up', 'arp_updown', 'broken'):
            seq = vo
            if style == 'arp_updown':
                seq = vo + vo[-2:0:-1]
            step = float(rng.choice([0.5, 0.25])) if style != 'broken' else 0.5
            for i, k in enumerate(np.arange(0, length, step)):
                p = seq[i % len(seq)] if style != 'broken' else vo[int(rng.integers(len(vo)))]
                notes.append((start + k, step * (1.0 + 2 * stac), p, velocity(rng, base_vel, 0, 6)))
        elif style == 'alberti':
            v3 = (vo + vo)[:3]
            order = [0, 2, 1, 2]
            for i, k in enumerate(np.arange(0, length, 0.5)):
                notes.append((start + k, 0.48, v3[order[i % 4]], velocity(rng, base_vel, 0, 5)))
        elif style == 'offbeat':
            for k in np.arange(0.5, length, 1.0):
                for p in vo:
                    notes.append((start + k, 0.3 * stac, p, velocity(rng, base_vel, 0, 5)))
        elif style == 'pad':
            for p in vo:
                notes.append((start, length * 0.97, p, velocity(rng, base_vel, -5, 5)))
    return notes, style


def melody(rng, chords, beats_per_bar, instrument, tonic, mode, base_vel=None):
    """A stepwise melody over the chords: chord tones on strong beats."""
    lo, hi = RANGES[instrument]
    lo, hi = max(lo, 55), min(hi, 88)
    scale = MAJOR if mode == 'major' else MINOR
    pcs_scale = [(tonic + s) % 12 for s in scale]
    base_vel = base_vel or int(rng.integers(55, 115))
    p = int(rng.integers(lo + 5, hi - 5))
    notes = []
    for start, length, pcs in chords:
        t = 0.0
        while t < length:
            d = float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
            d = min(d, length - t)
            strong = abs(t - round(t)) < 1e-6 and int(round(t)) % 2 == 0
            target = pcs if strong else pcs_scale
            p += int(rng.choice([-3, -2, -1, 1, 2, 3, 0, 4, -4, 7, -7], p=[.1, .17, .15, .15, .17, .1, .06, .03, .03, .02, .02]))
            p = fold(p, lo, hi)
            for dp in (0, 1, -1, 2, -2):
                if (p + dp) % 12 in target:
                    p += dp
                    break
            if rng.random() > 0.08:  # rests
                notes.append((start + t, d * float(rng.uniform(0.6, 1.0)), fold(p, lo, hi), velocity(rng, base_vel, 0, 7)))
            t += d
    return notes


def to_seconds(notes, bpm, swing=0.0, rng=None, humanize=0.0):
    """Beats -> seconds; swing delays off-beat eighths by swing*(1/6 beat)."""
    spb = 60.0 / bpm
    out = []
    for s, d, p, v in notes:
        frac = s - np.floor(s)
        if swing and abs(frac - 0.5) < 1e-6:
            s = s + swing / 6.0
        t = s * spb + (rng.normal(0, humanize) if (rng is not None and humanize) else 0.0)
        out.append((max(0.0, t), max(0.03, d * spb), int(p), int(v)))
    return out
