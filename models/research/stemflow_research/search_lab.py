"""Search lab: screen variants of the latent search on 5-s frames, straight through onnxruntime.

    cd models/research && PYTHONPATH=../training python -m stemflow_research.search_lab \
        --mixtures DIR --references DIR --priors DIR \
        [--limit N] [--frames-per-piece 3] \
        --variant 'init=zero,lr=0.01,it=150' --variant 'init=split,pen=latent,w=1' ...

This is a screening tool: it separates non-overlapping 5-s frames at 22.05 kHz (no crossfades,
no resampling) with the shipped graphs and scores each frame by SDR (evaluate.py's definition).
The figures quoted for a setting come from `evaluate.py`, which runs the Rust CLI.

Variant keys (defaults in brackets):
  init  zero | split | equal | noise [zero] (noise: z = z0·ε, ε ~ N(0, I) with seed `seed`)  start latents: z = 0; encode of the mixture split in the
                                        proportions of the priors' z = 0 outputs; encode of X/N
  lr    Adam step [0.01]     it  iterations [150]
  sched const | cos | lin [const]: the step falls from lr to lrend over the iterations, along a
        half cosine or a straight line      lrend  the last step [0.001]
  pen   none | smap | xmap | latent [none]
        smap: − γ Σ log p(s) (the paper's MAP, density of magnitudes)
        xmap: − γ Σ log p(x) (density of the flow's data space: the magnitude-map Jacobian
              −Σ ln s is cancelled by adding −γ/s to the cotangent)
        latent: + w/2 Σ ‖z‖² (a Gaussian prior on the latents, no Jacobian term)
  w     weight of the penalty [0]
  cal   N > 0: scale each prior's output per bin by E[f(z)] / f(0), estimated from N latent
        samples z ~ N(0, I) (z = 0 decodes to the mode in the log domain, below the mean level,
        most for sources with a wide level spread such as drums) [0]
  calq  q > 0: a robust level instead of the mean: the mean of each bin's samples below their
        (1 − q) quantile (a trimmed mean; the mean of a wide level distribution is set by rare
        loud events) [0]
  calp  exponent applied to those gains (1 = the mean level, 0 = none) [1]
  norm  1: divide the data term by mean(X), so the weight is level-independent [1]
  opt   adam | gd [adam]: gd = gradient descent with momentum b1, the step lr·g/rms(g) where the
        RMS is over every latent of every stem, so coordinates move in proportion to their
        gradient (Adam moves every coordinate by about lr, informative or not)
  beta  the data term's β-divergence: 1 = generalised KL (the paper), 0 = Itakura–Saito,
        2 = squared error; its gradient is S^(β−2)·(S − X) [1]
  eqb   N > 0: adaptive equalisation — each stem's output is scaled per band by e^θᵢ (N
        log-spaced bands; 513 = every bin), θ searched with the latents (Adam, step eqlr) from
        θ = 0, i.e. from the calibration gains; the frame's own time structure decides each
        stem's level in each band [0]
  eqlr  Adam step of θ [0.01]    eqw  penalty eqw/2 · Σ θ² per time-frequency cell [0]
  ratio γ > 0: MAP on a likelihood ratio, − γ Σ [log pᵢ(sᵢ) − log qᵢ(sᵢ)], qᵢ = independent
        per-bin log-normal fitted to the prior's own latent samples: what the flow knows beyond
        each bin's level distribution (the quiet-spectrum preference of log p cancels) [0]
  restarts  R > 1: R searches, the first from `init`, the others from z0·ε (seeds 1 … R−1);
        the stems are the mean of the R estimates [1]
  post  K > 0: output each stem as the mean of K decodes of z* + τ·ε around the search's end
        point (a local posterior mean instead of the point estimate) [0]
  tau   the spread τ of those latents [0.5]    postcal  exponent on the gains at the output [1]
Every variant is scored with masks sᵢ^p / Σ sⱼ^p for each p of --powers (default 1 and 2).
"""
import argparse
import glob
import json
import os
import time

import numpy as np

from stemflow_training.audio_io import read_mono
from stemflow_training.stft import FRAMES, SEGMENT_SAMPLES, istft, stft

from .evaluate import EPS, SILENT_DBFS

FLOOR = 1e-5
LATENT_BOUND = 8.0


def parse_variant(spec):
    v = dict(init='zero', lr=0.01, it=150, pen='none', w=0.0, norm=1, cal=0, calp=1.0, calq=0.0, beta=1.0, opt='adam', eqb=0, eqlr=0.01, eqw=0.0, ratio=0.0, post=0, tau=0.5, postcal=1.0, z0=0.0, seed=0, restarts=1, sched='const', lrend=0.001)
    if spec:
        for part in spec.split(','):
            k, val = part.split('=')
            if k not in v:
                raise SystemExit(f'unknown variant key {k!r}')
            v[k] = type(v[k])(val) if not isinstance(v[k], str) else val
    return v


