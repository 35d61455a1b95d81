"""Source-only KL-NMF dictionaries: learning them and storing them in a prior (`nmf.bin`).

    # a prior's dictionary from an evaluation dictionary file (stem: the prior's own by default)
    python -m stemflow_training.nmf --prior ../priors/bass --from-npz nmf-dictionaries.npz [--stem S]
    # learned from recordings, with the loaders the trainer uses
    python -m stemflow_training.nmf --prior DIR --source dir:PATH|synthetic:KIND \
        [--atoms 48 --iters 200 --max-frames 20000 --seed 3]

A dictionary W [bins, atoms] (bins = n_fft/2 + 1) is learned by KL-NMF (`kl_nmf`, multiplicative
updates, every atom normalised to sum 1) on the magnitudes of an STFT of its own (`stft.stft`,
periodic Hann 2048, hop 512, centred zero padding, unscaled rfft, 22.05 kHz mono) of up to
`max_frames` non-silent frames (column sum > 1e-3) of the source's segments, taken in a seeded
random order. The file and the manifest's `nmf` section are specified in models/CONTRACT.md
("NMF dictionary (optional)"): raw little-endian float32, bin-major (atom k of bin b at
b*atoms + k). The training (train.py) writes one into every prior it exports.
"""
import argparse
import json
import os
import time

import numpy as np

from .files import listed_file, sha256, write_atomic
from .stft import stft

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FILE = 'nmf.bin'
N_FFT = 2048
HOP = 512
ATOMS = 48
ITERS = 200
MAX_FRAMES = 20000
SEED = 3
SILENT_FRAME = 1e-3     # a frame whose magnitudes sum to at most this is dropped
SUM_TOLERANCE = 1e-3    # |column sum - 1| allowed in a stored dictionary (float32 rounding)


def kl_nmf(V, k, iters, rng, W=None, flat_start=False):
    """KL-NMF V ~ W H by multiplicative updates; W fixed when given. `flat_start` (with W given)
    starts H at mean column sum of V / (mean column sum of W · atoms) instead of at random, as
    the engine's NMF expert does (`src/engine/search/nmf_expert.rs`)."""
    F, T = V.shape
    learn_w = W is None
    if learn_w:
        W = rng.random((F, k)) + 0.1
    if flat_start and not learn_w:
        H = np.full((W.shape[1], T), V.sum(0).mean() / W.sum(0).mean() / W.shape[1] + 1e-9)
    else:
        H = rng.random((W.shape[1], T)) + 0.1
    V = V + 1e-9
    for _ in range(iters):
        WH = W @ H + 1e-9
        H *= (W.T @ (V / WH)) / (W.sum(axis=0)[:, None] + 1e-12)
        if learn_w:
            WH = W @ H + 1e-9
            W *= ((V / WH) @ H.T) / (H.sum(axis=1)[None, :] + 1e-12)
            scale = W.sum(axis=0) + 1e-12
            W /= scale[None, :]
            H *= scale[:, None]
    return W, H


def kl_divergence(V, WH):
    """Generalised KL divergence D(V | WH) = sum V ln(V / WH) - V + WH (what kl_nmf decreases),
    with the same 1e-9 offsets."""
    V = V + 1e-9
    WH = WH + 1e-9
    return float(np.sum(V * np.log(V / WH) - V + WH))


def _read_item(item):
    """An item of `dictionary_frames` as a list of 1-D signals: a file's mono samples at 22.05 kHz,
    or an array itself."""
    if isinstance(item, (str, os.PathLike)):
        from .audio_io import read_mono
        return [read_mono(item)]
    return [np.asarray(item, dtype=np.float64)]


def dictionary_frames(items, n_fft=N_FFT, hop=HOP, max_frames=MAX_FRAMES, rng=None, load=None):
    """The learning matrix V [n_fft/2 + 1, <= max_frames]: STFT magnitudes of the items' audio
    with silent frames dropped, items taken in a random order drawn from `rng` (a sequence; an
    iterator without `len` is taken in its own order) until `max_frames` frames are gathered.
    An item is a file path or a signal (22.05 kHz mono), or anything `load(item)` turns into a list
    of signals. Returns (V, number of items used)."""
    if rng is not None and hasattr(items, '__len__'):
        items = [items[i] for i in rng.permutation(len(items))]
    load = load or _read_item
    cols, used, frames = [], 0, 0
    for item in items:
        for y in load(item):
            M = np.abs(stft(y, n_fft=n_fft, hop=hop))
            keep = M.sum(axis=0) > SILENT_FRAME   # drop silent frames
            cols.append(M[:, keep])
            frames += cols[-1].shape[1]
        used += 1
        if frames >= max_frames:
            break
    if not frames:
        raise ValueError("no non-silent frames to learn an NMF dictionary from")
    return np.concatenate(cols, axis=1)[:, :max_frames], used


