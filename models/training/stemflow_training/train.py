"""Train one prior and export it.

  python -m stemflow_training.train --stem sine --source synthetic:sine \
      --seconds-of-audio 600 --steps 3000 --out models/priors/sine
  python -m stemflow_training.train --stem sine --out models/priors/sine --export-only

After the flow, the export learns the prior's source-only KL-NMF dictionary (nmf.bin, nmf.py) from
the same training source (48 atoms, 200 updates, up to 20 000 frames of STFT 2048 / 512, seed 3),
again on --export-only; --no-nmf skips it (an existing nmf.bin that matches is then kept).

Objective: negative log-likelihood of dequantised standardised log-magnitudes
x = (ln(|X| + F) - mu_b) / sigma_b + eps, eps ~ N(0, (noise/sigma_b)^2) (noise in
nats of log-magnitude, default 0.1), on random crops of `--crop` frames (even).
Reported in bits per dimension of x: -log p_x(x) / (513 * T * ln 2).
--augment S (default 0) passes each training crop through a random smooth equaliser and level
change first (timbre augmentation, see random_equaliser); the validation figures never are.
Checkpoints: models/training/checkpoints/<stem>/ckpt_<step>.npz (resumed from
the latest automatically; --fresh deletes them first, so that pruning, which keeps the two
highest-numbered files, can never prefer an old run's later steps to the new run's).  They hold
arrays and JSON only (checkpoint.py) and are read without unpickling; old ckpt_<step>.pkl files
are never loaded (a pickle can run code), only reported, and --fresh deletes them too.
"""
import argparse
import glob
import json
import math
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from . import checkpoint, glow, data, nmf
from .stft import BINS

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGMA_MIN = 0.25   # nats; per-bin std of ln(|X| + F) is clamped below at this


def log(msg):
    print(time.strftime('%H:%M:%S'), msg, flush=True)


CHUNK = 64   # segments per step of the statistics / standardisation (bounds float64 temporaries)


def standardise(mag, norm, floor):
    out = np.empty(mag.shape, dtype=np.float32)
    for i in range(0, len(mag), CHUNK):
        y = np.log(mag[i:i + CHUNK].astype(np.float64) + floor)
        out[i:i + CHUNK] = (y - norm['mu'][None, :, None]) / norm['sigma'][None, :, None]
    return out


def compute_norm(mag, floor):
    s1 = np.zeros(mag.shape[1])
    s2 = np.zeros(mag.shape[1])
    for i in range(0, len(mag), CHUNK):
        y = np.log(mag[i:i + CHUNK].astype(np.float64) + floor)
        s1 += y.sum(axis=(0, 2))
        s2 += (y * y).sum(axis=(0, 2))
    n = mag.shape[0] * mag.shape[2]
    mu = s1 / n
    sigma = np.maximum(np.sqrt(np.maximum(s2 / n - mu * mu, 0.0)), SIGMA_MIN)
    return {'mu': mu.astype(np.float32), 'sigma': sigma.astype(np.float32)}


def random_equaliser(rng, n, strength):
    """Per-example gains in nats of magnitude, [n, BINS]: a smooth random equaliser (a tilt around
    1 kHz, three bell bands on a log-frequency axis) and a level offset.  `strength` 1 = tilt
    ±0.75 dB/octave, bells of N(0, 3 dB) gain and 0.3-1.5 octave width, level ±3 dB; each example is
    left unchanged with probability 1/4.  Timbre augmentation: the prior cannot memorise the few
    soundfonts' exact spectral envelopes, so it has to model the instrument rather than the font."""
    freqs = np.arange(BINS) * (22050.0 / 2) / (BINS - 1)
    octave = np.log2(np.maximum(freqs, 40.0) / 1000.0)[None, :]          # -4.6 .. +3.5
    db = rng.uniform(-0.75, 0.75, (n, 1)) * strength * octave
    for _ in range(3):
        centre = rng.uniform(-4.0, 3.3, (n, 1))
        width = rng.uniform(0.3, 1.5, (n, 1))
        db += rng.normal(0.0, 3.0 * strength, (n, 1)) * np.exp(-0.5 * ((octave - centre) / width) ** 2)
    db += rng.uniform(-3.0, 3.0, (n, 1)) * strength
    db *= (rng.random((n, 1)) < 0.75)
    return db * (math.log(10.0) / 20.0)


