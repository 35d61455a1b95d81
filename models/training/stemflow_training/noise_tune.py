"""Fine-tune an exported prior into a noise-conditioned one and export its `noisy_score` graph.

  python -m stemflow_training.noise_tune --prior ../priors/bass \
      --source dir:.cache/data/train/bass,.cache/data/valid/bass --steps 2000 --max-minutes 9
  python -m stemflow_training.noise_tune --prior DIR --export-only   # from the latest checkpoint

Starts from the prior's own graphs (noise_conditioned.prior_parameters) with the noise channel's
weights zero, so step 0 is the exported prior at every level. Each training example draws its
noise level uniformly from `--sigmas` (descending; default Jayaram & Thickstun's ladder, ten
levels 1.0 ... 0.01, geometric) and is x + dequantisation noise + level * eps in the flow's
standardised domain; the loss is -log p_level of it (bits/dim). Adam with a `--warmup`-step
warm-up and the trainer's cosine decay over `--steps`, grad-norm clip. The validation NLL per
level (fixed noise, seeded) is logged before the first step and after the last; both go into the
manifest's `annealing.training`. Checkpoints: checkpoints/<stem>-noise/ (checkpoint.py, resumed
automatically; --fresh starts over). `--out` writes into a copy of the prior folder instead.
"""
import argparse
import math
import os
import shutil
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from . import glow, noise_conditioned, train

CHUNK = 4   # validation segments per evaluation call


def parse_args(argv=None):
    """The command line (see the module doc)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--prior', required=True, help='the exported prior folder to fine-tune')
    ap.add_argument('--out', help='write into this copy of the prior folder (default: --prior itself)')
    ap.add_argument('--source', help='synthetic:KIND or dir:PATH[,VALID] (train.py); default: the '
                                     "prior's training source, recorded in a checkpoint")
    ap.add_argument('--sigmas', default=','.join(f"{v:.6g}" for v in noise_conditioned.LADDER),
                    help='noise levels in standardised units, comma-separated, descending')
    ap.add_argument('--seconds-of-audio', type=float, default=100000.0)
    ap.add_argument('--valid-seconds', type=float, default=150.0)
    ap.add_argument('--steps', type=int, default=2000)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--crop', type=int, default=64)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--clip', type=float, default=5.0)
    ap.add_argument('--noise', type=float, default=None,
                    help="dequantisation noise, nats of log-magnitude (default: the prior's own)")
    ap.add_argument('--ckpt-every', type=int, default=250)
    ap.add_argument('--max-minutes', type=float, default=None, help='stop (and export) after this wall time')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--ckpt-dir', default=None)
    ap.add_argument('--export-only', action='store_true')
    ap.add_argument('--fresh', action='store_true', help="start over: delete this prior's noise checkpoints")
    a = ap.parse_args(argv)
    a.sigmas = [float(v) for v in a.sigmas.split(',')]
    if any(v <= 0 for v in a.sigmas) or any(x <= y for x, y in zip(a.sigmas, a.sigmas[1:])):
        raise SystemExit(f"--sigmas must be positive and strictly descending: {a.sigmas}")
    return a


def noisy_batch(rng, X, a, noise_x, sigmas):
    """A training batch (x~, levels): train.sample_batch's dequantised crops plus level * eps,
    every example's level drawn uniformly from the ladder."""
    xb = train.sample_batch(rng, X, a.batch, a.crop, noise_x)
    lv = rng.choice(np.asarray(sigmas, np.float32), a.batch)
    return xb + lv[:, None, None] * rng.standard_normal(xb.shape).astype(np.float32), lv


def evaluate_levels(eval_fn, params, Xva, noise_x, sigmas):
    """Validation bits/dim at each noise level: every segment, its dequantisation noise and its
    level's noise drawn from seeds fixed per level, so figures before and after compare."""
    out = []
    for i, lv in enumerate(sigmas):
        rng = np.random.default_rng([4321, i])
        level = np.float32(lv)

        def at_level(p, xb):
            noisy = xb + level * rng.standard_normal(xb.shape).astype(np.float32)
            return eval_fn(p, (noisy, np.full(len(xb), level, np.float32)))
        train.state_params_holder[0] = params
        out.append(round(train.evaluate(at_level, Xva, noise_x, seed=1234 + i, chunk=CHUNK), 4))
    return out