class Prior:
    def __init__(self, folder):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.add_session_config_entry('session.intra_op.allow_spinning', '0')
        so.add_session_config_entry('session.inter_op.allow_spinning', '0')
        mk = lambda f: ort.InferenceSession(os.path.join(folder, f), so,
                                            providers=['CPUExecutionProvider'])
        self.dec, self.grad, self.enc = mk('decode.onnx'), mk('grad.onnx'), mk('encode.onnx')
        # the split gradient (CONTRACT.md "forward" and "backward"), when the prior has it
        split = all(os.path.exists(os.path.join(folder, f)) for f in ('forward.onnx', 'backward.onnx'))
        self.fwd, self.bwd = (mk('forward.onnx'), mk('backward.onnx')) if split else (None, None)
        self.saved = None

    def forward(self, z):
        """f(z), keeping what `backward` needs at this z (a plain decode without the split)."""
        if self.fwd is None:
            return self.decode(z)
        names = [o.name for o in self.fwd.get_outputs()]
        outs = dict(zip(names, self.fwd.run(None, {'z': z[None]})))
        del outs['logp']
        self.saved = outs
        return outs['s'][0]

    def backward(self, z, g, gamma):
        """∂/∂z of <g, f(z)> − γ log p at the z of the last `forward`."""
        if self.fwd is None:
            return self.vjp(z, g, gamma)[1]
        feed = dict(self.saved, z=z[None], g=g[None].astype(np.float32),
                    gamma=np.array([gamma], np.float32))
        self.saved = None
        return self.bwd.run(None, feed)[0][0]

    def decode(self, z):
        return self.dec.run(['s'], {'z': z[None]})[0][0]

    def vjp(self, z, g, gamma):
        s, gz, lp = self.grad.run(['s', 'grad_z', 'logp'],
                                  {'z': z[None], 'g': g[None].astype(np.float32),
                                   'gamma': np.array([gamma], np.float32)})
        return s[0], gz[0], float(lp[0])

    def encode(self, s):
        return self.enc.run(['z'], {'s': s[None].astype(np.float32)})[0][0]


_SAMPLES = {}
_CAL = {}


def latent_samples(prior, shape, n):
    """f(z) for n latent samples z ~ N(0, I) (seed 0), side by side along time; cached per prior.
    Both the level calibration and the likelihood-ratio marginal are statistics of these."""
    key = (id(prior), shape, n)
    if key not in _SAMPLES:
        rng = np.random.default_rng(0)
        _SAMPLES[key] = np.concatenate([prior.decode(rng.standard_normal(shape).astype(np.float32)).astype(np.float64)
                                        for _ in range(n)], axis=1)
    return _SAMPLES[key]


def marginal(prior, shape, n=4):
    """Per-bin mean and variance of ln s over n latent samples (the prior's level marginal)."""
    ls = np.log(np.maximum(latent_samples(prior, shape, n), 1e-30))
    return (ls.mean(axis=1, keepdims=True).astype(np.float32),
            np.maximum(ls.var(axis=1, keepdims=True), 1e-4).astype(np.float32))


def band_index(bins, n):
    """Band of each bin for n log-spaced bands (n ≥ bins: one band per bin)."""
    if n >= bins:
        return np.arange(bins)
    edges = np.unique(np.round(np.geomspace(1, bins, n)).astype(int))
    return np.searchsorted(edges, np.arange(bins), side='right')


def calibration(prior, shape, n, q=0.0):
    key = (id(prior), shape, n, q)
    if key not in _CAL:
        _CAL[key] = _calibration(prior, shape, n, q)
    return _CAL[key]


def _calibration(prior, shape, n, q):
    zero = prior.decode(np.zeros(shape, np.float32)).astype(np.float64).mean(axis=1)
    samples = latent_samples(prior, shape, n)
    if q > 0:
        cut = np.quantile(samples, 1.0 - q, axis=1, keepdims=True)
        mean = np.nanmean(np.where(samples <= cut, samples, np.nan), axis=1)
    else:
        mean = samples.mean(axis=1)
    return (mean / zero)[:, None].astype(np.float32)


def step_size(v, it):
    """Adam's step at iteration `it` (1-based) of v['it']: v['lr'] throughout (sched=const), or
    from v['lr'] down to v['lrend'] along a half cosine (cos) or a straight line (lin)."""
    if v['sched'] == 'const' or v['it'] < 2:
        return v['lr']
    u = (it - 1) / (v['it'] - 1)
    w = 0.5 * (1 + np.cos(np.pi * u)) if v['sched'] == 'cos' else 1 - u
    return v['lrend'] + (v['lr'] - v['lrend']) * w


