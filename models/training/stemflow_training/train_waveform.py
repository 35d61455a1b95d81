"""Train a time-domain (waveform) prior, FloWaveNet or μ-law WaveNet, resumably, on this CPU.

    python -m stemflow_training.train_waveform --source toy:sine --out models/priors-time/toy/sine
    python -m stemflow_training.train_waveform --source stems:/data/bass --out DIR   # music stems
    python -m stemflow_training.train_waveform --model wavenet --source toy:sine --out DIR

Data: `toy:<type>` draws the appendix's toy sources (toy_sources.py, the training split);
`stems:<dir>` reads every audio file under dir (mono, resampled to 22.05 kHz) and crops random
windows of it, skipping near-silent ones. Every example is dequantised as 16-bit audio (uniform
noise of one least significant bit), so the density is finite on waves that are exactly periodic.

Optimiser: the appendix's Adam with a fixed five-step decay (the learning rate is multiplied by
GAMMA = 0.6 at 1/6, 2/6 ... 5/6 of the steps); the number of steps, the crop length and the
learning rate are flags (the appendix: 150 000 steps, lr 1e-4, batch 5 of 16 384 samples, which
this CPU cannot do: models/EXPERIMENTS.md, "Time-domain priors on the toy set: the sizes this
CPU allows, and every result", says what was run).

Checkpoints (checkpoint.py, atomic) every --ckpt-every steps in OUT/ckpt; a rerun with the same
OUT resumes from the latest one. `--noise-tune` fine-tunes an exported prior's flow conditioned on
ln sigma (flowavenet.conditioned) over a ladder of noise levels instead, from its weights.
At the end the prior is exported (export_waveform.py) with its learning curve (curve.json, .png).
"""
import argparse
import glob
import json
import math
import os
import time

import numpy as np

from . import checkpoint, flowavenet, toy_sources, wavenet
from .stft import SAMPLE_RATE

GAMMA = 0.6
DECAYS = 5
LSB = 1.0 / 32768.0
NOISE_LADDER = (0.1, 0.03, 0.01, 0.003, 0.001)   # waveform amplitude units, descending


def lr_at(lr, step, total):
    """The five-step schedule: lr * GAMMA ** k in the k-th sixth of the run."""
    return lr * GAMMA ** min(DECAYS, int((DECAYS + 1) * step / max(total, 1)))


class ToyData:
    """Training crops of one toy source type; held-out frames from the held-out split."""

    def __init__(self, kind):
        self.kind = kind
        self.next_index = 0

    def batch(self, rng, batch, crop):
        out = []
        for _ in range(batch):
            x, _ = toy_sources.example(self.kind, 'train', int(rng.integers(0, 2 ** 31)))
            s = int(rng.integers(0, toy_sources.FRAME - crop + 1))
            out.append(x[s:s + crop])
        return np.stack(out)

    def heldout(self, count):
        return toy_sources.examples(self.kind, 'heldout', count)

    def describe(self):
        return f"toy:{self.kind} (toy_sources.py, seed {toy_sources.SEED})"