def check_start(cfg, params, norm, prior_dir, Xva):
    """How far the conditioned start (noise channel zero) is from the exported prior: the largest
    relative difference of its log p(s) at level 1 from the encode graph's, on one validation
    segment (float32 rounding of the recovered LU parameters only)."""
    import jax
    import jax.numpy as jnp
    import onnxruntime as ort
    from .ops import JaxOps
    s = np.exp(Xva[:1].astype(np.float64) * norm['sigma'][None, :, None] + norm['mu'][None, :, None])
    s = s.astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    enc = ort.InferenceSession(os.path.join(prior_dir, 'encode.onnx'), so, providers=['CPUExecutionProvider'])
    lp_graph = enc.run(None, {'s': s})[1]
    P = glow.prepare(cfg, jax.tree_util.tree_map(jnp.asarray, params), norm, JaxOps(), jnp)
    lp = noise_conditioned.jax_logp_s(cfg, P, jnp.asarray(s), jnp.ones(1))
    return float(np.max(np.abs(np.asarray(lp, np.float64) - lp_graph) / np.abs(lp_graph)))


def tune_loop(a, state, train_step, Xtr, noise_x, ckdir, t0, minutes):
    """Adam steps (`train_step`, train.build_fns) from the state's step to --steps (or
    --max-minutes), logging every 50 and checkpointing every --ckpt-every (with the run's total
    `minutes()` so far); the state holds the end point. Returns the final parameters (JAX)."""
    import jax
    import jax.numpy as jnp
    sigmas = state['info']['sigmas']
    params, m, v = (jax.tree_util.tree_map(jnp.asarray, state[k]) for k in ('params', 'm', 'v'))
    step = state['step']
    rng = np.random.default_rng([a.seed, step, 7])
    run, n_run, t_first, steps_first = 0.0, 0, None, step

    def snapshot():
        state.update(step=step, **{k: jax.tree_util.tree_map(np.asarray, x)
                                   for k, x in (('params', params), ('m', m), ('v', v))})
        state['info']['minutes'] = minutes()

    while step < a.steps:
        xb, lv = noisy_batch(rng, Xtr, a, noise_x, sigmas)
        params, m, v, loss, gn = train_step(params, m, v, jnp.float32(step), (xb, lv))
        step += 1
        if t_first is None:
            loss.block_until_ready()
            t_first, steps_first = time.time(), step
        if math.isfinite(float(loss)):
            run, n_run = run + float(loss), n_run + 1
        if step % 50 == 0 and n_run:
            state['hist']['train'].append((step, run / n_run))
            sps = (step - steps_first) / max(1e-9, time.time() - t_first)
            train.log(f"step {step} train {run / n_run:.4f} bits/dim |g| {float(gn):.2f} {sps:.2f} steps/s")
            state['info']['steps_per_second'] = round(sps, 3)
            run, n_run = 0.0, 0
        out_of_time = a.max_minutes is not None and (time.time() - t0) / 60 > a.max_minutes
        if step % a.ckpt_every == 0 or step == a.steps or out_of_time:
            snapshot()
            train.save_ckpt(ckdir, state)
        if out_of_time:
            train.log(f"--max-minutes reached at step {step}")
            break
    snapshot()
    return params


def new_state(a, cfg, params, norm, source, desc):
    """A fine-tuning run's state: the prior's parameters with a zero noise channel, zero Adam
    moments, and the run's settings."""
    import jax
    params = noise_conditioned.conditioned(params)
    zeros = lambda p: jax.tree_util.tree_map(np.zeros_like, p)
    return {'step': 0, 'params': params, 'm': zeros(params), 'v': zeros(params), 'norm': norm,
            'cfg': cfg.to_dict(), 'hist': {'train': []},
            'info': {'prior': os.path.abspath(a.prior), 'source': source, 'data': desc,
                     'sigmas': a.sigmas, 'lr': a.lr, 'warmup': a.warmup, 'planned_steps': a.steps,
                     'batch': a.batch, 'crop_frames': a.crop, 'dequantisation_noise_nats': a.noise,
                     'minutes': 0.0, 'commands': []}}