def equalised(base_gains, theta, band):
    """Each stem's gains with its per-band equalisation e^θ applied."""
    return [g * np.exp(th[band])[:, None].astype(np.float32) for g, th in zip(base_gains, theta)]


def separate(priors, M, v):
    if v['restarts'] > 1:
        # an ensemble: the search from v's own start, then from z0·ε with seeds 1 … R−1; the
        # stems' estimates are averaged (the masks are made from the averages)
        runs = [separate(priors, M, dict(v, restarts=1))]
        runs += [separate(priors, M, dict(v, restarts=1, init='noise', seed=r)) for r in range(1, v['restarts'])]
        s = [np.mean([run[0][i].astype(np.float64) for run in runs], axis=0).astype(np.float32)
             for i in range(len(priors))]
        return s, runs[0][1], runs[0][2], runs[0][3]
    n = len(priors)
    shape = M.shape
    cal = [calibration(p, shape, v['cal'], v['calq']) ** v['calp'] if v['cal'] else np.ones((shape[0], 1), np.float32) for p in priors]
    if v['init'] == 'zero':
        z = [np.zeros(shape, np.float32) for _ in priors]
    elif v['init'] == 'noise':
        rng = np.random.default_rng(v['seed'])
        z = [(v['z0'] * rng.standard_normal(shape)).astype(np.float32) for _ in priors]
    else:
        if v['init'] == 'split':
            s0 = [p.decode(np.zeros(shape, np.float32)) for p in priors]
            tot = sum(s0)
            targets = [M * s / tot for s in s0]
        else:
            targets = [M / n for _ in priors]
        z = [np.clip(p.encode(t + FLOOR), -LATENT_BOUND, LATENT_BOUND) for p, t in zip(priors, targets)]
    m = [np.zeros(shape, np.float32) for _ in priors]
    vv = [np.zeros(shape, np.float32) for _ in priors]
    b1, b2 = 0.9, 0.999
    scale = M.size / max(float(M.sum()), 1e-12) if v['norm'] else 1.0
    w, pen = v['w'], v['pen']
    gamma = w if pen in ('smap', 'xmap') else 0.0
    eqb = v['eqb']
    if eqb:
        band = band_index(shape[0], eqb)
        nb = int(band.max()) + 1
        cells = np.bincount(band, minlength=nb).astype(np.float64) * shape[1]
        theta = [np.zeros(nb) for _ in priors]
        tm = [np.zeros(nb) for _ in priors]
        tv = [np.zeros(nb) for _ in priors]
    ratio = v['ratio']
    if ratio:
        marg = [marginal(p, shape) for p in priors]
        gamma = ratio
    base_cal = cal
    for it in range(1, v['it'] + 1):
        lr = step_size(v, it)
        if eqb:
            cal = equalised(base_cal, theta, band)
        raw = [p.forward(zi) for p, zi in zip(priors, z)]
        s = [r * c for r, c in zip(raw, cal)]
        S = sum(s)
        if v['beta'] == 1.0:
            g = (1.0 - M / (S + 1e-6)) * scale
        else:
            g = (S + 1e-6) ** (v['beta'] - 2.0) * (S - M) * scale
        grads = []
        for i, p in enumerate(priors):
            gi = g - gamma / np.maximum(s[i], 1e-30) if pen == 'xmap' else g
            gi = gi * cal[i]
            if ratio:
                mu, var = marg[i]
                r = np.maximum(raw[i], 1e-30)
                gi = gi + ratio * (-(np.log(r) - mu) / (var * r) - 1.0 / r)
            gz = p.backward(z[i], gi, gamma)
            if pen == 'latent':
                gz = gz + w * z[i]
            grads.append(gz)
        if eqb:
            for i in range(n):
                gth = np.bincount(band, weights=(g * s[i]).sum(axis=1).astype(np.float64), minlength=nb) \
                    + v['eqw'] * cells * theta[i]
                tm[i] = b1 * tm[i] + (1 - b1) * gth
                tv[i] = b2 * tv[i] + (1 - b2) * gth * gth
                theta[i] = theta[i] - v['eqlr'] * (tm[i] / (1 - b1 ** it)) / (np.sqrt(tv[i] / (1 - b2 ** it)) + 1e-8)
        if v['opt'] == 'gd':
            rms = np.sqrt(np.mean([np.mean(gz.astype(np.float64) ** 2) for gz in grads])) + 1e-30
        for i, gz in enumerate(grads):
            if v['opt'] == 'gd':
                m[i] = b1 * m[i] + (1 - b1) * gz / rms
                step = lr * m[i] / (1 - b1 ** it)
            else:
                m[i] = b1 * m[i] + (1 - b1) * gz
                vv[i] = b2 * vv[i] + (1 - b2) * gz * gz
                mh = m[i] / (1 - b1 ** it)
                vh = vv[i] / (1 - b2 ** it)
                step = lr * mh / (np.sqrt(vh) + 1e-8)
            z[i] = np.clip(z[i] - step, -LATENT_BOUND, LATENT_BOUND).astype(np.float32)
    if eqb:
        cal = equalised(base_cal, theta, band)
    if v['post']:
        # a local posterior-mean estimate: each stem's output averaged over K latents drawn
        # around the search's end point, z* + τ·ε (seed 1); the gains are raised to postcal
        rng = np.random.default_rng(1)
        s = []
        for p, zi, c in zip(priors, z, cal):
            acc = np.zeros(shape, np.float64)
            for _ in range(v['post']):
                acc += p.decode((zi + v['tau'] * rng.standard_normal(shape)).astype(np.float32))
            s.append((acc / v['post']).astype(np.float32) * c ** v['postcal'])
    else:
        s = [p.decode(zi) * c for p, zi, c in zip(priors, z, cal)]
    zsq = [float(np.mean(zi ** 2)) for zi in z]
    return s, zsq, z, cal


