"""NMF lab: stronger source-only KL-NMF experts, screened offline (numpy, one thread).

    cd models/research
    PY="nice -n 10 env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../training ../../.venv/bin/python"
    D=../training/.cache/data; C=../training/checkpoints/nmf-candidates
    # 1. dictionary sets, each stem's from that stem's isolated training segments only
    $PY -m stemflow_research.nmf_lab learn --train $D/train --out $C \
        --variants "all96:atoms=96,fonts=all;nmd48:atoms=48,context=3"
    # 2. every set with every fitting configuration on mixtures, scored per 5-s segment
    $PY -m stemflow_research.nmf_lab separate --mixtures $D/valid/mixtures \
        --references $D/valid/references --dicts fr48=../training/nmf-dictionaries.npz,$C/all96.npz \
        --configs "flat50:iters=50;flat50 sparse 0.1:iters=50,sparsity=0.1" [--shard K/N] [--json OUT]

What is screened: the dictionaries (how many atoms, which training soundfonts they learn from,
one dictionary per font side by side, sparse activations while learning, convolutive atoms
spanning a few frames) and how a mixture is fitted with them (updates, flat or random start,
sparsity on the activations, temporal smoothing of the activations, mask exponent). The STFT is
the engine's NMF grid (periodic Hann 2048 / 512, 22.05 kHz, magnitudes).

`learn` variants, `name:key=value,...` separated by `;` (defaults in LEARN):
  atoms     atoms per stem (split evenly across fonts with split=1)
  fonts     `all` or `+`-joined data-manifest font names (fluidr3+musescore+opl3): the stem's
            training segments rendered with those fonts (evaluate.soundfont_of_segments)
  split     1: one dictionary per font (atoms / fonts atoms each, frames / fonts frames each),
            side by side
  frames    up to this many non-silent frames (nmf.dictionary_frames, files in a seeded order)
  iters     learning updates; seed: the generator of the file order and the start
  sparsity  lambda of the L1/2 penalty on the activations while learning (`cnmf`; dimensionless)
  context   atoms spanning this many frames (convolutive NMF, NMD: V ~ sum_tau W_tau H shifted
            by tau); 1 is plain NMF, `stemflow_training.nmf.kl_nmf`'s updates (here in float32)
A set is saved as OUT/<name>.npz: one array per stem ([bins, atoms], or [context, bins, atoms]),
and `info` (JSON: the spec and per stem files, frames, cpu_seconds); a context-1 set is the
layout `evaluate --nmf` and `stemflow_training.nmf --from-npz` read.

`separate` configurations, `name:key=value,...` (defaults in FIT): iters (updates of H), start
(`flat`: H = mean column sum of V / atoms, the engine's start; `random`: uniform + 0.1 from seed
0, the evaluation's baseline), sparsity (lambda of the L1/2 penalty on H, `cnmf`), smooth
(after each update H <- (1 - a) H + a * 3-tap moving average over frames: a heuristic temporal
continuity), power (masks V_i^p / sum_j V_j^p). Each piece's first --max-seconds is fitted at
once (the engine fits 5-s frames). The table: median SDR per stem, the average of the medians,
and the CPU seconds of the fit, masks and inversion per 5 s of audio (process time, one thread).
"""
import argparse
import json
import os
import time

import numpy as np

from stemflow_training.audio_io import read_mono
from stemflow_training.nmf import dictionary_frames
from stemflow_training.stft import SAMPLE_RATE, istft, stft

from . import evaluate as ev

N_FFT, HOP = 2048, 512
EPS = 1e-9
FLOOR = 1e-20    # the smallest dictionary value and activation while learning
LEARN = {'atoms': 48, 'fonts': 'all', 'split': 0, 'frames': 20000, 'iters': 200, 'seed': 3,
         'sparsity': 0.0, 'context': 1}
FIT = {'iters': 50, 'start': 'flat', 'sparsity': 0.0, 'smooth': 0.0, 'power': 1.0}


