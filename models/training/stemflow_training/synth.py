"""Seeded renderers of four clearly different synthetic sources (mono, float64).

Every generator has the signature (seed, seconds, sample_rate) -> np.ndarray.  The
event parameters (times, pitches, levels) come from one RNG stream that does not
depend on the sample rate, so the same seed renders the same "part" at 22050 Hz
and at 44100 Hz (noise samples differ).  Each clip is scaled to a random source
RMS between -32 and -12 dBFS (measured over the whole clip, silences included) and
then limited to peak <= 1.

  sine    sustained sine-tone notes, 55-880 Hz, attack/release envelopes,
          occasional 2-note overlap
  noise   percussive noise bursts (white / band-passed / low-passed / high-passed
          noise with exponential decays, random brightness, random rhythm)
  saw     band-limited sawtooth notes and 2-3-note chords, 110-880 Hz
  square  band-limited square-wave notes, 80-600 Hz

Seed ranges used by the project (documented in models/README.md):
  training   seed = KIND_OFFSET[kind] + i            (i = 0, 1, ...)
  validation seed = 1_000_000 + KIND_OFFSET[kind] + i
  fixtures / demo: 2_000_000 + ... (never used for training)
"""
import numpy as np
from scipy import signal

KINDS = ('sine', 'noise', 'saw', 'square')
KIND_OFFSET = {'sine': 0, 'noise': 100_000, 'saw': 200_000, 'square': 300_000}
VALID_BASE = 1_000_000
FIXTURE_BASE = 2_000_000


def _env(n, sr, attack, release):
    e = np.ones(n)
    na = max(1, min(n, int(attack * sr)))
    nr = max(1, min(n - na, int(release * sr))) if n > na else 0
    e[:na] = np.linspace(0.0, 1.0, na, endpoint=False) ** 1.5
    if nr > 0:
        e[n - nr:] *= np.linspace(1.0, 0.0, nr) ** 2
    return e


def _partials(f0, n, sr, kind, phase):
    """Band-limited sawtooth / square by additive synthesis (harmonics below 0.45 sr)."""
    t = np.arange(n) / sr
    y = np.zeros(n)
    kmax = int(0.45 * sr / f0)
    step = 2 if kind == 'square' else 1
    for k in range(1, kmax + 1, step):
        y += np.sin(2 * np.pi * k * f0 * t + k * phase) / k
    return y * (2 / np.pi if kind == 'saw' else 4 / np.pi)


def _place(out, start, y):
    n = min(len(y), len(out) - start)
    if n > 0:
        out[start:start + n] += y[:n]


def _events(rng, seconds, dur_lo, dur_hi, gap_hi, rest_p=0.15):
    """Yield (start, duration) pairs with silences between events."""
    t = rng.uniform(0.0, 0.5)
    while t < seconds:
        d = rng.uniform(dur_lo, dur_hi)
        yield t, d
        gap = rng.uniform(0.02, gap_hi)
        if rng.random() < rest_p:
            gap += rng.uniform(0.4, 1.5)
        t += d + gap


def _level(y, rng):
    target_db = rng.uniform(-32.0, -12.0)
    rms = np.sqrt(np.mean(y ** 2))
    if rms > 0:
        y = y * (10 ** (target_db / 20) / rms)
    peak = np.max(np.abs(y)) if len(y) else 0.0
    if peak > 1.0:
        y = y / peak * 0.999
    return y


def render_sine(seed, seconds, sample_rate):
    rng = np.random.default_rng([seed, 1])
    n = int(round(seconds * sample_rate))
    out = np.zeros(n)
    for t0, d in _events(rng, seconds, 0.2, 2.0, 0.6):
        voices = 2 if rng.random() < 0.25 else 1
        for v in range(voices):
            f = float(np.exp(rng.uniform(np.log(55.0), np.log(880.0))))
            off = 0.0 if v == 0 else rng.uniform(0.0, 0.5 * d)
            dd = d if v == 0 else rng.uniform(0.3, 1.0) * d
            m = int(dd * sample_rate)
            if m < 8:
                continue
            tt = np.arange(m) / sample_rate
            amp = rng.uniform(0.3, 1.0)
            y = amp * np.sin(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi))
            y *= _env(m, sample_rate, rng.uniform(0.005, 0.05), rng.uniform(0.02, 0.3))
            _place(out, int((t0 + off) * sample_rate), y)
    return _level(out, rng)


