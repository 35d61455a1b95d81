"""Restart-selection lab: can the priors' own likelihood pick the better of several searches?

    cd models/research && PYTHONPATH=../training python -m stemflow_research.restart_selection_lab \
        --mixtures DIR --references DIR --priors DIR [--limit 8] [--skip 0] [--variant cal=4,calp=0.5,calq=0.1] \
        [--restarts 3] [--z0 0.3] [--json OUT]

For the first 5-s frame of each piece, runs the search lab's search R times (from the variant's
own start, then from z0·ε with seeds 1 … R−1), scores each run's ratio-mask stems by SDR, and
asks each prior's `encode` for log p of every masked stem. It then reports the median SDR per
stem when one run per frame is chosen by: the first run; the largest Σᵢ log pᵢ of the masked
stems (`loglik`); of the raw estimates (`loglik-raw`); the largest Σᵢ log-posterior of each
stem's own prior among all priors (`own-posterior`); and, as bounds, the run with the best
(`oracle`) and worst (`worst`) mean SDR, which need the references. A screening tool, like
search_lab.
"""
import argparse
import glob
import json
import os

import numpy as np

from stemflow_training.audio_io import read_mono
from stemflow_training.stft import FRAMES, SEGMENT_SAMPLES, istft, stft

from . import search_lab as lab

RULES = ('first', 'loglik', 'loglik-raw', 'own-posterior', 'oracle', 'worst')


def log_density(prior, s):
    """log p(s) in nats from the prior's encode graph."""
    return float(prior.enc.run(['logp'], {'s': s[None].astype(np.float32)})[0][0])


def run_frame(priors, refs, X, spec, restarts, z0):
    """Every restart's per-stem SDRs and log densities for one frame."""
    M = np.abs(X).astype(np.float32)
    runs = []
    for r in range(restarts):
        v = lab.parse_variant(spec + (f',init=noise,z0={z0},seed={r}' if r else ''))
        s, _, _, _ = lab.separate(priors, M, v)
        s = [np.maximum(x.astype(np.float64), 0) for x in s]
        total = sum(s) + 1e-30
        masks = [x / total for x in s]
        runs.append({
            'sdr': [lab.sdr(ref, istft(X * m, SEGMENT_SAMPLES)) for ref, m in zip(refs, masks)],
            # lp[i][j]: prior j's log p of stem i's masked estimate
            'lp': [[log_density(pj, M * m) for pj in priors] for m in masks],
            'lp_raw': [log_density(p, x) for p, x in zip(priors, s)],
        })
    return runs


def choose(runs, rule):
    """Index of the run a rule picks."""
    def mean_sdr(run):
        return np.mean([x for x in run['sdr'] if x is not None])
    if rule == 'first':
        return 0
    if rule in ('oracle', 'worst'):
        scores = [mean_sdr(r) for r in runs]
        return int(np.argmax(scores) if rule == 'oracle' else np.argmin(scores))
    scores = []
    for run in runs:
        lp = np.array(run['lp'])
        if rule == 'loglik':
            scores.append(np.trace(lp))
        elif rule == 'loglik-raw':
            scores.append(sum(run['lp_raw']))
        else:
            top = lp.max(axis=1, keepdims=True)
            scores.append(float(np.sum(np.diag(lp) - (top[:, 0] + np.log(np.exp(lp - top).sum(axis=1))))))
    return int(np.argmax(scores))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lab.add_set_args(ap, limit=8)
    ap.add_argument('--variant', default='cal=4,calp=0.5,calq=0.1')
    ap.add_argument('--restarts', type=int, default=3)
    ap.add_argument('--z0', type=float, default=0.3)
    ap.add_argument('--json', default=None, help='write every run of every frame here')
    args = ap.parse_args(argv)
    stems = args.stems.split(',')
    priors = [lab.Prior(os.path.join(args.priors, st)) for st in stems]
    frames = []
    for path in sorted(glob.glob(os.path.join(args.mixtures, '*.wav')))[args.skip:args.skip + args.limit]:
        name = os.path.splitext(os.path.basename(path))[0]
        X = stft(read_mono(path)[:SEGMENT_SAMPLES], n_frames=FRAMES)
        refs = [read_mono(os.path.join(args.references, name, st + '.wav'))[:SEGMENT_SAMPLES] for st in stems]
        runs = run_frame(priors, refs, X, args.variant, args.restarts, args.z0)
        for r, run in enumerate(runs):
            print(name, r, [None if x is None else round(x, 2) for x in run['sdr']], flush=True)
        frames.append({'name': name, 'runs': runs})
    results = {rule: {st: [] for st in stems} for rule in RULES}
    for rule in RULES:
        for fr in frames:
            for st, x in zip(stems, fr['runs'][choose(fr['runs'], rule)]['sdr']):
                if x is not None:
                    results[rule][st].append(x)
    lab.print_medians('choice', results, stems)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(frames, f)


if __name__ == '__main__':
    main()
