"""Does each prior prefer its own instrument?  Log-density matrix of priors x stems.

    cd models/research && PYTHONPATH=../training python -m stemflow_research.prior_check \
        --priors ../priors --stems bass,drums,guitar,piano \
        --data ../training/.cache/data/valid-heldout-sf [--max-segments 20]

For every stem folder DATA/<stem>/*.wav (5-s segments at 22.05 kHz, as written by
render.py) and every prior PRIORS/<name>/encode.onnx, the mean log p(s) per dimension
(nats, over 513 x 432 magnitudes) of the segments' contract-STFT magnitudes.  A prior
that generalises gives its own instrument the highest value in each column, also on
a soundfont it never heard (`valid-heldout-sf`).  Prints a markdown table.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

from stemflow_training.audio_io import read_audio
from stemflow_training.stft import BINS, FRAMES, segment_magnitude


def load_segments(folder, max_segments):
    """Contract-STFT magnitudes [N, 513, 432] of (at most `max_segments`, evenly spaced) 5-s
    22.05-kHz segments FOLDER/*.wav."""
    files = sorted(glob.glob(os.path.join(folder, '*.wav')))
    if not files:
        sys.exit(f"prior_check: no wav files in {folder}")
    if max_segments and len(files) > max_segments:
        idx = np.linspace(0, len(files) - 1, max_segments).round().astype(int)
        files = [files[i] for i in idx]
    mags = []
    for f in files:
        y, sr = read_audio(f)
        if sr != 22050:
            sys.exit(f"prior_check: {f} is {sr} Hz, expected 22050")
        mags.append(segment_magnitude(y))
    return np.stack(mags).astype(np.float32)


def session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


def logp_per_dim(sess, mags, batch=2):
    out = []
    for i in range(0, len(mags), batch):
        res = sess.run(['logp'], {'s': mags[i:i + batch]})[0]
        out.append(np.asarray(res, dtype=np.float64))
    return np.concatenate(out) / (BINS * FRAMES)


def matrix(priors_dir, prior_names, data_dir, stems, max_segments):
    mags = {s: load_segments(os.path.join(data_dir, s), max_segments) for s in stems}
    table = {}
    for p in prior_names:
        with open(os.path.join(priors_dir, p, 'manifest.json')) as f:
            floor = float(json.load(f)['magnitude_scaling']['floor'])
        sess = session(os.path.join(priors_dir, p, 'encode.onnx'))
        # The flow models ln(|X| + F) and decode returns s = |X| + F; encode takes that s and
        # takes ln(max(s, 1e-30)), so raw magnitudes (exact zeros in silent bins) must be
        # shifted by F first, or log p collapses to ~ -1e14 per dimension.
        table[p] = {s: float(np.mean(logp_per_dim(sess, mags[s] + np.float32(floor)))) for s in stems}
    return table, {s: len(m) for s, m in mags.items()}


def markdown(table, stems):
    lines = ['| prior \\ audio | ' + ' | '.join(stems) + ' |', '|---|' + '---|' * len(stems)]
    best = {s: max(table, key=lambda p: table[p][s]) for s in stems}
    for p, row in table.items():
        cells = [(f'**{row[s]:.3f}**' if best[s] == p else f'{row[s]:.3f}') for s in stems]
        lines.append(f'| {p} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--priors', required=True)
    ap.add_argument('--stems', default='bass,drums,guitar,piano', help='audio folders under --data')
    ap.add_argument('--prior-names', default=None, help='priors to load (default: --stems)')
    ap.add_argument('--data', required=True, help='DATA/<stem>/*.wav 5-s segments')
    ap.add_argument('--max-segments', type=int, default=20)
    ap.add_argument('--json', default=None)
    a = ap.parse_args(argv)
    stems = a.stems.split(',')
    names = (a.prior_names or a.stems).split(',')
    table, counts = matrix(a.priors, names, a.data, stems, a.max_segments)
    print(f"mean log p(s) per dimension (nats), {', '.join(f'{s} {n}' for s, n in counts.items())} "
          f"segments from {a.data}; bold = highest in the column")
    print()
    print(markdown(table, stems))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'data': a.data, 'segments': counts, 'logp_per_dim': table}, f, indent=1)
    ok = all(max(table, key=lambda p: table[p][s]) == s for s in stems if s in table)
    return table, ok


if __name__ == '__main__':
    main()
