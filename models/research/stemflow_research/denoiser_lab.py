"""Denoiser lab: score-based (denoising) priors per stem over band magnitudes, screened offline.

    cd models/research
    PY="nice -n 10 env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../training ../../.venv/bin/python"
    D=../training/.cache/data
    # 1. the oracle ceiling of each candidate representation (ratio masks on bands, back on bins)
    $PY -m stemflow_research.denoiser_lab ceiling --mixtures $D/valid/mixtures --references $D/valid/references
    # 2. one denoiser per stem from that stem's isolated training segments only (resumable: run again
    #    to continue; --minutes is the CPU budget of the whole run, counted across resumptions)
    $PY -m stemflow_research.denoiser_lab train --data $D/train --stem bass --minutes 15 \
        --out ../training/checkpoints/denoiser
    # which denoiser prefers which instrument (relative denoising error on each stem's validation segments)
    $PY -m stemflow_research.denoiser_lab check --models ../training/checkpoints/denoiser --data $D/valid
    # 3. separation screen: denoise-and-remix variants, alone and in a product with the KL-NMF masks
    $PY -m stemflow_research.denoiser_lab separate --mixtures $D/valid/mixtures \
        --references $D/valid/references --models ../training/checkpoints/denoiser [--limit N] [--json OUT]

Representation ("bands"): the STFT of the KL-NMF (periodic Hann 2048 / hop 512, 22.05 kHz), its
magnitudes summed into F triangular bands (`band_filters`: centres one bin apart at the bottom,
geometric above, the triangles a partition of unity, so a band mask interpolated back onto the
bins is piecewise linear between band centres), compressed x = (m / SCALE)^GAMMA. A band-grid
ratio mask r_i = m_i / sum_j m_j, interpolated onto the bins, is applied to the mixture STFT and
inverted with its phase.

Model: a 2-D convolutional U-Net over (band, frame) with the noise level as input (FiLM), EDM
preconditioning (Karras et al. 2022), trained by denoising score matching on random crops of one
stem's isolated training segments (source-only): x~ = x + sigma * eps, sigma log-uniform in
[SIGMA_LO, SIGMA_HI] * sigma_data, loss the EDM-weighted squared error of D(x~, sigma) to x.

Separation (`separate`), per piece on its first --max-seconds, with M the mixture's band
magnitudes: start from shares m_i = r_i M (r_i = 1/N, or the NMF's masks); at each noise level
sigma_k of a decreasing geometric ladder, every stem's share is compressed, optionally re-noised at
sigma_k ("noisy": x_i + sigma_k eps, an annealed sampler's step with the hard mixture constraint
applied by projection), denoised by its own prior at sigma_k, expanded, and the stems' estimates
turned into ratio masks that sum to 1, so the shares again sum to the mixture (denoise-and-remix).
The final band masks g_i go onto the bins; products with the KL-NMF masks n_i are g^a n^b
normalised, as `expert_lab` does. Scored with evaluate's SDR (5-s segments, median per stem).
"""
import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np

# one thread for XLA, as train.py (set before JAX is imported)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from stemflow_training import checkpoint  # noqa: E402
from stemflow_training.audio_io import read_mono  # noqa: E402
from stemflow_training.stft import SAMPLE_RATE, istft, stft  # noqa: E402

from . import evaluate as ev  # noqa: E402
from .expert_lab import nmf_models  # noqa: E402

N_FFT, HOP = 2048, 512
BINS = N_FFT // 2 + 1
SCALE = 1.0          # magnitudes are unnormalised (the stems' absolute level matters)
GAMMA = 0.3          # power compression of the band magnitudes
SIGMA_LO, SIGMA_HI = 0.01, 3.0   # training noise range, in units of the stem's sigma_data
CROP = 64            # training crop, frames (64 x 512 / 22050 = 1.5 s)


# ---------------------------------------------------------------- representation
def band_centres(n_bins, n_bands):
    """Band centres in bins: 0, 1, ..., k-1 one bin apart, then geometric up to the last bin, with
    the smallest k whose first geometric step is at least one bin."""
    if n_bands >= n_bins:
        return np.arange(n_bins, dtype=np.float64)
    for k in range(1, n_bands - 1):
        r = ((n_bins - 1) / k) ** (1.0 / (n_bands - k - 1))
        if k * (r - 1) >= 1.0:
            return np.concatenate([np.arange(k, dtype=np.float64), k * r ** np.arange(n_bands - k)])
    raise ValueError((n_bins, n_bands))


