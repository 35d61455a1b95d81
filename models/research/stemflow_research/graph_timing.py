"""Time each graph of a prior through onnxruntime (1 thread, no spinning, B = 1, one 5-s frame).

    cd models/research && PYTHONPATH=../training python -m stemflow_research.graph_timing \
        --prior ../priors/bass [--repeat 30]

Prints the median milliseconds per call of decode, grad, encode and, when the prior has them,
forward and backward, score and noisy_score (at sigma 0.1), and what one iteration of the latent search costs per stem either way
(decode + grad, or forward + backward).
"""
import argparse
import os
import time

import numpy as np

from stemflow_training.stft import BINS, FRAMES


def session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    so.add_session_config_entry('session.inter_op.allow_spinning', '0')
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


def median_ms(run, repeat):
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--prior', required=True, help='a prior folder')
    ap.add_argument('--repeat', type=int, default=30)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    z = (0.3 * rng.standard_normal((1, BINS, FRAMES))).astype(np.float32)
    g = (0.1 * rng.standard_normal(z.shape)).astype(np.float32)
    gamma = np.array([0.0], np.float32)
    graph = lambda role: os.path.join(a.prior, f'{role}.onnx')
    dec, grad, enc = (session(graph(r)) for r in ('decode', 'grad', 'encode'))
    s = dec.run(None, {'z': z})[0]
    ms = {
        'decode': median_ms(lambda: dec.run(None, {'z': z}), a.repeat),
        'grad': median_ms(lambda: grad.run(None, {'z': z, 'g': g, 'gamma': gamma}), a.repeat),
        'encode': median_ms(lambda: enc.run(None, {'s': s}), a.repeat),
    }
    if os.path.exists(graph('forward')) and os.path.exists(graph('backward')):
        fwd, bwd = session(graph('forward')), session(graph('backward'))
        names = [o.name for o in fwd.get_outputs()]
        feed = dict(zip(names, fwd.run(None, {'z': z})))
        del feed['logp']
        feed.update(z=z, g=g, gamma=gamma)
        ms['forward'] = median_ms(lambda: fwd.run(None, {'z': z}), a.repeat)
        ms['backward'] = median_ms(lambda: bwd.run(None, feed), a.repeat)
    if os.path.exists(graph('score')):
        sc = session(graph('score'))
        ms['score'] = median_ms(lambda: sc.run(None, {'s': s}), a.repeat)
    if os.path.exists(graph('noisy_score')):   # the noise-conditioned score (CONTRACT.md)
        nsc = session(graph('noisy_score'))
        sigma = np.array([0.1], np.float32)
        ms['noisy_score'] = median_ms(lambda: nsc.run(None, {'s': s, 'sigma': sigma}), a.repeat)
    print(f"{a.prior}: median ms per call over {a.repeat}, B = 1, T = {FRAMES}")
    for role, v in ms.items():
        print(f"  {role:<11} {v:7.1f}")
    print(f"  iteration per stem: decode + grad {ms['decode'] + ms['grad']:.1f}", end='')
    if 'forward' in ms:
        split = ms['forward'] + ms['backward']
        print(f", forward + backward {split:.1f} ({(ms['decode'] + ms['grad']) / split:.2f}×)")
    else:
        print()


if __name__ == '__main__':
    main()