def sdr(ref, est):
    if 10 * np.log10(np.mean(ref ** 2) + 1e-20) < SILENT_DBFS:
        return None
    return float(10 * np.log10((np.sum(ref ** 2) + EPS) / (np.sum((ref - est) ** 2) + EPS)))


def print_medians(title, results, stems):
    """A markdown table: one row per key of `results` ({stem: [SDR, ...]}), median per stem and
    their average."""
    print(f'\n| {title} | ' + ' | '.join(stems) + ' | avg |')
    print('|---|' + '---|' * (len(stems) + 1))
    for key, per_stem in results.items():
        med = [float(np.median(per_stem[st])) if per_stem[st] else float('nan') for st in stems]
        print(f'| {key} | ' + ' | '.join(f'{x:.2f}' for x in med) + f' | {np.mean(med):.2f} |')


def add_set_args(ap, limit):
    """The options every lab shares: which pieces, references, priors and stems."""
    ap.add_argument('--mixtures', required=True)
    ap.add_argument('--references', required=True)
    ap.add_argument('--priors', required=True)
    ap.add_argument('--stems', default='bass,drums,guitar,piano')
    ap.add_argument('--limit', type=int, default=limit)
    ap.add_argument('--skip', type=int, default=0, help='skip the first N pieces')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set_args(ap, limit=4)
    ap.add_argument('--frames-per-piece', type=int, default=3)
    ap.add_argument('--variant', action='append', default=None)
    ap.add_argument('--powers', default='1,2', help='mask exponents to score')
    ap.add_argument('--json', default=None)
    args = ap.parse_args(argv)
    stems = args.stems.split(',')
    priors = [Prior(os.path.join(args.priors, st)) for st in stems]
    pieces = sorted(glob.glob(os.path.join(args.mixtures, '*.wav')))[args.skip:args.skip + args.limit]
    variants = args.variant or ['']
    powers = [float(x) for x in args.powers.split(',')]
    keys = [f'{spec} p={p:g}' for spec in variants for p in powers]
    results = {key: {st: [] for st in stems} for key in keys}
    for path in pieces:
        name = os.path.splitext(os.path.basename(path))[0]
        mix = read_mono(path)
        refs = {st: read_mono(os.path.join(args.references, name, st + '.wav')) for st in stems}
        for k in range(args.frames_per_piece):
            a, b = k * SEGMENT_SAMPLES, (k + 1) * SEGMENT_SAMPLES
            if b > len(mix):
                break
            X = stft(mix[a:b], n_frames=FRAMES)
            M = np.abs(X).astype(np.float32)
            for spec in variants:
                v = parse_variant(spec)
                t0 = time.time()
                s, zsq, _, _ = separate(priors, M, v)
                for power in powers:
                    key = f'{spec} p={power:g}'
                    sp = [np.maximum(si.astype(np.float64), 0) ** power for si in s]
                    tot = sum(sp) + 1e-30
                    line = []
                    for st, si in zip(stems, sp):
                        est = istft(X * (si / tot), SEGMENT_SAMPLES)
                        val = sdr(refs[st][a:b], est)
                        if val is not None:
                            results[key][st].append(val)
                        line.append(f'{st} {val if val is None else round(val, 2)}')
                    print(f'{name}#{k} [{key}] {time.time() - t0:.0f}s z²={np.round(zsq, 3).tolist()} '
                          + ' '.join(line), flush=True)
    print_medians('variant', results, stems)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f)


if __name__ == '__main__':
    main()