def band_filters(n_bins=BINS, n_bands=128):
    """[n_bands, n_bins] triangles between neighbouring centres (flat beyond the end centres), a
    partition of unity over the bins."""
    if n_bands >= n_bins:
        return np.eye(n_bins)
    c = band_centres(n_bins, n_bands)
    f = np.arange(n_bins, dtype=np.float64)
    W = np.zeros((n_bands, n_bins))
    for b in range(n_bands):
        if b > 0:
            up = (f >= c[b - 1]) & (f <= c[b])
            W[b, up] = (f[up] - c[b - 1]) / (c[b] - c[b - 1])
        else:
            W[b, f <= c[0]] = 1.0
        if b < n_bands - 1:
            dn = (f > c[b]) & (f < c[b + 1])
            W[b, dn] = (c[b + 1] - f[dn]) / (c[b + 1] - c[b])
        else:
            W[b, f >= c[b]] = 1.0
    return W


def on_bins(W, R):
    """Band masks [N, bands, T] onto the bins [N, bins, T] (piecewise linear between centres)."""
    return np.einsum('bf,nbt->nft', W, R)


def compress(m):
    return (np.maximum(m, 0.0) / SCALE) ** GAMMA


def expand(x):
    return SCALE * np.maximum(x, 0.0) ** (1.0 / GAMMA)


def share(P):
    return P / (P.sum(0, keepdims=True) + 1e-12)


def segment_bands(path, W, n_fft=N_FFT, hop=HOP):
    y = read_mono(path)
    return (W @ np.abs(stft(y, n_fft=n_fft, hop=hop))).astype(np.float32)