def learn_dictionary(items, atoms=ATOMS, iters=ITERS, max_frames=MAX_FRAMES, seed=SEED, n_fft=N_FFT,
                     hop=HOP, load=None):
    """A dictionary W [n_fft/2 + 1, atoms] (float32, columns summing to 1) from `items` as
    `dictionary_frames` reads them; one generator seeded with `seed` draws the order, then
    kl_nmf's start. Returns (W, {items, frames, seconds}); seconds: reading and learning."""
    t = time.time()
    rng = np.random.default_rng(seed)
    V, used = dictionary_frames(items, n_fft, hop, max_frames, rng, load)
    W, _ = kl_nmf(V, atoms, iters, rng)
    return W.astype(np.float32), {'items': used, 'frames': int(V.shape[1]),
                                  'seconds': round(time.time() - t, 1)}


def source_dictionary(source, atoms=ATOMS, iters=ITERS, max_frames=MAX_FRAMES, seed=SEED,
                      n_fft=N_FFT, hop=HOP):
    """The dictionary of a training --source (data.training_audio: the 5-s segments the flow
    trains on, files in a seeded random order; a synthetic source's training clips in seed
    order). Returns (W, the manifest section's `training` record)."""
    from . import data
    items, load, desc = data.training_audio(source)
    W, info = learn_dictionary(items, atoms, iters, max_frames, seed, n_fft, hop, load)
    unit = 'clips' if source.startswith('synthetic:') else 'files'
    return W, {'source': source, 'data': desc, unit: info['items'], 'frames': info['frames'],
               'atoms': atoms, 'max_frames': max_frames, 'iterations': iters, 'seed': seed,
               'silent_frame_sum': SILENT_FRAME, 'seconds': info['seconds']}


def check_dictionary(W, n_fft):
    """Raises ValueError unless W is a dictionary as the contract stores it."""
    bins = n_fft // 2 + 1
    if W.ndim != 2 or W.shape[0] != bins or W.shape[1] < 1:
        raise ValueError(f"NMF dictionary of shape {W.shape}, expected ({bins}, atoms) for n_fft {n_fft}")
    if not np.all(np.isfinite(W)) or np.any(W < 0):
        raise ValueError("NMF dictionary has negative or non-finite values")
    sums = W.astype(np.float64).sum(axis=0)
    if np.max(np.abs(sums - 1.0)) > SUM_TOLERANCE:
        raise ValueError(f"NMF dictionary atoms must sum to 1 (found {sums.min():.6f}..{sums.max():.6f})")


