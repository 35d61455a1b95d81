"""Training data sources -> magnitude segments [N, 513, 432] (float32).

--source synthetic:KIND   seeded renders from synth.py (KIND in sine/noise/saw/square)
--source dir:PATH         every audio file under PATH (wav/flac/ogg/aif[f]; or those PATH, a text
                          file, lists one a line) at any
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


def synthetic_clip(kind, i, valid=False):
    """The i-th 5-s clip of a synthetic source (training seeds, or validation seeds)."""
    base = synth.KIND_OFFSET[kind] + (synth.VALID_BASE if valid else 0)
    return synth.render(kind, base + i, 5.0, SAMPLE_RATE)


def synthetic_segments(kind, seconds, valid=False):
    n = max(1, int(math.ceil(seconds / 5.0)))
    return np.stack([segment_magnitude(synthetic_clip(kind, i, valid)) for i in range(n)])


def file_audio_segments(y):
    """The 5-s time-domain segments of a file's samples the training uses: consecutive, a trailing
    part of at least 2.5 s kept, segments below -50 dBFS RMS dropped."""
    segs = []
    for start in range(0, max(1, len(y) - SEGMENT_SAMPLES // 2), SEGMENT_SAMPLES):
        seg = y[start:start + SEGMENT_SAMPLES]
        if len(seg) < SEGMENT_SAMPLES // 2:
            continue
        rms = np.sqrt(np.mean(seg ** 2)) + 1e-12
        if 20 * np.log10(rms) < SILENCE_DBFS:
            continue
        segs.append(seg)
    return segs


def file_segments(y):
    return [segment_magnitude(seg) for seg in file_audio_segments(y)]


def dir_files(path, valid=False, whole=False):
    """The audio files of PATH that train (or, valid=True, validate), in the order they are read.
    whole=True: every file of PATH (a folder that is all training or all validation),
    in a seeded random order so that a `seconds` limit samples across pieces."""
    if os.path.isfile(path):
        # A list of the files, one path a line: what `stemflow train-prior` found under the folder
        # (it follows linked folders and takes each file once).
        with open(path, 'rb') as listing:
            files = sorted(os.fsdecode(line) for line in listing.read().split(b'\n') if line)
    else:
        files = sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs
                       if f.lower().endswith(AUDIO_EXT))
    if not files:
        raise SystemExit(f"no audio files under {path}")
    held = [f for i, f in enumerate(files) if i % 10 == 9] or files[-1:]   # < 10 files: the last one
    chosen = held if valid else ([f for f in files if f not in held] or files)
    if whole:
        chosen = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
    return chosen


def dir_segments(path, seconds=None, valid=False, whole=False):
    """Magnitudes of the 5-s segments of `dir_files(path, valid, whole)`, up to `seconds`."""
    segs = []
    for f in dir_files(path, valid, whole):
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


def training_audio(source):
    """The training part of a --source in the time domain, for learners that need audio rather
    than the flow's magnitudes (the NMF dictionary, nmf.py): (items, load, description), where
    load(item) is the list of the item's 5-s segments, exactly the ones whose magnitudes
    load_source trains on. Items: the training files of a dir: source (all of TRAIN for
    dir:TRAIN,VALID; the files not held out for dir:PATH) in load_source's order, or the
    training seeds' clip numbers 0, 1, 2, ... of a synthetic: source (a generator without end:
    take as many as needed). A `seconds` limit is not applied (it is not part of the source)."""
    import itertools
    kind, _, arg = source.partition(':')
    if kind == 'synthetic':
        if arg not in synth.KINDS:
            raise SystemExit(f"unknown synthetic kind {arg!r}; one of {synth.KINDS}")
        return (itertools.count(), lambda i: [synthetic_clip(arg, i)],
                f"synthetic:{arg} training clips (seeds {synth.KIND_OFFSET[arg]}+i)")
    if kind == 'dir':
        path, whole = (arg.split(',', 1)[0], True) if ',' in arg else (arg, False)
        files = dir_files(path, whole=whole)
        return files, lambda f: file_audio_segments(read_mono(f)), f"dir:{path} ({len(files)} training files)"
    raise SystemExit(f"unknown --source {source!r} (synthetic:KIND, dir:PATH or dir:TRAIN_PATH,VALID_PATH)")