class StemData:
    """Random windows of isolated recordings (every audio file under a folder), near-silent
    windows skipped. Every tenth file (in name order) is held out when there are ten or more and
    the held-out ones can hold a full frame (a folder of short segments, such as the renderer's
    5-s ones); otherwise the last tenth of each file in time."""

    def __init__(self, folder, silence_rms=1e-3):
        from .audio_io import read_mono
        files = sorted(f for ext in ('wav', 'flac') for f in glob.glob(os.path.join(folder, '**', f'*.{ext}'), recursive=True))
        if not files:
            raise ValueError(f"no .wav or .flac files under {folder}")
        self.folder = folder
        audio = [read_mono(f).astype(np.float32) for f in files]
        by_file = [y for i, y in enumerate(audio) if i % 10 == 9]
        if len(audio) >= 10 and all(len(y) >= toy_sources.FRAME for y in by_file):
            self.train = [y for i, y in enumerate(audio) if i % 10 != 9]
            self.valid = by_file
        else:
            self.train = [y[:int(len(y) * 0.9)] for y in audio]
            self.valid = [y[int(len(y) * 0.9):] for y in audio]
        self.silence_rms = silence_rms

    def batch(self, rng, batch, crop):
        return self.windows(self.train, rng, batch, crop)

    def heldout(self, count, n=toy_sources.FRAME):
        return self.windows(self.valid, np.random.default_rng(7), count, n)

    def windows(self, ys, rng, count, n):
        """`count` random non-silent windows of n samples of the recordings ys."""
        out, tries = [], 0
        while len(out) < count and tries < 1000 * count:
            tries += 1
            y = ys[int(rng.integers(0, len(ys)))]
            if len(y) < n:
                continue
            s = int(rng.integers(0, len(y) - n + 1))
            w = y[s:s + n]
            if np.sqrt(np.mean(w * w)) > self.silence_rms:
                out.append(w)
        if len(out) < count:
            raise ValueError(f"{self.folder}: found {len(out)} of {count} non-silent windows of {n} samples")
        return np.stack(out)

    def describe(self):
        return f"stems:{self.folder}"


def data_source(spec):
    kind, _, arg = spec.partition(':')
    if kind == 'toy':
        if arg not in toy_sources.KINDS:
            raise ValueError(f"--source toy:<type>: expected one of {', '.join(toy_sources.KINDS)}, found {arg!r}")
        return ToyData(arg)
    if kind == 'stems':
        return StemData(arg)
    raise ValueError(f"--source: expected toy:<type> or stems:<folder>, found {spec!r}")


def dequantise(rng, x):
    return x + (rng.uniform(-0.5, 0.5, x.shape) * LSB).astype(np.float32)


MODELS = {'flowavenet': flowavenet, 'wavenet': wavenet}


def zeros_like(tree):
    """A tree of numpy zeros shaped like `tree` (Adam's moments)."""
    if isinstance(tree, dict):
        return {k: zeros_like(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [zeros_like(v) for v in tree]
    return np.zeros_like(tree)


def build_step(model, cfg, conditioned):
    """Jitted Adam step on bits per sample, with gradient clipping and a skip of non-finite
    steps, and the matching evaluation."""
    import jax
    import jax.numpy as jnp

    def loss_fn(params, x, noise):
        lp = model.jax_logpx(cfg, params, x, noise if conditioned else None)
        return -jnp.mean(lp) / (x.shape[-1] * math.log(2.0))

    @jax.jit
    def step_fn(params, m, v, t, lr, x, noise):
        loss, g = jax.value_and_grad(loss_fn)(params, x, noise)
        gn = jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(g)))
        ok = jnp.isfinite(loss) & jnp.isfinite(gn)
        scale = jnp.minimum(1.0, 100.0 / (gn + 1e-12))
        b1, b2 = 0.9, 0.999

        def upd(p, g_, m_, v_):
            g_ = jnp.where(ok, g_ * scale, 0.0)
            m2 = jnp.where(ok, b1 * m_ + (1 - b1) * g_, m_)
            v2 = jnp.where(ok, b2 * v_ + (1 - b2) * g_ * g_, v_)
            step = lr * (m2 / (1 - b1 ** t)) / (jnp.sqrt(v2 / (1 - b2 ** t)) + 1e-8)
            return p - jnp.where(ok, step, 0.0), m2, v2
        out = jax.tree_util.tree_map(upd, params, g, m, v)
        leaf = lambda o: isinstance(o, tuple)
        pick = lambda i: jax.tree_util.tree_map(lambda o: o[i], out, is_leaf=leaf)
        return pick(0), pick(1), pick(2), loss, gn

    eval_fn = jax.jit(loss_fn)
    return step_fn, eval_fn