def write_dictionary(prior_dir, W, n_fft=N_FFT, hop=HOP, training_info=None):
    """Writes W to `prior_dir/nmf.bin` (float32 little-endian, bin-major) and adds or replaces the
    `nmf` section of its manifest.json, every other key kept in its place. Returns the section."""
    W = np.asarray(W)
    if W.dtype != np.float32:
        W = W.astype(np.float32)
    check_dictionary(W, n_fft)
    path = os.path.join(prior_dir, FILE)
    write_atomic(path, np.ascontiguousarray(W).astype('<f4', copy=False).tobytes())
    section = {'file': FILE, 'sha256': sha256(path), 'n_fft': int(n_fft), 'hop': int(hop),
               'window': 'hann-periodic', 'center': 'zero', 'atoms': int(W.shape[1]),
               'bins': int(W.shape[0]), 'training': training_info or {}}
    manifest_path = os.path.join(prior_dir, 'manifest.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest['nmf'] = section
    write_atomic(manifest_path, json.dumps(manifest, indent=2) + '\n', 'w')
    return section


def verify_section(prior_dir, section):
    """W [bins, atoms] of a manifest's `nmf` section, after the checks the engine makes (file
    present, sha256, size = bins * atoms * 4, bins = n_fft/2 + 1, finite and >= 0); ValueError
    naming what is wrong otherwise."""
    for key in ('file', 'sha256', 'n_fft', 'hop', 'atoms', 'bins'):
        if key not in section:
            raise ValueError(f"nmf section without `{key}`")
    if section.get('window', 'hann-periodic') != 'hann-periodic' or section.get('center', 'zero') != 'zero':
        raise ValueError("nmf: window must be hann-periodic and center zero")
    bins, atoms = int(section['bins']), int(section['atoms'])
    if bins != section['n_fft'] // 2 + 1 or atoms < 1:
        raise ValueError(f"nmf: bins {bins} and atoms {atoms} do not fit n_fft {section['n_fft']}")
    path = listed_file(prior_dir, section, 'nmf')
    raw = open(path, 'rb').read()
    if len(raw) != bins * atoms * 4:
        raise ValueError(f"nmf: {path} has {len(raw)} bytes, expected {bins} x {atoms} x 4")
    W = np.frombuffer(raw, dtype='<f4').reshape(bins, atoms)
    if not np.all(np.isfinite(W)) or np.any(W < 0):
        raise ValueError(f"nmf: {path} has negative or non-finite values")
    return W


def read_dictionary(prior_dir):
    """(W [bins, atoms] float32, the manifest's `nmf` section) of a prior, checked as the engine
    checks it (`verify_section`); None when the manifest has no `nmf` section."""
    with open(os.path.join(prior_dir, 'manifest.json')) as f:
        section = json.load(f).get('nmf')
    if section is None:
        return None
    return verify_section(prior_dir, section), section


def existing_section(prior_dir):
    """The `nmf` section of the manifest already in `prior_dir` if its file is still there and
    matches it (export.py keeps it when it rewrites the manifest), else None."""
    try:
        return read_dictionary(prior_dir)[1]
    except (OSError, ValueError, TypeError, KeyError, AttributeError, json.JSONDecodeError):
        return None


def from_npz(path, stem):
    """(W, training record, n_fft, hop) of one stem's dictionary in an evaluation dictionary file
    (stemflow_research.evaluate's npz: one array per stem and an `info` JSON); the record holds
    the file's learning settings and the stem's own figures (files, frames, seconds)."""
    z = np.load(path)
    if stem not in z.files:
        raise SystemExit(f"{path} has no dictionary for {stem!r} (it has {', '.join(f for f in z.files if f != 'info')})")
    info = json.loads(str(z['info'])) if 'info' in z.files else {}
    where = os.path.abspath(path)
    shown = os.path.relpath(where, REPO) if where.startswith(REPO + os.sep) else os.path.basename(path)
    training = {'from': shown, 'stem': stem}
    for key in ('train_dir', 'soundfont', 'atoms', 'learn_iters', 'max_frames', 'seed', 'n_fft', 'hop', 'stft'):
        if key in info:
            training[key] = info[key]
    training.update(info.get('per_stem', {}).get(stem, {}))
    return z[stem], training, info.get('n_fft', N_FFT), info.get('hop', HOP)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--prior', required=True, help='the prior folder (manifest.json) to write nmf.bin into')
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument('--from-npz', metavar='FILE', help='take the dictionary from an evaluation npz')
    what.add_argument('--source', help='learn from synthetic:KIND or dir:PATH (or dir:TRAIN,VALID)')
    ap.add_argument('--stem', default=None, help="the npz's dictionary to take (default: the prior's stem)")
    ap.add_argument('--atoms', type=int, default=ATOMS)
    ap.add_argument('--iters', type=int, default=ITERS)
    ap.add_argument('--max-frames', type=int, default=MAX_FRAMES)
    ap.add_argument('--seed', type=int, default=SEED)
    return ap.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    with open(os.path.join(a.prior, 'manifest.json')) as f:
        stem = a.stem or json.load(f)['stem']
    if a.from_npz:
        W, training, n_fft, hop = from_npz(a.from_npz, stem)
    else:
        W, training = source_dictionary(a.source, a.atoms, a.iters, a.max_frames, a.seed)
        n_fft, hop = N_FFT, HOP
    section = write_dictionary(a.prior, W, n_fft, hop, training)
    print(f"nmf: {os.path.join(a.prior, FILE)}: {section['atoms']} atoms x {section['bins']} bins "
          f"(STFT {n_fft}/{hop}), sha256 {section['sha256'][:12]}…"
          + (f", learned in {training['seconds']} s" if 'seconds' in training and not a.from_npz else ''),
          flush=True)


if __name__ == '__main__':
    main()
