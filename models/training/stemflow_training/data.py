"""Training data sources -> magnitude segments [N, 513, 432] (float32).

--source synthetic:KIND   seeded renders from synth.py (KIND in sine/noise/saw/square)
--source dir:PATH         every audio file under PATH (wav/flac/ogg/aif[f]) at any
                          rate, mono or multichannel: downmixed, resampled to
                          22050 Hz (scipy.signal.resample_poly), cut into 5-s
                          segments; segments whose RMS is below -50 dBFS are dropped
                          (silence trim).  Every 10th file (the last one if there are fewer than 10)
                          is held out for validation.
--source dir:TRAIN,VALID  all files of TRAIN train, all of VALID validate, files in a seeded
                          random order (e.g. render.py's .cache/data/train/bass,
                          .cache/data/valid/bass: split by piece there).
"""
import math
import os
import numpy as np

from . import synth
from .audio_io import read_mono
from .stft import SAMPLE_RATE, SEGMENT_SAMPLES, segment_magnitude

AUDIO_EXT = ('.wav', '.flac', '.ogg', '.aif', '.aiff')
SILENCE_DBFS = -50.0


def synthetic_segments(kind, seconds, valid=False):
    n = max(1, int(math.ceil(seconds / 5.0)))
    base = synth.KIND_OFFSET[kind] + (synth.VALID_BASE if valid else 0)
    return np.stack([segment_magnitude(synth.render(kind, base + i, 5.0, SAMPLE_RATE)) for i in range(n)])


def file_segments(y):
    segs = []
    for start in range(0, max(1, len(y) - SEGMENT_SAMPLES // 2), SEGMENT_SAMPLES):
        seg = y[start:start + SEGMENT_SAMPLES]
        if len(seg) < SEGMENT_SAMPLES // 2:
            continue
        rms = np.sqrt(np.mean(seg ** 2)) + 1e-12
        if 20 * np.log10(rms) < SILENCE_DBFS:
            continue
        segs.append(segment_magnitude(seg))
    return segs


def dir_segments(path, seconds=None, valid=False, whole=False):
    """whole=True: every file of PATH (a folder that is all training or all validation),
    in a seeded random order so that a `seconds` limit samples across pieces."""
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs
                   if f.lower().endswith(AUDIO_EXT))
    if not files:
        raise SystemExit(f"no audio files under {path}")
    held = [f for i, f in enumerate(files) if i % 10 == 9] or files[-1:]   # < 10 files: the last one
    chosen = held if valid else ([f for f in files if f not in held] or files)
    if whole:
        chosen = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
    segs = []
    for f in chosen:
        segs += file_segments(read_mono(f))
        if seconds and len(segs) * 5.0 >= seconds:
            break
    if not segs:
        raise SystemExit(f"no non-silent 5-s segments in {path}")
    return np.stack(segs)


def load_source(source, seconds, valid_seconds):
    """Returns (train_mag, valid_mag, description)."""
    kind, _, arg = source.partition(':')
    if kind == 'synthetic':
        if arg not in synth.KINDS:
            raise SystemExit(f"unknown synthetic kind {arg!r}; one of {synth.KINDS}")
        return (synthetic_segments(arg, seconds), synthetic_segments(arg, valid_seconds, valid=True),
                f"synthetic:{arg}, {seconds:g} s train (seeds {synth.KIND_OFFSET[arg]}+i), "
                f"{valid_seconds:g} s valid (seeds {synth.VALID_BASE + synth.KIND_OFFSET[arg]}+i)")
    if kind == 'dir' and ',' in arg:
        # dir:TRAIN,VALID - separate folders, e.g. render.py's train/<stem> and valid/<stem>
        # (split by piece there); all of TRAIN trains, all of VALID validates
        tpath, vpath = arg.split(',', 1)
        tr = dir_segments(tpath, seconds, whole=True)
        va = dir_segments(vpath, valid_seconds, whole=True)
        return tr, va, (f"dir:{tpath} ({len(tr)} 5-s segments) / valid dir:{vpath} ({len(va)}), "
                        "files in seeded random order")
    if kind == 'dir':
        tr = dir_segments(arg, seconds)
        va = dir_segments(arg, valid_seconds, valid=True)
        return tr, va, f"dir:{os.path.basename(os.path.normpath(arg))}, {len(tr)} train / {len(va)} valid 5-s segments"
    raise SystemExit(f"unknown --source {source!r} (synthetic:KIND, dir:PATH or dir:TRAIN_PATH,VALID_PATH)")