def evaluate(eval_fn, params, X, noise=None, chunk=5):
    """Mean bits per sample of X [N, n] (dequantised with a fixed seed; `noise` adds sigma)."""
    rng = np.random.default_rng(1234)
    tot = 0.0
    for i in range(0, len(X), chunk):
        xb = dequantise(rng, X[i:i + chunk][:, None, :])
        sig = np.full(len(xb), noise if noise else 1.0, np.float32)
        if noise:
            xb = xb + noise * rng.standard_normal(xb.shape).astype(np.float32)
        tot += float(eval_fn(params, xb, sig)) * len(xb)
    return tot / len(X)


def plot_curve(hist, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h['step'] for h in hist['train']], [h['bits'] for h in hist['train']], lw=0.6, label='train (batch)')
    if hist['valid']:
        ax.plot([h['step'] for h in hist['valid']], [h['bits'] for h in hist['valid']], 'o-', label='held-out')
    ax.set_xlabel('step')
    ax.set_ylabel('NLL, bits per sample')
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--source', required=True, help='toy:<type> or stems:<folder>')
    ap.add_argument('--out', required=True, help='prior folder to export (its ckpt/ holds the checkpoints)')
    ap.add_argument('--stem', help='stem name (default: the toy type or the folder name)')
    ap.add_argument('--model', choices=sorted(MODELS), default='flowavenet')
    ap.add_argument('--blocks', type=int, help='default: 4 (FloWaveNet), 1 (WaveNet)')
    ap.add_argument('--flows', type=int, default=6, help='FloWaveNet flows per block')
    ap.add_argument('--layers', type=int, help='layers per WaveNet (block); default 4 (FloWaveNet), 8 (WaveNet)')
    ap.add_argument('--width', type=int, help='residual width; default 16 (FloWaveNet), 32 (WaveNet)')
    ap.add_argument('--steps', type=int, default=1200)
    ap.add_argument('--batch', type=int, default=5)
    ap.add_argument('--crop', type=int, default=4096)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--ckpt-every', type=int, default=100)
    ap.add_argument('--eval-every', type=int, default=200)
    ap.add_argument('--heldout', type=int, default=20, help='held-out frames of 16 384 samples for the curve')
    ap.add_argument('--noise-tune', action='store_true',
                    help='fine-tune the exported prior in --out conditioned on the noise ladder')
    return ap.parse_args(argv)


def latest(ckdir):
    c = sorted(glob.glob(os.path.join(ckdir, 'ckpt_*.npz')))
    return checkpoint.read(c[-1]) if c else None


def save(ckdir, state):
    os.makedirs(ckdir, exist_ok=True)
    checkpoint.write(os.path.join(ckdir, f"ckpt_{state['step']:07d}.npz"), state)
    for old in sorted(glob.glob(os.path.join(ckdir, 'ckpt_*.npz')))[:-2]:
        os.remove(old)


def new_state(a, data, rng):
    if a.model == 'wavenet':
        cfg = wavenet.Config(blocks=a.blocks or 1, layers=a.layers or 8, width=a.width or 32)
        params = wavenet.init_params(cfg, rng)
    else:
        cfg = flowavenet.Config(blocks=a.blocks or 4, flows=a.flows, layers=a.layers or 4, width=a.width or 16)
        params = flowavenet.init_params(cfg, rng)
        params = flowavenet.actnorm_init(cfg, params, dequantise(rng, data.batch(rng, 4 * a.batch, a.crop)[:, None, :]))
    return dict(step=0, model=a.model, cfg=cfg.to_dict(), params=params, m=zeros_like(params),
                v=zeros_like(params), hist=dict(train=[], valid=[]), minutes=0.0, conditioned=False)


def noise_state(a, rng):
    from .export_waveform import read_params, kind_of
    cfg, params, manifest = read_params(a.out)
    kind = kind_of(cfg)
    params = MODELS[kind].conditioned(params)
    return dict(step=0, model=kind, cfg=cfg.to_dict(), params=params, m=zeros_like(params),
                v=zeros_like(params), hist=dict(train=[], valid=[]), minutes=0.0, conditioned=True)