def parse_specs(text, defaults):
    """`name:k=v,...;name:...` -> [(name, {k: v})], values typed as the defaults'."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(';'))):
        name, _, body = item.partition(':')
        spec = dict(defaults)
        for kv in filter(None, (s.strip() for s in body.split(','))):
            k, _, v = kv.partition('=')
            if k not in defaults:
                raise SystemExit(f"nmf_lab: unknown key {k!r} in {item!r} (known: {', '.join(defaults)})")
            spec[k] = type(defaults[k])(v)
        out.append((name.strip(), spec))
    return out


# ---------------------------------------------------------------- convolutive KL-NMF
def shifted(H, tau):
    """H delayed by tau frames (zeros in front)."""
    if tau == 0:
        return H
    out = np.zeros_like(H)
    out[:, tau:] = H[:, :-tau]
    return out


def advanced(R, tau):
    """R advanced by tau frames (zeros at the end): the adjoint of `shifted`."""
    if tau == 0:
        return R
    out = np.zeros_like(R)
    out[:, :-tau] = R[:, tau:]
    return out


def model(W, H):
    """sum_tau W[tau] @ H delayed by tau: W [context, bins, atoms], H [atoms, frames]."""
    out = W[0] @ H
    for tau in range(1, W.shape[0]):
        out += W[tau] @ shifted(H, tau)
    return out


def ratio(V, W, H):
    """V / (model + EPS), computed in place (the learning matrices are large)."""
    R = model(W, H)
    R += EPS
    return np.divide(V, R, out=R)


def smooth3(H):
    """3-tap moving average over frames, the edges averaging over what exists."""
    P = np.pad(H, ((0, 0), (1, 1)))
    n = np.pad(np.ones(H.shape[1]), 1)
    return (P[:, :-2] + P[:, 1:-1] + P[:, 2:]) / (n[:-2] + n[1:-1] + n[2:])


def flat_start(V, W):
    """The engine's start: mean column sum of V / (mean atom sum * atoms), every cell."""
    sums = W.sum(axis=(0, 1))
    return np.full((W.shape[2], V.shape[1]), V.sum(0).mean() / sums.mean() / W.shape[2] + EPS)


def cnmf(V, W, H, iters, learn_w=False, sparsity=0.0, smooth=0.0):
    """Multiplicative KL updates of V ~ model(W, H) (Smaragdis' NMD with the joint
    majorise-minimise step for H); W [context, bins, atoms] is also updated with `learn_w`, every
    atom then renormalised to sum 1 over its frames and bins. `sparsity` adds an L1/2 penalty
    lambda * sum_kt sqrt(m_t H_kt) (m_t the frame's mean activation): a plain L1 penalty
    lambda * sum H only rescales H when every atom sums to 1 (KL then charges (1 + lambda) sum H),
    which leaves the masks unchanged. `smooth` blends H with its 3-tap moving average after each
    update. Returns (W, H); context 1, no sparsity and no smoothing is `kl_nmf`'s update."""
    V = V + EPS
    L, T = W.shape[0], V.shape[1]
    for _ in range(iters):
        R = ratio(V, W, H)
        num = W[0].T @ R
        for tau in range(1, L):
            num += W[tau].T @ advanced(R, tau)
        # sum over bins of W[tau], counted only where frame t + tau exists
        den = sum(np.outer(W[tau].sum(0), (np.arange(T) + tau < T)) for tau in range(L))
        if sparsity:
            # lambda * sum sqrt(m_t H_kt), m_t the frame's mean activation held fixed: an L1/2
            # penalty of the same scale as the divergence; its gradient joins the denominator
            m = H.mean(axis=0, keepdims=True)
            den = den + 0.5 * sparsity * np.sqrt(m / np.maximum(H, FLOOR))
        H = H * num / (den + 1e-12)
        if smooth:
            H = (1 - smooth) * H + smooth * smooth3(H)
        if learn_w:
            R = ratio(V, W, H)
            for tau in range(L):
                Hs = shifted(H, tau)
                W[tau] *= (R @ Hs.T) / (Hs.sum(axis=1)[None, :] + 1e-12)
            scale = W.sum(axis=(0, 1)) + 1e-12
            W /= scale[None, None, :]
            H *= scale[:, None]
            # no subnormal floats (they slow the products down tenfold; the engine floors alike)
            np.maximum(W, FLOOR, out=W)
            np.maximum(H, FLOOR, out=H)
    return W, H


# ---------------------------------------------------------------- learning
def stem_files(train_dir, stem, fonts):
    """A stem's training segments, all or only those rendered with `fonts` (a list of names)."""
    files = sorted(os.path.join(train_dir, stem, f) for f in os.listdir(os.path.join(train_dir, stem))
                   if f.endswith('.wav'))
    if fonts is None:
        return files
    by_file = ev.soundfont_of_segments(train_dir, stem)
    return [f for f in files if by_file.get(os.path.basename(f)) in fonts]


