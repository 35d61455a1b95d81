"""What time-domain priors cost on this CPU: a FloWaveNet training step, and the score graph per
sample (what one Langevin step costs per prior).

    cd models/research && XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        PYTHONPATH=../training python -m stemflow_research.waveform_timing \
        --step 4,6,10,32,5,16384 --step 4,6,4,16,5,4096 --score ../priors-time/toy/sine

--step BLOCKS,FLOWS,LAYERS,WIDTH,BATCH,SAMPLES: median seconds of a jitted Adam-free
value_and_grad step of flowavenet.jax_logpx (3 runs after a warm-up); --score PRIOR: median
microseconds per sample of its score.onnx on 10 × 16 384 samples (--threads ONNX Runtime threads).
"""
import argparse
import time

import numpy as np


def step_seconds(spec, repeat=3):
    import jax
    import jax.numpy as jnp
    from stemflow_training import flowavenet as F, toy_sources as T
    b, f, l, w, B, n = map(int, spec.split(','))
    cfg = F.Config(blocks=b, flows=f, layers=l, width=w)
    rng = np.random.default_rng(0)
    x = T.examples('sine', 'train', B, n)[:, None, :]
    p = F.actnorm_init(cfg, F.init_params(cfg, rng), x)
    g = jax.jit(jax.value_and_grad(lambda p, x: -jnp.mean(F.jax_logpx(cfg, p, x))))
    jax.block_until_ready(g(p, x))
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(g(p, x))
        times.append(time.perf_counter() - t)
    return float(np.median(times)), F.param_count(p)


def score_us_per_sample(prior, threads, repeat=3):
    from stemflow_research.time_domain import WaveformPrior
    p = WaveformPrior(prior, threads)
    x = (0.1 * np.random.default_rng(0).standard_normal((10, 16384))).astype(np.float32)
    p.score(x)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        p.score(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) / x.size * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--step', action='append', default=[])
    ap.add_argument('--score', action='append', default=[])
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    for spec in a.step:
        s, n = step_seconds(spec)
        print(f"FloWaveNet {spec}: {s:.2f} s per training step ({n} parameters)", flush=True)
    for prior in a.score:
        print(f"{prior}: score {score_us_per_sample(prior, a.threads):.1f} µs per sample, {a.threads} thread(s)", flush=True)


if __name__ == '__main__':
    main()
