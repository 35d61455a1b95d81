"""The toy sources of Frank & Ilse's appendix: sine, square, sawtooth and triangle waves.

Each example is one frame of FRAME = 2**14 = 16384 samples at 22.05 kHz (0.74 s) of one
periodic wave with a random fundamental (log-uniform in FREQ_RANGE Hz), phase (uniform over a
period) and amplitude (uniform in AMP_RANGE). A toy mix is the sum of one example of each of the
four types, so its peak stays below 4 * 0.25 = 1. The waves are the plain (not band-limited)
ones, as a toy set draws them; at these fundamentals their aliasing is far below the other
sources.

Deterministic: example i of type k in split s is drawn from numpy's default_rng seeded with
(SEED, s, k, i), so the training set and the held-out set never share a draw, any example can
be made on its own, and a set grows without changing the examples it had. A mix i of a split
takes example i of every type from the mix stream (its own seed stream, `MIX_STREAM`), so the
held-out mixes are made of held-out-style draws no prior has seen.

    python -m stemflow_training.toy_sources --out /tmp/toy --mixes 50
writes mix_XXX.wav and mix_XXX/<type>.wav (float32 WAV, so the sources sum to the mix exactly);
    python -m stemflow_training.toy_sources --out /tmp/toy-audio --training-audio 120
writes 5-s isolated examples to train a spectrogram prior on (write_training_audio).
"""
import argparse
import json
import os

import numpy as np

from .stft import SAMPLE_RATE

KINDS = ('sine', 'square', 'sawtooth', 'triangle')
FRAME = 2 ** 14
FREQ_RANGE = (55.0, 880.0)      # A1 .. A5
AMP_RANGE = (0.05, 0.25)
SEED = 20141
SPLITS = {'train': 0, 'heldout': 1}
MIX_STREAM = 2                   # held-out mixes: a stream of their own


def wave(kind, freq, phase, amp, n=FRAME, rate=SAMPLE_RATE):
    """One wave of `kind`: `phase` in cycles (0..1), `freq` in Hz, peak `amp`."""
    c = (freq * np.arange(n) / rate + phase) % 1.0     # position within the period, 0..1
    if kind == 'sine':
        y = np.sin(2 * np.pi * c)
    elif kind == 'square':
        y = np.where(c < 0.5, 1.0, -1.0)
    elif kind == 'sawtooth':
        y = 2.0 * c - 1.0
    elif kind == 'triangle':
        y = 1.0 - 4.0 * np.abs(c - 0.5)
    else:
        raise ValueError(f"unknown toy source {kind!r}: expected one of {', '.join(KINDS)}")
    return (amp * y).astype(np.float32)


def draw_params(rng):
    """(freq, phase, amp) of one example."""
    lo, hi = np.log(FREQ_RANGE[0]), np.log(FREQ_RANGE[1])
    return float(np.exp(rng.uniform(lo, hi))), float(rng.uniform()), float(rng.uniform(*AMP_RANGE))


def example(kind, split, index, n=FRAME, stream=None):
    """Example `index` of `kind` in `split` ('train' or 'heldout'), with its parameters."""
    s = SPLITS[split] if stream is None else stream
    rng = np.random.default_rng([SEED, s, KINDS.index(kind), index])
    freq, phase, amp = draw_params(rng)
    return wave(kind, freq, phase, amp, n), dict(freq=freq, phase=phase, amp=amp)


def examples(kind, split, count, n=FRAME, start=0):
    """[count, n] float32: examples start .. start+count-1."""
    return np.stack([example(kind, split, i, n)[0] for i in range(start, start + count)])


def mix(index, n=FRAME):
    """Held-out toy mix `index`: (mix [n], sources [4, n] in KINDS order, parameters)."""
    parts = [example(k, 'heldout', index, n, stream=MIX_STREAM) for k in KINDS]
    sources = np.stack([p[0] for p in parts])
    return sources.sum(axis=0), sources, [dict(p[1], kind=k) for p, k in zip(parts, KINDS)]


def write_mixes(out, count, n=FRAME):
    """Writes `count` held-out mixes and their sources as float32 WAVs, and mixes.json."""
    import soundfile as sf
    os.makedirs(out, exist_ok=True)
    listing = []
    for i in range(count):
        m, sources, params = mix(i, n)
        name = f"mix_{i:03d}"
        sf.write(os.path.join(out, name + '.wav'), m, SAMPLE_RATE, subtype='FLOAT')
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for k, s in zip(KINDS, sources):
            sf.write(os.path.join(out, name, k + '.wav'), s, SAMPLE_RATE, subtype='FLOAT')
        listing.append(dict(name=name, sources=params))
    with open(os.path.join(out, 'mixes.json'), 'w') as f:
        json.dump(dict(frame=n, rate=SAMPLE_RATE, seed=SEED, mixes=listing), f, indent=1)


def write_training_audio(out, count, seconds=5.0):
    """Isolated training audio for spectrogram priors (train.py --source dir:TRAIN,VALID):
    out/train/<type>/NNNN.wav, `count` examples of the training split, and out/valid/<type>/,
    count // 10 of the held-out split, each one example drawn for `seconds` (the same draw
    as toy_sources.example, longer)."""
    import soundfile as sf
    n = int(round(seconds * SAMPLE_RATE))
    for split, dirname, k in (('train', 'train', count), ('heldout', 'valid', max(1, count // 10))):
        for kind in KINDS:
            d = os.path.join(out, dirname, kind)
            os.makedirs(d, exist_ok=True)
            for i in range(k):
                sf.write(os.path.join(d, f"{i:04d}.wav"), example(kind, split, i, n)[0], SAMPLE_RATE, subtype='FLOAT')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--mixes', type=int, default=50)
    ap.add_argument('--training-audio', type=int, metavar='N',
                    help='instead: N 5-s training examples (and N/10 held-out) per type, for train.py')
    a = ap.parse_args(argv)
    if a.training_audio:
        write_training_audio(a.out, a.training_audio)
        print(f"{a.training_audio} training examples per type in {a.out}/train, {a.out}/valid")
        return
    write_mixes(a.out, a.mixes)
    print(f"{a.mixes} held-out toy mixes in {a.out}")


if __name__ == '__main__':
    main()