def learn_one(V, atoms, spec, rng):
    """One dictionary [context, bins, atoms] from the frames V, learned in float32 (twice as fast
    as the trainer's float64 `kl_nmf`, the same updates and start distribution)."""
    W = (rng.random((spec['context'], V.shape[0], atoms)) + 0.1).astype(np.float32)
    W /= W.sum(axis=(0, 1))[None, None, :]
    H = (rng.random((atoms, V.shape[1])) + 0.1).astype(np.float32)
    W, _ = cnmf(V.astype(np.float32), W, H, spec['iters'], learn_w=True, sparsity=spec['sparsity'])
    return W


def learn_set(train_dir, stems, spec):
    """{stem: W [context, bins, atoms]} and per-stem figures; one generator seeded with the spec's
    seed draws every stem's file order and start, in stem order."""
    rng = np.random.default_rng(spec['seed'])
    groups = [None] if spec['fonts'] == 'all' and not spec['split'] else None
    if groups is None:
        names = (sorted({f for s in stems for f in ev.soundfont_of_segments(train_dir, s).values()})
                 if spec['fonts'] == 'all' else spec['fonts'].split('+'))
        groups = [[n] for n in names] if spec['split'] else [names]
    dicts, info = {}, {}
    for stem in stems:
        t, parts, files, frames = time.process_time(), [], 0, 0
        for g in groups:
            V, used = dictionary_frames(stem_files(train_dir, stem, g), N_FFT, HOP,
                                        spec['frames'] // len(groups), rng)
            parts.append(learn_one(V, spec['atoms'] // len(groups), spec, rng))
            files, frames = files + used, frames + V.shape[1]
        dicts[stem] = np.concatenate(parts, axis=2).astype(np.float32)
        info[stem] = {'files': files, 'frames': frames, 'cpu_seconds': round(time.process_time() - t, 1)}
        print(f"nmf_lab: {stem}: {dicts[stem].shape[2]} atoms x {dicts[stem].shape[0]} frames from "
              f"{frames} frames of {files} files ({info[stem]['cpu_seconds']} s)", flush=True)
    return dicts, info


def save_set(path, dicts, spec, info, train_dir):
    """An npz evaluate can read: a context-1 set is stored [bins, atoms] like the trainer's."""
    arrays = {s: (W[0] if W.shape[0] == 1 else W) for s, W in dicts.items()}
    meta = {'train_dir': os.path.relpath(os.path.abspath(train_dir), ev.REPO), 'spec': spec,
            'atoms': int(next(iter(dicts.values())).shape[2]), 'learn_iters': spec['iters'],
            'max_frames': spec['frames'], 'seed': spec['seed'], 'n_fft': N_FFT, 'hop': HOP,
            'mask_power': 1.0, 'soundfont': None if spec['fonts'] == 'all' else spec['fonts'],
            'stft': f'hann-periodic {N_FFT} / {HOP}, 22.05 kHz, magnitudes', 'per_stem': info}
    np.savez_compressed(path, **arrays, info=json.dumps(meta))


def load_set(path, stems):
    """{stem: W [context, bins, atoms] float64} of a saved set (or the trainer's npz)."""
    z = np.load(path)
    return {s: (z[s][None] if z[s].ndim == 2 else z[s]).astype(np.float64) for s in stems}


# ---------------------------------------------------------------- separation
def fit_models(V, dicts, stems, cfg):
    """Each stem's model of the magnitudes V [bins, frames] under one fitting configuration."""
    L = max(d.shape[0] for d in dicts.values())
    # a set mixing contexts is padded with zero lags
    Ws = [np.concatenate([dicts[s], np.zeros((L - dicts[s].shape[0],) + dicts[s].shape[1:])]) for s in stems]
    W = np.concatenate(Ws, axis=2)
    if cfg['start'] == 'flat':
        H = flat_start(V, W)
    else:
        H = np.random.default_rng(0).random((W.shape[2], V.shape[1])) + 0.1
    _, H = cnmf(V, W, H, cfg['iters'], sparsity=cfg['sparsity'], smooth=cfg['smooth'])
    parts, k0 = [], 0
    for Wi in Ws:
        k = Wi.shape[2]
        parts.append(model(Wi, H[k0:k0 + k]))
        k0 += k
    return np.stack(parts)


def separate(mix, dicts, stems, cfg):
    """{stem: samples}: masks V_i^p / sum_j V_j^p on the mixture's STFT, its phase."""
    X = stft(mix, n_fft=N_FFT, hop=HOP)
    P = fit_models(np.abs(X), dicts, stems, cfg) ** cfg['power']
    M = P / (P.sum(0, keepdims=True) + 1e-12)
    return {s: istft(M[i] * X, len(mix), n_fft=N_FFT, hop=HOP) for i, s in enumerate(stems)}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    lp = sub.add_parser('learn', help='learn dictionary sets')
    lp.add_argument('--train', required=True, help='DIR/<stem>/*.wav, the data manifest beside DIR')
    lp.add_argument('--out', required=True)
    lp.add_argument('--variants', required=True)
    lp.add_argument('--stems', default=','.join(ev.STEMS))
    sp = sub.add_parser('separate', help='score sets x fitting configurations on mixtures')
    sp.add_argument('--mixtures', required=True)
    sp.add_argument('--references', required=True)
    sp.add_argument('--dicts', required=True, help='comma-separated [NAME=]PATH.npz')
    sp.add_argument('--configs', default='flat50:iters=50')
    sp.add_argument('--stems', default=','.join(ev.STEMS))
    sp.add_argument('--max-seconds', type=float, default=14.0)
    sp.add_argument('--limit', type=int, default=0)
    sp.add_argument('--shard', default=None)
    sp.add_argument('--json', default=None, help='write per-segment SDRs and the table here')
    return ap.parse_args(argv)


def run_learn(args):
    stems = args.stems.split(',')
    os.makedirs(args.out, exist_ok=True)
    for name, spec in parse_specs(args.variants, LEARN):
        dicts, info = learn_set(args.train, stems, spec)
        save_set(os.path.join(args.out, f'{name}.npz'), dicts, spec, info, args.train)
        print(f"nmf_lab: saved {name}", flush=True)


def run_separate(args):
    stems = args.stems.split(',')
    sets = {}
    for item in args.dicts.split(','):
        name, _, path = item.rpartition('=')
        sets[name or os.path.splitext(os.path.basename(path))[0]] = load_set(path, stems)
    configs = parse_specs(args.configs, FIT)
    seg = int(round(5.0 * SAMPLE_RATE))
    sdrs, cpu, audio = {}, {}, 0.0
    for mp in ev.select_mixtures(args):
        pid = os.path.splitext(os.path.basename(mp))[0]
        mix = read_mono(mp)[:int(round(args.max_seconds * SAMPLE_RATE))]
        n = len(mix)
        refs = {s: np.pad(r, (0, max(0, n - len(r))))[:n] for s in stems
                for r in [read_mono(os.path.join(args.references, pid, f'{s}.wav'))]}
        audio += n / SAMPLE_RATE
        for dname, dicts in sets.items():
            for cname, cfg in configs:
                row = f'{dname} {cname}'
                t = time.process_time()
                est = separate(mix, dicts, stems, cfg)
                cpu[row] = cpu.get(row, 0.0) + time.process_time() - t
                for s in stems:
                    sdrs.setdefault(row, {}).setdefault(s, []).extend(ev.segment_sdrs(refs[s], est[s], seg))
        print(f"nmf_lab: {pid}", flush=True)
    lines = ['| dictionaries, fit | ' + ' | '.join(stems) + ' | avg of medians | CPU s / 5 s |',
             '|---|' + '---|' * (len(stems) + 2)]
    table = {}
    for row, by_stem in sdrs.items():
        med = [float(np.median(by_stem[s])) for s in stems]
        table[row] = {'medians': med, 'avg': float(np.mean(med)), 'cpu_per_5s': cpu[row] / audio * 5.0}
        lines.append(f'| {row} | ' + ' | '.join(f'{m:.2f}' for m in med)
                     + f" | {table[row]['avg']:.2f} | {table[row]['cpu_per_5s']:.2f} |")
    print('\n'.join(lines), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'mixtures': args.mixtures, 'table': table, 'sdrs': sdrs}, f, indent=1)


def main(argv=None):
    args = parse_args(argv)
    run_learn(args) if args.cmd == 'learn' else run_separate(args)


if __name__ == '__main__':
    main()