def training_record(state):
    """The manifest's `annealing.training`: what the run did and what it measured."""
    info = state['info']
    return {'steps': int(state['step']), 'minutes': info['minutes'], 'lr': info['lr'],
            'warmup': info['warmup'], 'planned_steps': info['planned_steps'],
            'batch': info['batch'], 'crop_frames': info['crop_frames'],
            'dequantisation_noise_nats': info['dequantisation_noise_nats'],
            'source': info['source'], 'data': info['data'],
            'level_sampling': 'uniform over sigmas, per example',
            'valid_bits_per_dim': {'before': info.get('valid_before'), 'after': info.get('valid_after')},
            'date': info.get('date'), 'command': ' && '.join(info['commands'])}


def export(a, state, out):
    """Writes the conditioned flow into the prior folder `out` (a copy of --prior if it differs)."""
    if os.path.abspath(out) != os.path.abspath(a.prior):
        shutil.copytree(a.prior, out, dirs_exist_ok=True)
    cfg = glow.Config.from_dict(state['cfg'])
    section = noise_conditioned.export_annealed(out, cfg, state['params'], state['norm'],
                                                state['info']['sigmas'], training_record(state))
    sizes = {e['file']: os.path.getsize(os.path.join(out, e['file'])) / 1e6
             for e in (section['score'], section['weights'])}
    train.log(f"exported {out}: " + ", ".join(f"{k} {v:.2f} MB" for k, v in sizes.items()))


def main(argv=None):
    """Fine-tune (new or resumed) and export; --export-only exports the latest checkpoint."""
    a = parse_args(argv)
    import sys
    cfg, params0, norm, manifest = noise_conditioned.prior_parameters(a.prior)
    ckdir = a.ckpt_dir or os.path.join(train.HERE, 'checkpoints', f"{manifest['stem']}-noise")
    state = train.resume(a, ckdir)
    out = a.out or a.prior
    if a.export_only:
        if state is None:
            raise SystemExit(f"no checkpoint in {ckdir}")
        export(a, state, out)
        return
    source = a.source or (state['info']['source'] if state else None)
    if not source:
        raise SystemExit("--source is required")
    if a.noise is None:
        a.noise = manifest['training'].get('dequantisation_noise_nats', 0.1)
    import jax  # noqa: F401  (JAX loads before the wall clock of the run starts)
    t0 = time.time()
    _, Xtr, Xva, _, noise_x, desc = train.prepare_data(a, norm if state is None else state['norm'],
                                                       cfg, source, t0)
    if state is None:
        state = new_state(a, cfg, params0, norm, source, desc)
        train.log(f"start: {glow.param_count(state['params'])} parameters; log p differs from "
                  f"encode.onnx by {check_start(cfg, state['params'], norm, a.prior, Xva):.1e} (relative)")
    else:
        train.log(f"resumed from step {state['step']}")
    state['info']['commands'].append(' '.join(['python -m stemflow_training.noise_tune'] + sys.argv[1:]))
    state['info'].update(lr=a.lr, planned_steps=a.steps)
    base_minutes = state['info']['minutes']

    def minutes():
        return round(base_minutes + (time.time() - t0) / 60, 2)
    sigmas = state['info']['sigmas']
    train_step, eval_fn = train.build_fns(cfg, a.lr, a.steps, a.clip, warmup=a.warmup, conditioned=True)
    if 'valid_before' not in state['info']:
        state['info']['valid_before'] = evaluate_levels(eval_fn, state['params'], Xva, noise_x, sigmas)
        train.log("valid bits/dim per level before: " + level_table(sigmas, state['info']['valid_before']))
    params = tune_loop(a, state, train_step, Xtr, noise_x, ckdir, t0, minutes)
    state['info']['valid_after'] = evaluate_levels(eval_fn, params, Xva, noise_x, sigmas)
    train.log("valid bits/dim per level after:  " + level_table(sigmas, state['info']['valid_after']))
    state['info']['minutes'] = minutes()
    state['info']['date'] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    train.save_ckpt(ckdir, state)
    export(a, state, out)


def level_table(sigmas, values):
    """'level: bits/dim' pairs for the log."""
    return ", ".join(f"{s:.3g}: {v:.4f}" for s, v in zip(sigmas, values))


if __name__ == '__main__':
    main()