# ---------------------------------------------------------------- ceiling
def ceiling(args):
    """Oracle ratio masks on each candidate grid, scored as evaluate does."""
    grids = []
    for item in args.grids.split(','):
        n_fft, hop, bands = (int(v) for v in item.split('/'))
        grids.append((n_fft, hop, bands))
    seg = int(round(5.0 * SAMPLE_RATE))
    sdrs = {g: {s: [] for s in ev.STEMS} for g in grids}
    for mp in ev.select_mixtures(args):
        pid = os.path.splitext(os.path.basename(mp))[0]
        mix, refs = load_crop(args, mp)
        for g in grids:
            n_fft, hop, bands = g
            W = band_filters(n_fft // 2 + 1, bands)
            X = stft(mix, n_fft=n_fft, hop=hop)
            S = np.stack([W @ np.abs(stft(refs[s], n_fft=n_fft, hop=hop)) for s in ev.STEMS])
            R = on_bins(W, share(S))
            for i, s in enumerate(ev.STEMS):
                sdrs[g][s] += ev.segment_sdrs(refs[s], istft(R[i] * X, len(mix), n_fft=n_fft, hop=hop), seg)
        print(f"ceiling: {pid}", flush=True)
    print('| STFT / bands | ' + ' | '.join(ev.STEMS) + ' | avg of medians | cells per 5 s |')
    print('|---|' + '---|' * (len(ev.STEMS) + 2))
    for g, by in sdrs.items():
        med = [float(np.median(by[s])) for s in ev.STEMS]
        cells = min(g[2], g[0] // 2 + 1) * (1 + int(5 * SAMPLE_RATE) // g[1])
        name = f"{g[0]}/{g[1]}, " + (f"{g[2]} bands" if g[2] < g[0] // 2 + 1 else 'linear bins')
        print(f'| {name} | ' + ' | '.join(f'{m:.2f}' for m in med) + f' | {np.mean(med):.2f} | {cells} |')


def load_crop(args, mp):
    pid = os.path.splitext(os.path.basename(mp))[0]
    mix = read_mono(mp)[:int(round(args.max_seconds * SAMPLE_RATE))]
    n = len(mix)
    refs = {s: np.pad(r, (0, max(0, n - len(r))))[:n]
            for s, r in ((s, read_mono(os.path.join(args.references, pid, f'{s}.wav'))) for s in ev.STEMS)}
    return mix, refs


# ---------------------------------------------------------------- the network (JAX)
def init_params(rng, widths=(16, 32, 64, 128, 128), emb=64):
    """U-Net parameters: a stem conv, per level a residual block down and up (the up ones take the
    skip), the noise embedding's MLP, FiLM projections per block, an output conv."""
    def conv(cin, cout, k=3, scale=1.0):
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.sqrt(2.0 / (cin * k * k)) * scale
        return {'w': w, 'b': np.zeros(cout, np.float32)}

    def dense(cin, cout):
        return {'w': (rng.standard_normal((cin, cout)) / np.sqrt(cin)).astype(np.float32),
                'b': np.zeros(cout, np.float32)}

    def block(cin, cout):
        p = {'c1': conv(cin, cout), 'c2': conv(cout, cout, scale=0.1), 'film': dense(emb, 2 * cout)}
        p['film']['w'] *= 0.1
        if cin != cout:
            p['skip'] = conv(cin, cout, k=1)
        return p

    P = {'emb1': dense(16, emb), 'emb2': dense(emb, emb), 'in': conv(1, widths[0])}
    down, up = [], []
    for i, w in enumerate(widths):
        cin = widths[max(i - 1, 0)]
        down.append(block(cin, w))
    P['mid'] = block(widths[-1], widths[-1])
    for i in reversed(range(len(widths))):
        cout = widths[max(i - 1, 0)]
        up.append(block(widths[i] * 2, cout))
    P['down'], P['up'] = down, up
    P['out'] = conv(widths[0], 1, scale=0.0)
    return P


def count_params(P):
    import jax
    return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(P)))


def forward(P, x, c_noise):
    """F(x, c_noise): x [B, F, T] (F, T multiples of 2^(levels-1)), c_noise [B] -> [B, F, T]."""
    import jax
    import jax.numpy as jnp

    def conv(p, h):   # activations NHWC (faster on the CPU than NCHW), weights stored OIHW
        k = p['w'].shape[-1]
        out = jax.lax.conv_general_dilated(h, jnp.transpose(p['w'], (2, 3, 1, 0)), (1, 1),
                                           [(k // 2, k // 2)] * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        return out + p['b']

    def dense(p, h):
        return h @ p['w'] + p['b']

    freqs = jnp.exp(jnp.linspace(0.0, math.log(100.0), 8))
    e = c_noise[:, None] * freqs[None, :]
    e = jnp.concatenate([jnp.sin(e), jnp.cos(e)], axis=1)
    e = jax.nn.silu(dense(P['emb2'], jax.nn.silu(dense(P['emb1'], e))))

    def block(p, h):
        g = conv(p['c1'], jax.nn.silu(h))
        ss = dense(p['film'], e)
        c = g.shape[-1]
        g = g * (1 + ss[:, None, None, :c]) + ss[:, None, None, c:]
        g = conv(p['c2'], jax.nn.silu(g))
        return (conv(p['skip'], h) if 'skip' in p else h) + g

    def pool(h):
        B, F, T, C = h.shape
        return h.reshape(B, F // 2, 2, T // 2, 2, C).mean(axis=(2, 4))

    def unpool(h):
        return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)

    h = conv(P['in'], x[..., None])
    skips = []
    n = len(P['down'])
    for i, p in enumerate(P['down']):
        h = block(p, h)
        skips.append(h)
        if i < n - 1:
            h = pool(h)
    h = block(P['mid'], h)
    for i, p in enumerate(P['up']):
        h = block(p, jnp.concatenate([h, skips[n - 1 - i]], axis=-1))
        if i < n - 1:
            h = unpool(h)
    return conv(P['out'], h)[..., 0]


def denoise(P, x, sigma, sd):
    """EDM-preconditioned denoiser D(x, sigma) of a stem with data std sd; sigma [B]."""
    s = sigma[:, None, None]
    c_skip = sd ** 2 / (s ** 2 + sd ** 2)
    c_out = s * sd / (s ** 2 + sd ** 2) ** 0.5
    c_in = 1.0 / (s ** 2 + sd ** 2) ** 0.5
    import jax.numpy as jnp
    return c_skip * x + c_out * forward(P, c_in * x, jnp.log(sigma) / 4.0)


# ---------------------------------------------------------------- training
def stem_data(data_dir, stem, bands, cache):
    """[N, F, T] band magnitudes of every training segment of one stem (cached as .npy)."""
    path = os.path.join(cache, f'{stem}-bands{bands}-{N_FFT}-{HOP}.npy')
    if os.path.exists(path):
        return np.load(path)
    W = band_filters(BINS, bands)
    files = sorted(glob.glob(os.path.join(data_dir, stem, '*.wav')))
    if not files:
        sys.exit(f"denoiser_lab: no training segments in {os.path.join(data_dir, stem)}")
    A = np.stack([segment_bands(f, W) for f in files])
    os.makedirs(cache, exist_ok=True)
    np.save(path + '.tmp.npy', A)
    os.replace(path + '.tmp.npy', path)
    return A


def train(args):
    import jax
    import jax.numpy as jnp
    out = os.path.join(args.out, args.stem)
    os.makedirs(out, exist_ok=True)
    X = compress(stem_data(args.data, args.stem, args.bands, os.path.join(args.out, 'cache')))
    sd = float(X.std())
    ck = os.path.join(out, 'checkpoint.npz')
    if os.path.exists(ck):
        st = checkpoint.read(ck)
        P, m, v = st['params'], st['m'], st['v']
        step, used, hist = int(st['step']), float(st['cpu_seconds']), st['hist']
        print(f"denoiser_lab: {args.stem}: resumed at step {step} ({used:.0f} s used)", flush=True)
    else:
        P = init_params(np.random.default_rng(args.seed), tuple(int(w) for w in args.widths.split(',')))
        m = jax.tree_util.tree_map(np.zeros_like, P)
        v = jax.tree_util.tree_map(np.zeros_like, P)
        step, used, hist = 0, 0.0, []
    print(f"denoiser_lab: {args.stem}: {X.shape[0]} segments {X.shape[1]}x{X.shape[2]}, sigma_data {sd:.4f}, "
          f"{count_params(P)} parameters", flush=True)
    lo, hi = math.log(SIGMA_LO * sd), math.log(SIGMA_HI * sd)

    def loss_fn(P, x, sigma, eps):
        s = sigma[:, None, None]
        d = denoise(P, x + s * eps, sigma, sd)
        w = (s ** 2 + sd ** 2) / (s * sd) ** 2
        return jnp.mean(w * (d - x) ** 2)

    @jax.jit
    def step_fn(P, m, v, t, lr, x, sigma, eps):
        loss, g = jax.value_and_grad(loss_fn)(P, x, sigma, eps)
        gn = jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(g)))
        sc = jnp.minimum(1.0, 1.0 / (gn + 1e-12))
        lr = lr * jnp.minimum(1.0, (t + 1) / 100.0)
        b1, b2 = 0.9, 0.999
        m = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b * sc, m, g)
        v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * (b * sc) ** 2, v, g)
        P = jax.tree_util.tree_map(lambda p, a, b: p - lr * (a / (1 - b1 ** (t + 1))) /
                                   (jnp.sqrt(b / (1 - b2 ** (t + 1))) + 1e-8), P, m, v)
        return P, m, v, loss

    budget = args.minutes * 60.0
    rng = np.random.default_rng([args.seed, step])
    t_save = time.process_time()
    t0 = time.process_time()
    run_loss = []
    while used + (time.process_time() - t0) < budget:
        idx = rng.integers(0, X.shape[0], args.batch)
        st0 = rng.integers(0, X.shape[2] - CROP + 1, args.batch)
        xb = np.stack([X[i, :, s:s + CROP] for i, s in zip(idx, st0)]).astype(np.float32)
        gain = 10 ** (rng.uniform(-6, 6, args.batch) / 20 * GAMMA).astype(np.float32)   # +-6 dB level jitter
        xb *= gain[:, None, None]
        sigma = np.exp(rng.uniform(lo, hi, args.batch)).astype(np.float32)
        eps = rng.standard_normal(xb.shape).astype(np.float32)
        frac = min(1.0, (used + time.process_time() - t0) / budget)   # cosine decay over the budget
        lr = args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
        P, m, v, loss = step_fn(P, m, v, float(step), lr, xb, sigma, eps)
        run_loss.append(float(loss))
        step += 1
        if step % 50 == 0:
            hist.append([step, float(np.mean(run_loss))])
            print(f"denoiser_lab: {args.stem}: step {step} loss {np.mean(run_loss):.4f} "
                  f"({used + time.process_time() - t0:.0f} s)", flush=True)
            run_loss = []
        if time.process_time() - t_save > 120:
            save(ck, P, m, v, step, used + time.process_time() - t0, hist, sd, args)
            t_save = time.process_time()
    save(ck, P, m, v, step, used + time.process_time() - t0, hist, sd, args)
    print(f"denoiser_lab: {args.stem}: done, {step} steps", flush=True)