def main(argv=None):
    a = parse_args(argv)
    from .export_waveform import export_waveform_prior, add_annealing
    data = data_source(a.source)
    stem = a.stem or (a.source.split(':', 1)[1] if a.source.startswith('toy:') else os.path.basename(a.source.rstrip('/')))
    ckdir = os.path.join(a.out, 'ckpt-noise' if a.noise_tune else 'ckpt')
    rng = np.random.default_rng(a.seed)
    state = latest(ckdir)
    if state is None:
        state = noise_state(a, rng) if a.noise_tune else new_state(a, data, rng)
        print(f"new {'noise-conditioned ' if a.noise_tune else ''}{state['model']} {state['cfg']}, "
              f"{MODELS[state['model']].param_count(state['params'])} parameters", flush=True)
    else:
        print(f"resuming {ckdir} at step {state['step']}", flush=True)
        rng = np.random.default_rng([a.seed, state['step']])
    model = MODELS[state.get('model', 'flowavenet')]
    cfg = model.Config.from_dict(state['cfg'])
    step_fn, eval_fn = build_step(model, cfg, state['conditioned'])
    X_held = data.heldout(a.heldout)
    ladder = np.asarray(NOISE_LADDER, np.float32)
    t0, m0 = time.time(), state['minutes']
    while state['step'] < a.steps:
        i = state['step']
        x = dequantise(rng, data.batch(rng, a.batch, a.crop)[:, None, :])
        sig = np.ones(a.batch, np.float32)
        if state['conditioned']:
            sig = ladder[rng.integers(0, len(ladder), a.batch)]
            x = x + sig[:, None, None] * rng.standard_normal(x.shape).astype(np.float32)
        lr = lr_at(a.lr, i, a.steps)
        p, m, v, loss, gn = step_fn(state['params'], state['m'], state['v'], float(i + 1), lr, x, sig)
        state.update(params=p, m=m, v=v, step=i + 1)
        state['hist']['train'].append(dict(step=i + 1, bits=float(loss)))
        if (i + 1) % 20 == 0:
            print(f"step {i + 1} bits/sample {float(loss):.3f} |g| {float(gn):.2f} lr {lr:.2e} "
                  f"{m0 + (time.time() - t0) / 60:.1f} min", flush=True)
        if (i + 1) % a.eval_every == 0 or i + 1 == a.steps:
            noise = float(ladder[-1]) if state['conditioned'] else None
            b = evaluate(eval_fn, state['params'], X_held, noise)
            state['hist']['valid'].append(dict(step=i + 1, bits=b))
            print(f"step {i + 1} held-out bits/sample {b:.3f}", flush=True)
        if (i + 1) % a.ckpt_every == 0 or i + 1 == a.steps:
            state['minutes'] = m0 + (time.time() - t0) / 60
            save(ckdir, jax_to_numpy(state))
    state = jax_to_numpy(state)
    info = dict(data=data.describe(), steps=state['step'], batch=a.batch, crop=a.crop, lr=a.lr,
                schedule=f"x{GAMMA} at each sixth ({DECAYS} decays)", minutes=round(state['minutes'], 1),
                valid_bits_per_sample=state['hist']['valid'][-1]['bits'] if state['hist']['valid'] else None,
                dequantisation="uniform, one 16-bit LSB")
    os.makedirs(a.out, exist_ok=True)
    if state['conditioned']:
        add_annealing(a.out, cfg, state['params'], list(NOISE_LADDER), dict(info, noise_ladder=list(NOISE_LADDER)))
        curve = 'noise-curve'
    else:
        export_waveform_prior(a.out, stem, cfg, state['params'], info)
        curve = 'curve'
    with open(os.path.join(a.out, curve + '.json'), 'w') as f:
        json.dump(state['hist'], f)
    plot_curve(state['hist'], os.path.join(a.out, curve + '.png'), f"{stem}: {state.get('model', 'flowavenet')} {'noise fine-tuning' if state['conditioned'] else 'training'}")
    print(f"exported {a.out}", flush=True)


def jax_to_numpy(state):
    import jax
    return jax.tree_util.tree_map(lambda v: np.asarray(v) if hasattr(v, 'shape') else v, state)


if __name__ == '__main__':
    main()