def augment(xb, rng, norm, floor, strength):
    """Applies random_equaliser exactly to standardised crops xb [n, BINS, T]: back to magnitudes,
    scale, and standardise again (the floor makes it not a plain shift of x)."""
    mu, sigma = norm['mu'][None, :, None], norm['sigma'][None, :, None]
    mag = np.exp(xb.astype(np.float64) * sigma + mu) - floor
    gain = np.exp(random_equaliser(rng, len(xb), strength))[:, :, None]
    return ((np.log(np.maximum(mag, 0.0) * gain + floor) - mu) / sigma).astype(np.float32)


CKPT_GLOB = 'ckpt_*.npz'
LEGACY_GLOB = 'ckpt_*.pkl'   # the old pickle checkpoints: never loaded


def save_ckpt(ckdir, state):
    os.makedirs(ckdir, exist_ok=True)
    path = os.path.join(ckdir, f"ckpt_{state['step']:07d}.npz")
    checkpoint.write(path, state)   # atomic: path + '.tmp', then os.replace
    for old in sorted(glob.glob(os.path.join(ckdir, CKPT_GLOB)))[:-2]:
        os.remove(old)


def latest_ckpt(ckdir):
    c = sorted(glob.glob(os.path.join(ckdir, CKPT_GLOB)))
    legacy = sorted(glob.glob(os.path.join(ckdir, LEGACY_GLOB)))
    if legacy:
        then = (f"resuming from {os.path.basename(c[-1])} instead (--fresh starts over)" if c else
                "no other checkpoint, so training starts a new model (delete them or pass --fresh "
                "to start over without this notice)")
        print(f"ignoring old pickle checkpoint(s) {', '.join(map(os.path.basename, legacy))} in {ckdir}: "
              f"loading a pickle can run arbitrary code, so they are never read; {then}", flush=True)
    if not c:
        return None
    return checkpoint.read(c[-1])


def plot_curve(hist, path, stem):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if hist['train']:
        s, v = zip(*hist['train'])
        ax.plot(s, v, lw=0.8, label='train (running mean)')
    if hist['valid']:
        s, v = zip(*hist['valid'])
        ax.plot(s, v, 'o-', ms=3, label='valid')
    ax.set_xlabel('step')
    ax.set_ylabel('bits / dim (standardised log-magnitude)')
    ax.set_title(f'prior "{stem}"')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_fns(cfg, lr, total_steps, clip, warmup=200, conditioned=False):
    """The jitted Adam step and loss (bits/dim) of a batch x [B, C, T], or, `conditioned`, of a
    batch (x, noise levels [B]) of a noise-conditioned flow (noise_tune.py)."""
    import jax
    import jax.numpy as jnp

    def loss_fn(params, batch):
        x, noise = batch if conditioned else (batch, None)
        lp = glow.jax_logpx(cfg, params, x, noise)
        return -jnp.mean(lp) / (x.shape[1] * x.shape[2] * math.log(2.0))

    def lr_at(step):
        w = jnp.minimum(1.0, (step + 1) / warmup)
        frac = jnp.clip(step / total_steps, 0.0, 1.0)
        return lr * w * (0.1 + 0.9 * 0.5 * (1 + jnp.cos(jnp.pi * frac)))

    @jax.jit
    def train_step(params, m, v, step, x):
        loss, grads = jax.value_and_grad(loss_fn)(params, x)
        gnorm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
        scale = jnp.minimum(1.0, clip / (gnorm + 1e-12))
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        b1, b2, eps = 0.9, 0.999, 1e-8
        t = step + 1.0
        a = lr_at(step)

        def upd(p, g, m_, v_):
            g = jnp.where(ok, g * scale, 0.0)
            m2 = jnp.where(ok, b1 * m_ + (1 - b1) * g, m_)
            v2 = jnp.where(ok, b2 * v_ + (1 - b2) * g * g, v_)
            p2 = p - jnp.where(ok, a * (m2 / (1 - b1 ** t)) / (jnp.sqrt(v2 / (1 - b2 ** t)) + eps), 0.0)
            return p2, m2, v2
        out = jax.tree_util.tree_map(upd, params, grads, m, v)
        is_leaf = lambda x: isinstance(x, tuple)
        P = jax.tree_util.tree_map(lambda o: o[0], out, is_leaf=is_leaf)
        M = jax.tree_util.tree_map(lambda o: o[1], out, is_leaf=is_leaf)
        V = jax.tree_util.tree_map(lambda o: o[2], out, is_leaf=is_leaf)
        return P, M, V, loss, gnorm

    eval_fn = jax.jit(loss_fn)
    return train_step, eval_fn