def render_noise(seed, seconds, sample_rate):
    rng = np.random.default_rng([seed, 2])
    noise_rng = np.random.default_rng([seed, 2, sample_rate])
    n = int(round(seconds * sample_rate))
    out = np.zeros(n)
    tempo = rng.uniform(80, 180)
    beat = 60.0 / tempo / rng.choice([1, 2, 4])
    t = rng.uniform(0.0, 0.3)
    nyq = sample_rate / 2
    while t < seconds:
        if rng.random() < 0.75:
            decay = float(np.exp(rng.uniform(np.log(0.015), np.log(0.3))))
            m = int(min(6 * decay, 1.5) * sample_rate)
            y = noise_rng.standard_normal(m)
            mode = rng.choice(['white', 'band', 'low', 'high'])
            lo = float(np.exp(rng.uniform(np.log(80.0), np.log(6000.0))))
            if mode == 'band':
                hi = min(lo * rng.uniform(1.5, 4.0), 0.95 * 11025)
                sos = signal.butter(2, [lo / nyq, min(hi / nyq, 0.99)], btype='band', output='sos')
                y = signal.sosfilt(sos, y)
            elif mode == 'low':
                sos = signal.butter(2, min(lo / nyq, 0.99), btype='low', output='sos')
                y = signal.sosfilt(sos, y)
            elif mode == 'high':
                sos = signal.butter(2, min(lo / nyq, 0.99), btype='high', output='sos')
                y = signal.sosfilt(sos, y)
            tt = np.arange(m) / sample_rate
            y *= np.exp(-tt / decay) * rng.uniform(0.2, 1.0)
            y[: int(0.001 * sample_rate) + 1] *= np.linspace(0, 1, int(0.001 * sample_rate) + 1)
            _place(out, int(t * sample_rate), y)
        t += beat * (rng.choice([1, 1, 1, 2, 3]) if rng.random() < 0.9 else rng.uniform(3, 8))
    return _level(out, rng)


def _tonal(seed, seconds, sample_rate, kind, fmin, fmax, chord_p, stream):
    rng = np.random.default_rng([seed, stream])
    n = int(round(seconds * sample_rate))
    out = np.zeros(n)
    for t0, d in _events(rng, seconds, 0.15, 1.5, 0.5):
        f0 = float(np.exp(rng.uniform(np.log(fmin), np.log(fmax))))
        freqs = [f0]
        if rng.random() < chord_p:
            for iv in rng.choice([3, 4, 5, 7, 8, 9, 12], size=rng.integers(1, 3), replace=False):
                fi = f0 * 2 ** (iv / 12)
                if fi <= fmax * 1.5:
                    freqs.append(fi)
        m = int(d * sample_rate)
        if m < 8:
            continue
        env = _env(m, sample_rate, rng.uniform(0.003, 0.04), rng.uniform(0.02, 0.25))
        amp = rng.uniform(0.3, 1.0)
        y = sum(_partials(f, m, sample_rate, kind, rng.uniform(0, 2 * np.pi)) for f in freqs) / len(freqs)
        _place(out, int(t0 * sample_rate), amp * env * y)
    return _level(out, rng)


def render_saw(seed, seconds, sample_rate):
    return _tonal(seed, seconds, sample_rate, 'saw', 110.0, 880.0, 0.4, 3)


def render_square(seed, seconds, sample_rate):
    return _tonal(seed, seconds, sample_rate, 'square', 80.0, 600.0, 0.1, 4)


RENDER = {'sine': render_sine, 'noise': render_noise, 'saw': render_saw, 'square': render_square}


def render(kind, seed, seconds, sample_rate=22050):
    return RENDER[kind](seed, seconds, sample_rate)