def save(path, P, m, v, step, used, hist, sd, args):
    to_np = lambda t: __import__('jax').tree_util.tree_map(np.asarray, t)
    checkpoint.write(path, {'params': to_np(P), 'm': to_np(m), 'v': to_np(v), 'step': int(step),
                            'cpu_seconds': float(used), 'hist': hist, 'sigma_data': sd,
                            'bands': args.bands, 'gamma': GAMMA, 'widths': args.widths})


# ---------------------------------------------------------------- separation
def load_models(root, stems):
    out = {}
    for s in stems:
        st = checkpoint.read(os.path.join(root, s, 'checkpoint.npz'))
        out[s] = (st['params'], float(st['sigma_data']), int(st['bands']), int(st['step']))
    return out


def make_denoisers(models, stems):
    import jax
    import jax.numpy as jnp
    fns = {}
    for s in stems:
        P, sd, _, _ = models[s]
        Pj = jax.tree_util.tree_map(jnp.asarray, P)
        f = jax.jit(lambda x, sigma, Pj=Pj, sd=sd: denoise(Pj, x, sigma, sd))
        fns[s] = (f, sd)
    return fns


def dr_masks(M, fns, stems, init, levels, hi, lo, noisy, power, rng, steps=1, expert=None, expert_weight=0.0):
    """Denoise-and-remix on the band grid: band masks [N, F, T] (see the module doc); `steps`
    denoise-and-remix steps per level; `expert` (band masks) multiplied into every remix with
    exponent `expert_weight` (the denoisers' estimates with 1 - expert_weight)."""
    F, T = M.shape
    Tp = -(-T // 16) * 16   # four poolings
    r = init.copy()
    sig = np.geomspace(hi, lo, levels) if levels > 1 else np.array([lo])
    for sk in np.repeat(sig, steps):
        est = []
        for i, s in enumerate(stems):
            f, sd = fns[s]
            x = compress(r[i] * M)
            if noisy:
                x = x + sk * sd * rng.standard_normal(x.shape)
            xp = np.pad(x, ((0, 0), (0, Tp - T)), mode='edge')[None].astype(np.float32)
            d = np.asarray(f(xp, np.array([sk * sd], np.float32)))[0, :, :T]
            est.append(expand(d) ** power)
        r = share(np.stack(est) + 1e-9)
        if expert is not None and expert_weight > 0:
            r = share(r ** (1 - expert_weight) * expert ** expert_weight)
    return r


def separate(args):
    stems = list(ev.STEMS)
    models = load_models(args.models, stems)
    bands = models[stems[0]][2]
    Wb = band_filters(BINS, bands)
    fns = make_denoisers(models, stems)
    z = np.load(args.nmf)
    dicts = {s: z[s].astype(np.float64) for s in stems}
    seg = int(round(5.0 * SAMPLE_RATE))
    variants = [v for v in args.variants.split(';') if v]
    sdrs, secs, warmed = {}, {}, set()
    for mp in ev.select_mixtures(args):
        pid = os.path.splitext(os.path.basename(mp))[0]
        mix, refs = load_crop(args, mp)
        n = len(mix)
        X = stft(mix, n_fft=N_FFT, hop=HOP)
        V = np.abs(X)
        M = Wb @ V
        shape = (1, bands, -(-M.shape[1] // 16) * 16)
        if shape not in warmed:   # compile once per shape, outside the timed separation
            for f, sd in fns.values():
                np.asarray(f(np.ones(shape, np.float32), np.array([sd], np.float32)))
            warmed.add(shape)
        tn = time.process_time()
        Nbase = share(nmf_models(V, dicts, stems, 200, False))
        t_nmf200 = time.process_time() - tn
        tn = time.process_time()
        Nflat = share(nmf_models(V, dicts, stems, 50, True))
        t_nmf50 = time.process_time() - tn
        frames5 = n / seg

        def emit(name, masks, seconds):
            for i, s in enumerate(stems):
                y = istft(masks[i] * X, n, n_fft=N_FFT, hop=HOP)
                sdrs.setdefault(name, {}).setdefault(s, []).extend(ev.segment_sdrs(refs[s], y, seg))
                if args.write:
                    d = os.path.join(args.write, name.replace(' ', '_').replace('/', '-'), pid)
                    os.makedirs(d, exist_ok=True)
                    import soundfile as sf
                    sf.write(os.path.join(d, f'{s}.wav'), y.astype(np.float32), SAMPLE_RATE, subtype='FLOAT')
            secs.setdefault(name, []).append(seconds / frames5)

        emit('mixture/4', np.full((len(stems),) + X.shape, 0.25), 0.0)
        emit('KL-NMF (baseline, 200 updates)', Nbase, t_nmf200)
        emit('KL-NMF flat 50 (nmf preset)', Nflat, t_nmf50)
        for spec in variants:
            o = dict(kv.split('=') for kv in spec.split(','))
            rng = np.random.default_rng(0)
            init_name = o.get('init', 'even')
            # the NMF's flat-50 masks, taken onto the bands (band-weighted average)
            Nb = share(np.einsum('bf,nft->nbt', Wb / Wb.sum(1, keepdims=True), Nflat))
            init = np.full((len(stems), bands, M.shape[1]), 1.0 / len(stems)) if init_name == 'even' else Nb
            uses_nmf = init_name != 'even' or float(o.get('nmfw', 0)) > 0
            t = time.process_time()
            reps = int(o.get('draws', 1))
            acc = 0
            for _ in range(reps):
                acc = acc + dr_masks(M, fns, stems, init, int(o.get('levels', 6)), float(o.get('hi', 1.0)),
                                     float(o.get('lo', 0.05)), o.get('noisy', '0') == '1',
                                     float(o.get('power', 1.0)), rng, int(o.get('steps', 1)), Nb,
                                     float(o.get('nmfw', 0)))
            G = on_bins(Wb, acc / reps)
            dt = time.process_time() - t
            emit(f'denoiser {spec}', G, dt + (t_nmf50 if uses_nmf else 0))
            for a, b in ((0.5, 0.5), (0.3, 0.7)):
                emit(f'denoiser {spec} x NMF flat 50, {a}/{b}', share(G ** a * Nflat ** b), dt + t_nmf50)
        print(f"denoiser_lab: {pid} ({n / SAMPLE_RATE:.1f} s)", flush=True)
    print()
    print(f"{len(ev.select_mixtures(args))} mixtures from {args.mixtures}, first {args.max_seconds:g} s; median SDR "
          f"per 5-s segment; CPU s per 5 s of mixture (four stems, this process, one thread)")
    print()
    print('| method | ' + ' | '.join(stems) + ' | avg of medians | CPU s / 5-s frame |')
    print('|---|' + '---|' * (len(stems) + 2))
    summary = {}
    for name, by in sdrs.items():
        med = [float(np.median(by[s])) for s in stems]
        summary[name] = {'median': dict(zip(stems, med)), 'avg': float(np.mean(med)),
                         'cpu_per_frame': float(np.median(secs[name])), 'segments': {s: len(by[s]) for s in stems}}
        print(f'| {name} | ' + ' | '.join(f'{m:.2f}' for m in med) + f' | {np.mean(med):.2f} | '
              f'{np.median(secs[name]):.2f} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'mixtures': args.mixtures, 'summary': summary,
                       'models': {s: {'steps': models[s][3], 'sigma_data': models[s][1]} for s in stems}}, f, indent=1)


def check(args):
    """Which denoiser prefers which instrument: the relative denoising error ||D_i(x + sigma eps) - x||^2 /
    ||sigma eps||^2 of every stem's model i on the first --max-segments validation segments of every
    stem j (x in model i's compression), at each noise level (in units of model i's sigma_data)."""
    stems = list(ev.STEMS)
    models = load_models(args.models, stems)
    Wb = band_filters(BINS, models[stems[0]][2])
    fns = make_denoisers(models, stems)
    data = {}
    for j in stems:
        files = sorted(glob.glob(os.path.join(args.data, j, '*.wav')))[:args.max_segments]
        data[j] = np.stack([compress(segment_bands(f, Wb)) for f in files])
    for lvl in (float(v) for v in args.levels.split(',')):
        print(f"\nnoise {lvl:g} sigma_data: relative error of model (row) on stem (column); "
              f"bold = lowest in the column\n")
        E = np.zeros((len(stems), len(stems)))
        for a, i in enumerate(stems):
            f, sd = fns[i]
            rng = np.random.default_rng(0)
            for b, j in enumerate(stems):
                x = data[j]
                T = x.shape[2]
                Tp = -(-T // 16) * 16
                err = []
                for k in range(len(x)):
                    n = lvl * sd * rng.standard_normal(x[k].shape)
                    xp = np.pad(x[k] + n, ((0, 0), (0, Tp - T)), mode='edge')[None].astype(np.float32)
                    d = np.asarray(f(xp, np.array([lvl * sd], np.float32)))[0, :, :T]
                    err.append(np.sum((d - x[k]) ** 2) / np.sum(n ** 2))
                E[a, b] = np.mean(err)
        print('| model \\ stem | ' + ' | '.join(stems) + ' |')
        print('|---|' + '---|' * len(stems))
        for a, i in enumerate(stems):
            print(f'| {i} | ' + ' | '.join((f'**{E[a, b]:.3f}**' if a == np.argmin(E[:, b]) else f'{E[a, b]:.3f}')
                                           for b in range(len(stems))) + ' |')


# ---------------------------------------------------------------- command line
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('ceiling')
    c.add_argument('--grids', default='1024/256/513,2048/512/1025,2048/512/128,2048/512/64,1024/256/128,1024/256/64',
                   help='n_fft/hop/bands, comma-separated (bands >= bins: linear bins)')
    t = sub.add_parser('train')
    t.add_argument('--data', required=True)
    t.add_argument('--stem', required=True)
    t.add_argument('--out', required=True)
    t.add_argument('--minutes', type=float, default=15.0, help='CPU-time budget of the whole run')
    t.add_argument('--bands', type=int, default=128)
    t.add_argument('--widths', default='16,32,64,128,128')
    t.add_argument('--batch', type=int, default=16)
    t.add_argument('--lr', type=float, default=1e-3)
    t.add_argument('--seed', type=int, default=0)
    k = sub.add_parser('check')
    k.add_argument('--models', required=True)
    k.add_argument('--data', required=True, help='DIR/<stem>/*.wav isolated segments (e.g. the valid split)')
    k.add_argument('--max-segments', type=int, default=20)
    k.add_argument('--levels', default='0.1,0.3,1')
    s = sub.add_parser('separate')
    s.add_argument('--models', required=True)
    s.add_argument('--nmf', default=os.path.join(ev.REPO, 'models', 'training', 'nmf-dictionaries.npz'))
    s.add_argument('--variants', default='levels=6,hi=1,lo=0.05;levels=6,hi=1,lo=0.05,noisy=1;'
                   'init=nmf,levels=3,hi=0.3,lo=0.05',
                   help='";"-separated, each "key=value,...": init even|nmf, levels, hi, lo (noise ladder in '
                        'units of sigma_data), noisy 0|1, power (mask exponent), steps (per level), draws '
                        '(noisy runs averaged), nmfw (NMF exponent inside every remix)')
    s.add_argument('--write', default=None, help='also write the estimates, DIR/<variant>/<piece>/<stem>.wav')
    s.add_argument('--json', default=None)
    for p in (c, s):
        p.add_argument('--mixtures', required=True)
        p.add_argument('--references', required=True)
        p.add_argument('--max-seconds', type=float, default=14.0)
        p.add_argument('--limit', type=int, default=0)
        p.add_argument('--shard', default=None)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    {'ceiling': ceiling, 'train': train, 'check': check, 'separate': separate}[args.cmd](args)


if __name__ == '__main__':
    main()
