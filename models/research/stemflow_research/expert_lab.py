"""Expert lab: ways of combining the flows' stems with a source-only KL-NMF, screened offline.

    cd models/research && PYTHONPATH=../training python -m stemflow_research.expert_lab \
        --mixtures DIR --references DIR --glow-estimates DIR \
        [--nmf ../training/nmf-dictionaries.npz] [--max-seconds 14] [--limit N] [--shard K/N]

`--glow-estimates` holds stems the CLI made with the flows alone (`stemflow separate ...
--nmf-weight 0`), as DIR/<piece>/<stem>.wav or as evaluate's cache (DIR/<piece>-<key>/<stem>.wav).
Each piece's first --max-seconds is separated once by the NMF (its dictionaries fixed,
activations fitted on the whole crop), and every combination below is scored per 5-s segment
with evaluate's SDR; the table is median SDR per stem and the average of the medians.

Combinations, all on the NMF's STFT (2048 / 512 at 22.05 kHz) with the mixture's phase:
  flows            the flows' stems as they are
  nmf              soft masks V_i / sum V_j (V_i = W_i H_i, H from a random start, 200 updates:
                   the evaluation's baseline)
  nmf flat N       the same from a flat start H = mean column sum of V / atoms, N updates
  stems average    (flows_i + nmf_i) / 2 in the time domain
  masks average    w g_i + (1 - w) n_i, g_i = |STFT(flows_i)| / sum_j, n_i the NMF's mask
  product a/b      g_i^a n_i^b / sum_j g_j^a n_j^b (a product of experts)
  product ... on the 1024 grid   the same on the flows' STFT (1024 / 256), the NMF's models
                   interpolated onto it (bin 2k, frame t/2)
The engine's NMF expert (`--nmf-weight w`) is `product (1-w)/w` with `nmf flat 50` on the
NMF's grid; its figures come from evaluate, which runs the CLI.
"""
import argparse
import os
import sys

import numpy as np

from stemflow_training.audio_io import read_mono
from stemflow_training.nmf import kl_nmf
from stemflow_training.stft import SAMPLE_RATE, istft, stft

from . import evaluate as ev

NMF_GRID = (2048, 512)
FLOW_GRID = (1024, 256)


def glow_dir(root, pid, mixture):
    """The folder of one piece's flow stems: ROOT/<piece>, or evaluate's cache folder
    ROOT/<piece>-<key>, the key a hash of the mixture file (two sets may share piece names)."""
    for d in (os.path.join(root, pid), os.path.join(root, f'{pid}-{ev.file_key(mixture)}')):
        if os.path.isdir(d):
            return d
    sys.exit(f"expert_lab: no flow stems for {pid} in {root}")


def nmf_models(V, dicts, stems, iters, flat):
    """Each stem's model W_i H_i of the magnitudes V (bins x frames)."""
    W = np.concatenate([dicts[s] for s in stems], axis=1).astype(np.float64)
    _, H = kl_nmf(V, None, iters, np.random.default_rng(0), W=W, flat_start=flat)
    parts, k0 = [], 0
    for s in stems:
        k = dicts[s].shape[1]
        parts.append(W[:, k0:k0 + k] @ H[k0:k0 + k])
        k0 += k
    return np.stack(parts)


def share(P):
    """P normalised to sum 1 over the stems in every cell."""
    return P / (P.sum(0, keepdims=True) + 1e-12)