def sample_batch(rng, X, batch, crop, noise_x, aug=None):
    """`aug` = (norm, floor, strength) applies `augment` before the dequantisation noise."""
    N, C, T = X.shape
    idx = rng.integers(0, N, batch)
    st = 2 * rng.integers(0, (T - crop) // 2 + 1, batch)
    xb = np.stack([X[i, :, s:s + crop] for i, s in zip(idx, st)])
    if aug is not None and aug[2] > 0:
        xb = augment(xb, rng, *aug)
    return xb + noise_x[None, :, None] * rng.standard_normal(xb.shape).astype(np.float32)


def evaluate(eval_fn, X, noise_x, seed=1234, chunk=4):
    rng = np.random.default_rng(seed)
    tot = 0.0
    for i in range(0, len(X), chunk):
        xb = X[i:i + chunk]
        xb = xb + noise_x[None, :, None] * rng.standard_normal(xb.shape).astype(np.float32)
        tot += float(eval_fn(state_params_holder[0], xb)) * len(xb)
    return tot / len(X)


state_params_holder = [None]


def do_export(state, out, stem, a=None):
    """Exports the flow, then (unless a.no_nmf) learns the NMF dictionary from the run's source."""
    from .export import export_prior
    cfg = glow.Config.from_dict(state['cfg'])
    info = dict(state['info'])
    info['steps'] = int(state['step'])
    m = export_prior(out, stem, cfg, state['params'], state['norm'], info)
    if state['hist']['train'] or state['hist']['valid']:
        plot_curve(state['hist'], os.path.join(out, 'training_curve.png'), stem)
    log(f"exported {out}: " + ", ".join(f"{k} {os.path.getsize(os.path.join(out, v['file']))/1e6:.2f} MB"
                                         for k, v in m['graphs'].items()))
    if a is not None and not a.no_nmf:
        export_nmf(out, state['info'].get('source'), a)


def export_nmf(out, source, a):
    """Learns the source-only NMF dictionary from the same training source as the flow
    (nmf.source_dictionary: deterministic, seed 3) and writes it into the prior (nmf.bin and the
    manifest's `nmf` section). A source that cannot be read any more (an --export-only run
    elsewhere) leaves the prior as export_prior wrote it, with the dictionary it had, if any."""
    if not source:
        log("NMF dictionary not learned: the checkpoint records no training source")
        return
    t = time.time()
    try:
        W, training = nmf.source_dictionary(source, a.nmf_atoms, a.nmf_iters, a.nmf_max_frames)
    except (SystemExit, OSError, ValueError) as e:
        kept = 'kept the one it had' if nmf.existing_section(out) else 'the prior has none'
        log(f"NMF dictionary not learned from {source} ({e}); {kept}")
        return
    nmf.write_dictionary(out, W, nmf.N_FFT, nmf.HOP, training)
    log(f"NMF dictionary: {W.shape[1]} atoms x {W.shape[0]} bins from {training['frames']} frames of "
        f"{source}, learned in {time.time() - t:.1f} s ({os.path.join(out, nmf.FILE)})")


def parse_args(argv=None):
    """The command line (see the module doc)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--stem', required=True)
    ap.add_argument('--source', help='synthetic:KIND or dir:PATH')
    ap.add_argument('--seconds-of-audio', type=float, default=600.0)
    ap.add_argument('--valid-seconds', type=float, default=60.0)
    ap.add_argument('--steps', type=int, default=3000)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--crop', type=int, default=64)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--clip', type=float, default=5.0)
    ap.add_argument('--noise', type=float, default=0.1, help='dequantisation noise, nats of log-magnitude')
    ap.add_argument('--augment', type=float, default=0.0,
                    help='timbre augmentation strength (random smooth equaliser and level on each training '
                         'crop, see random_equaliser; 0 = off, 1 = tilt ±0.75 dB/oct, bells N(0, 3 dB), level ±3 dB)')
    ap.add_argument('--flow-steps', type=int, default=8)
    ap.add_argument('--hidden', type=int, default=32)
    ap.add_argument('--group-size', type=int, default=38)
    ap.add_argument('--ckpt-every', type=int, default=250)
    ap.add_argument('--eval-every', type=int, default=250)
    ap.add_argument('--max-minutes', type=float, default=None, help='stop (and export) after this wall time')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', required=True)
    ap.add_argument('--ckpt-dir', default=None)
    ap.add_argument('--export-only', action='store_true')
    ap.add_argument('--fresh', action='store_true',
                    help='start over: delete this stem\'s existing checkpoints first')
    ap.add_argument('--no-nmf', action='store_true',
                    help='do not learn the NMF dictionary (nmf.bin) after exporting the flow')
    ap.add_argument('--nmf-atoms', type=int, default=nmf.ATOMS, help='NMF dictionary atoms')
    ap.add_argument('--nmf-iters', type=int, default=nmf.ITERS, help='NMF multiplicative updates')
    ap.add_argument('--nmf-max-frames', type=int, default=nmf.MAX_FRAMES,
                    help='NMF learning frames (STFT 2048 / 512, non-silent)')
    return ap.parse_args(argv)


def resume(a, ckdir):
    """The checkpoint to resume from (None for a new model); --fresh deletes the old ones first."""
    if a.fresh and not a.export_only:
        for old in glob.glob(os.path.join(ckdir, CKPT_GLOB)) + glob.glob(os.path.join(ckdir, LEGACY_GLOB)):
            os.remove(old)
            print(f"--fresh: removed {old}", flush=True)
    return None if a.fresh else latest_ckpt(ckdir)


def prepare_data(a, norm, cfg, source, t0):
    """Load the source's magnitudes and standardise them with `norm` (a resumed or exported
    model's), or with statistics of the training data when it is None:
    (norm, training x, validation x, the training subset evaluated, dequantisation noise in x,
    description of the data)."""
    mag_tr, mag_va, desc = data.load_source(source, a.seconds_of_audio, a.valid_seconds)
    log(f"data: {desc}; train {mag_tr.shape}, valid {mag_va.shape} ({time.time() - t0:.1f} s)")
    if norm is None:
        norm = compute_norm(mag_tr, cfg.floor)
    Xtr = standardise(mag_tr, norm, cfg.floor)
    Xva = standardise(mag_va, norm, cfg.floor)
    del mag_tr, mag_va
    noise_x = (a.noise / norm['sigma']).astype(np.float32)
    return norm, Xtr, Xva, Xtr[:len(Xva)], noise_x, desc


def new_state(a, cfg, norm, Xtr, noise_x, source, desc, augment_strength):
    """A new model's training state: seeded initial weights (ActNorm initialised on a batch),
    zero Adam moments, empty history, and the run's settings in `info`."""
    import jax
    rng = np.random.default_rng(a.seed)
    params = glow.init_params(cfg, rng)
    params = glow.jax_actnorm_init(cfg, params, sample_batch(rng, Xtr, 64, a.crop, noise_x))
    zeros = lambda p: jax.tree_util.tree_map(lambda q: np.zeros_like(q), p)
    state = {'step': 0, 'params': params, 'm': zeros(params), 'v': zeros(params), 'norm': norm,
             'cfg': cfg.to_dict(), 'hist': {'train': [], 'valid': []},
             'info': {'source': source, 'data': desc, 'batch': a.batch, 'crop_frames': a.crop,
                      'lr': a.lr, 'dequantisation_noise_nats': a.noise, 'sigma_min': SIGMA_MIN,
                      'augment': augment_strength,
                      'bits_per_dim_of': 'dequantised standardised log-magnitude x'}}
    log(f"new model: {glow.param_count(params)} parameters, cfg {cfg.to_dict()}")
    return state


def run_eval(eval_fn, params, Xva, Xtr_eval, noise_x):
    """(validation, training) bits/dim of the current weights."""
    state_params_holder[0] = params
    return evaluate(eval_fn, Xva, noise_x), evaluate(eval_fn, Xtr_eval, noise_x)


def train_loop(a, state, cfg, Xtr, Xva, Xtr_eval, noise_x, aug, ckdir, t0):
    """Adam steps from the state's step to --steps (or --max-minutes): logs every 50 steps,
    evaluates every --eval-every, checkpoints every --ckpt-every; the state holds the end point.
    Returns (final weights, eval_fn)."""
    import jax
    import jax.numpy as jnp
    train_step, eval_fn = build_fns(cfg, a.lr, a.steps, a.clip)
    params = jax.tree_util.tree_map(jnp.asarray, state['params'])
    m = jax.tree_util.tree_map(jnp.asarray, state['m'])
    v = jax.tree_util.tree_map(jnp.asarray, state['v'])
    step = state['step']
    rng = np.random.default_rng([a.seed, step])
    run, n_run = 0.0, 0
    t_first = None

    def snapshot():
        state.update(step=step, params=jax.tree_util.tree_map(np.asarray, params),
                     m=jax.tree_util.tree_map(np.asarray, m), v=jax.tree_util.tree_map(np.asarray, v))

    while step < a.steps:
        xb = sample_batch(rng, Xtr, a.batch, a.crop, noise_x, aug)
        params, m, v, loss, gn = train_step(params, m, v, jnp.float32(step), xb)
        step += 1
        if t_first is None:
            loss.block_until_ready()
            t_first = time.time()
            steps_first = step
        lf = float(loss)
        if math.isfinite(lf):
            run += lf
            n_run += 1
        if step % 50 == 0 and n_run:
            state['hist']['train'].append((step, run / n_run))
            sps = (step - steps_first) / max(1e-9, time.time() - t_first)
            log(f"step {step} train {run / n_run:.4f} bits/dim |g| {float(gn):.2f} {sps:.2f} steps/s")
            state['info']['steps_per_second'] = round(sps, 3)
            run, n_run = 0.0, 0
        out_of_time = a.max_minutes is not None and (time.time() - t0) / 60 > a.max_minutes
        if step % a.eval_every == 0 or step == a.steps or out_of_time:
            va, tr = run_eval(eval_fn, params, Xva, Xtr_eval, noise_x)
            state['hist']['valid'].append((step, va))
            state['info']['train_bits_per_dim'] = round(tr, 4)
            state['info']['valid_bits_per_dim'] = round(va, 4)
            log(f"step {step} eval: train {tr:.4f} valid {va:.4f} bits/dim")
        if step % a.ckpt_every == 0 or step == a.steps or out_of_time:
            snapshot()
            save_ckpt(ckdir, state)
        if out_of_time:
            log(f"--max-minutes reached at step {step}")
            break
    snapshot()
    return params, eval_fn


def main(argv=None):
    """Train (new or resumed) and export; --export-only exports the latest checkpoint."""
    a = parse_args(argv)
    ckdir = a.ckpt_dir or os.path.join(HERE, 'checkpoints', a.stem)
    state = resume(a, ckdir)
    if a.export_only:
        if state is None:
            raise SystemExit(f"no checkpoint in {ckdir}")
        state_params_holder[0] = state['params']
        do_export(state, a.out, a.stem, a)
        return
    if not a.source and state is None:
        raise SystemExit("--source is required")

    import jax  # noqa: F401  (JAX loads before the wall clock of the run starts)
    import jax.numpy  # noqa: F401
    t0 = time.time()
    source = a.source or state['info']['source']
    cfg = glow.Config(steps=a.flow_steps, hidden=a.hidden, group_size=a.group_size) if state is None \
        else glow.Config.from_dict(state['cfg'])
    augment_strength = a.augment if state is None else state['info'].get('augment', 0.0)
    norm, Xtr, Xva, Xtr_eval, noise_x, desc = prepare_data(
        a, None if state is None else state['norm'], cfg, source, t0)
    aug = (norm, cfg.floor, augment_strength)
    if state is None:
        state = new_state(a, cfg, norm, Xtr, noise_x, source, desc, augment_strength)
    else:
        log(f"resumed from step {state['step']}")

    params, eval_fn = train_loop(a, state, cfg, Xtr, Xva, Xtr_eval, noise_x, aug, ckdir, t0)
    if 'train_bits_per_dim' not in state['info']:
        va, tr = run_eval(eval_fn, params, Xva, Xtr_eval, noise_x)
        state['info']['train_bits_per_dim'] = round(tr, 4)
        state['info']['valid_bits_per_dim'] = round(va, 4)
    state['info']['wall_minutes'] = round((time.time() - t0) / 60, 2)
    save_ckpt(ckdir, state)
    state_params_holder[0] = params
    do_export(state, a.out, a.stem, a)


if __name__ == '__main__':
    main()