def on_flow_grid(N, frames):
    """NMF models (stems x 1025 x T) onto the flows' grid (513 bins, `frames` frames)."""
    Nb = N[:, ::2, :]
    out = np.zeros((N.shape[0], Nb.shape[1], frames))
    last = Nb.shape[2] - 1
    for t in range(frames):
        u0 = min(t // 2, last)
        u1 = min(u0 + 1, last)
        f = (t / 2) - (t // 2)
        out[:, :, t] = (1 - f) * Nb[:, :, u0] + f * Nb[:, :, u1]
    return out


def combinations(mix, flows, dicts, stems):
    """{name: {stem: samples}} for every combination of the module docstring."""
    n = len(mix)
    X = stft(mix, n_fft=NMF_GRID[0], hop=NMF_GRID[1])
    V = np.abs(X)

    def masked(P, spec=X, grid=NMF_GRID):
        M = share(P)
        return {s: istft(M[i] * spec, n, n_fft=grid[0], hop=grid[1]) for i, s in enumerate(stems)}

    N = nmf_models(V, dicts, stems, 200, flat=False)
    G = share(np.stack([np.abs(stft(flows[s], n_fft=NMF_GRID[0], hop=NMF_GRID[1])) for s in stems]))
    nmf = masked(N)
    out = {'flows': flows, 'nmf': nmf,
           'stems average': {s: 0.5 * (flows[s] + nmf[s]) for s in stems}}
    for w in (0.3, 0.5, 0.7):
        out[f'masks average w {w}'] = masked(w * G + (1 - w) * share(N))
    for a, b in ((1, 1), (0.5, 0.5), (0.3, 0.3), (0.6, 0.4), (0.5, 0.3), (0.4, 0.6), (0.3, 0.5)):
        out[f'product {a}/{b}'] = masked(G ** a * share(N) ** b)
    for iters in (50, 100):
        Nf = nmf_models(V, dicts, stems, iters, flat=True)
        out[f'nmf flat {iters}'] = masked(Nf)
        out[f'product 0.5/0.5, nmf flat {iters}'] = masked(G ** 0.5 * share(Nf) ** 0.5)
    X1 = stft(mix, n_fft=FLOW_GRID[0], hop=FLOW_GRID[1])
    G1 = share(np.stack([np.abs(stft(flows[s], n_fft=FLOW_GRID[0], hop=FLOW_GRID[1])) for s in stems]))
    N1 = share(on_flow_grid(N, X1.shape[1]))
    out['nmf on the 1024 grid'] = masked(N1, X1, FLOW_GRID)
    out['product 0.5/0.5 on the 1024 grid'] = masked(G1 ** 0.5 * N1 ** 0.5, X1, FLOW_GRID)
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mixtures', required=True)
    ap.add_argument('--references', required=True)
    ap.add_argument('--glow-estimates', required=True)
    ap.add_argument('--nmf', default=os.path.join(ev.REPO, 'models', 'training', 'nmf-dictionaries.npz'))
    ap.add_argument('--stems', default=','.join(ev.STEMS))
    ap.add_argument('--max-seconds', type=float, default=14.0)
    ap.add_argument('--limit', type=int, default=0)
    ap.add_argument('--shard', default=None)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stems = args.stems.split(',')
    z = np.load(args.nmf)
    dicts = {s: z[s].astype(np.float64) for s in stems}
    seg = int(round(5.0 * SAMPLE_RATE))
    sdrs = {}
    for mp in ev.select_mixtures(args):
        pid = os.path.splitext(os.path.basename(mp))[0]
        mix = read_mono(mp)[:int(round(args.max_seconds * SAMPLE_RATE))]
        n = len(mix)
        fit = lambda x: np.pad(x, (0, max(0, n - len(x))))[:n]
        refs = {s: fit(read_mono(os.path.join(args.references, pid, f'{s}.wav'))) for s in stems}
        d = glow_dir(args.glow_estimates, pid, mp)
        flows = {s: fit(read_mono(os.path.join(d, f'{s}.wav'))) for s in stems}
        for name, est in combinations(mix, flows, dicts, stems).items():
            for s in stems:
                sdrs.setdefault(name, {}).setdefault(s, []).extend(ev.segment_sdrs(refs[s], est[s], seg))
        print(f"expert_lab: {pid}", flush=True)
    print('| combination | ' + ' | '.join(stems) + ' | avg of medians |')
    print('|---|' + '---|' * (len(stems) + 1))
    for name, by_stem in sdrs.items():
        med = [float(np.median(by_stem[s])) for s in stems]
        print(f'| {name} | ' + ' | '.join(f'{m:.2f}' for m in med) + f' | {np.mean(med):.2f} |')


if __name__ == '__main__':
    main()
