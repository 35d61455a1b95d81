"""Time-domain priors on the appendix's toy set: what they discriminate and what they separate.

    cd models/research && PYTHONPATH=../training python -m stemflow_research.time_domain \
        --out /tmp/time-domain [--mixes 50] [--sgld-mixes 10] [--steps 100]

Reads the toy priors in models/priors-time/toy (FloWaveNet, one per source type, trained by
`stemflow_training.train_waveform`, with their noise-conditioned graphs) and
models/priors-time/toy-glow (Glow spectrogram priors trained on the same toy sources by
`stemflow_training.train`), and prints and saves (OUT/results.json, OUT/results.md,
OUT/toy_mix.png):

1. the cross-likelihood matrix: each prior's NLL in bits per sample on held-out examples of each
   type (`score.onnx`'s logp; "after noise fine-tuning": the noise-conditioned graph at the
   ladder's smallest sigma, on held-out examples with that noise added), and how often the
   examples' own prior is the likeliest (discrimination);
2. SDR (dB, whole 16 384-sample frame, eps 1e-7, per source type and over all, median and mean)
   over held-out toy mixes (toy_sources.mix) for mixture/4, the oracle ratio mask, the Glow
   priors with the engine's default Adam search (the `stemflow` CLI), and the FloWaveNet priors
   with SGLD (textbook Gaussian and as written) and annealed Langevin over the noise ladder,
   each as the chains' own waveforms and as mixture-consistent ratio masks of their magnitudes
   on the mix STFT (what the engine outputs in `consistent` mode);
3. a figure of one toy mix with its true and separated sources.

The Langevin chains run here in batch over many mixes at once with ONNX Runtime (the engine's
separator works on one 5-s frame at a time, which would spend most of its time on the padding of
0.74-s toy mixes); the update rules are those of the engine's waveform chains
(src/engine/search, CONTRACT.md "Time-domain priors"), and `--check-engine` also separates one
mix with `stemflow separate --separator sgld` and reports both.
"""
import argparse
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from stemflow_research.evaluate import priors_key
from stemflow_training import toy_sources
from stemflow_training.stft import SAMPLE_RATE, istft, stft

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOY_PRIORS = os.path.join(REPO, 'models', 'priors-time', 'toy')
TOY_WAVENET = os.path.join(REPO, 'models', 'priors-time', 'toy-wavenet')
TOY_GLOW = os.path.join(REPO, 'models', 'priors-time', 'toy-glow')
KINDS = toy_sources.KINDS
FAMILIES = ('FloWaveNet', 'WaveNet')
EPS = 1e-7
# the figure's span (54 ms), and all of each estimate that figure_estimates.npz keeps
FIGURE_SAMPLES = 1200


def load_results(path):
    """results.json with its three tables present (empty when new)."""
    res = json.load(open(path)) if os.path.exists(path) else {}
    for table in ('likelihood', 'sdr', 'screen'):
        res.setdefault(table, {})
    return res


def write_atomically(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def save_npz_atomically(path, **arrays):
    tmp = path + '.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path):
    """An exclusive lock on path + '.lock' while the block runs (runs in parallel); closing
    the lock file releases it."""
    with open(path + '.lock', 'w') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def slug(name):
    """A file name for a table row's name."""
    return re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_').lower()


# ---------------------------------------------------------------- priors
def session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    so.add_session_config_entry('session.inter_op.allow_spinning', '0')
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


class WaveformPrior:
    """A waveform prior folder: its score graph and, if present, its noise-conditioned one."""

    def __init__(self, folder, threads):
        with open(os.path.join(folder, 'manifest.json')) as f:
            self.manifest = json.load(f)
        if self.manifest.get('domain') != 'waveform':
            raise ValueError(f"{folder}: not a waveform prior (domain {self.manifest.get('domain')!r})")
        self.stem = self.manifest['stem']
        self.clean = session(os.path.join(folder, self.manifest['graphs']['score']['file']), threads)
        ann = self.manifest.get('annealing')
        self.noisy = session(os.path.join(folder, ann['score']['file']), threads) if ann else None
        self.ladder = ann['sigmas'] if ann else []

    def score(self, x, sigma=None, chunk=10):
        """(score [B, T], logp [B]) of waveforms x [B, T]; under p_sigma when sigma is given."""
        gs, lps = [], []
        for i in range(0, len(x), chunk):
            xb = np.ascontiguousarray(x[i:i + chunk, None, :], np.float32)
            if sigma is None:
                g, lp = self.clean.run(['score', 'logp'], {'x': xb})
            else:
                g, lp = self.noisy.run(['score', 'logp'], {'x': xb, 'sigma': np.full(len(xb), sigma, np.float32)})
            gs.append(g[:, 0])
            lps.append(lp)
        return np.concatenate(gs), np.concatenate(lps)


def load_priors(folder, threads):
    return [WaveformPrior(os.path.join(folder, k), threads) for k in KINDS]


# ---------------------------------------------------------------- 1. cross-likelihood
def dequantised_heldout(kind, count, sigma=None):
    rng = np.random.default_rng(99)
    X = toy_sources.examples(kind, 'heldout', count)
    X = X + (rng.uniform(-0.5, 0.5, X.shape) / 32768.0).astype(np.float32)
    if sigma is not None:
        X = X + (sigma * rng.standard_normal(X.shape)).astype(np.float32)
    return X


def cross_likelihood(priors, count, noisy):
    """{'bits': [prior][data] mean NLL bits/sample, 'own_best': fraction of examples whose own
    prior gives the highest log-density, 'sigma': the level (noisy) or None}."""
    sigma = priors[0].ladder[-1] if noisy else None
    lp = np.zeros((len(priors), len(KINDS), count))
    for j, kind in enumerate(KINDS):
        X = dequantised_heldout(kind, count, sigma)
        for i, p in enumerate(priors):
            lp[i, j] = p.score(X, sigma)[1]
    bits = -lp / (toy_sources.FRAME * np.log(2.0))
    own = np.mean([np.mean(np.argmax(lp[:, j], axis=0) == j) for j in range(len(KINDS))])
    return dict(bits=bits.mean(axis=2).tolist(), own_best=float(own), sigma=sigma, examples=count)


# ---------------------------------------------------------------- 2. separation
def sdr(ref, est):
    return 10 * np.log10((np.sum(ref ** 2) + EPS) / (np.sum((ref - est) ** 2) + EPS))


def consistent_masks(est, mix):
    """Mixture-consistent ratio masks |S_k| / sum |S_j| of the estimates' magnitudes on the mix
    STFT (the engine's consistent output): the stems sum to the mix."""
    X = stft(mix)
    S = np.stack([np.abs(stft(e)) for e in est])
    masks = S / (S.sum(axis=0, keepdims=True) + 1e-12)
    return np.stack([istft(m * X, len(mix)) for m in masks])


def langevin(priors, m, steps, eta, sigma, form, seed, ladder=None, lam=1.0, log=None):
    """Chains sₖ [N, B, T] for mixes m [B, T], started at m/N; returns their mean over the second
    half of the steps (or, annealed, over the last level).
    - 'textbook': sₖ += η(∇log p(sₖ) + (m − Σsᵢ)/σ²) + √(2η)ε;
    - 'as-written' (Frank & Ilse, Algorithm 1): Δsₖ = sₖ + η∇log p(sₖ) + 2√η ε, then
      sₖ = Δsₖ − (η/σ²)(m − (1/N)Σsᵢ) (every Δ first, the constraint with the states before);
    - 'annealed' (ladder σ₁ > … > σ_L, `steps` per level): the textbook rule with η_σ = η(σ/σ₁)²,
      the noise-conditioned score at σ and the likelihood width λσ."""
    N = len(priors)
    rng = np.random.default_rng(seed)
    s = np.repeat(m[None] / N, N, axis=0).astype(np.float32)
    acc, n_acc = np.zeros_like(s), 0
    levels = ladder if form == 'annealed' else [None]
    total = steps * len(levels)
    t = 0
    for level in levels:
        for step in range(steps):
            if form == 'annealed':
                e = eta * (level / levels[0]) ** 2
                w = 1.0 / (lam * level) ** 2
                g = np.stack([p.score(s[k], level)[0] for k, p in enumerate(priors)])
                s = s + e * (g + w * (m - s.sum(axis=0))[None]) + np.sqrt(2 * e) * rng.standard_normal(s.shape)
                keep = step >= 0
            else:
                g = np.stack([p.score(s[k])[0] for k, p in enumerate(priors)])
                resid = m - s.sum(axis=0)
                if form == 'textbook':
                    s = s + eta * (g + resid[None] / sigma ** 2) + np.sqrt(2 * eta) * rng.standard_normal(s.shape)
                else:
                    delta = s + eta * g + 2 * np.sqrt(eta) * rng.standard_normal(s.shape)
                    s = delta - (eta / sigma ** 2) * (m - s.mean(axis=0))[None]
                keep = step >= steps // 2
            s = s.astype(np.float32)
            if not np.all(np.isfinite(s)):
                raise FloatingPointError(f"{form}: chains diverged at step {t + 1} (eta {eta}, sigma {sigma})")
            if keep and (form != 'annealed' or level == levels[-1]):
                acc += s
                n_acc += 1
            t += 1
            if log and t % 10 == 0:
                log(f"  {form}: step {t}/{total}")
    return acc / max(n_acc, 1)


def screen(priors, form, etas, a, first, log):
    """Median SDR of each step size on `a.screen_mixes` held-out mixes from index `first` on
    (after the evaluated ones), `a.screen_steps` steps (annealed: `a.annealed_steps` per level);
    diverging sizes score None."""
    made = [toy_sources.mix(first + i) for i in range(a.screen_mixes)]
    m = np.stack([x for x, _, _ in made]).astype(np.float32)
    refs = np.stack([r for _, r, _ in made])
    steps = a.annealed_steps if form == 'annealed' else a.screen_steps
    scores = {}
    for eta in etas:
        try:
            est = langevin(priors, m, steps, eta, a.sigma, form, a.seed,
                           ladder=priors[0].ladder, lam=a.likelihood_scale)
            scores[f"{eta:g}"] = float(np.median(scores_for(refs, est)))
        except FloatingPointError:
            scores[f"{eta:g}"] = None  # diverged (JSON has no -inf)
        log(f"  screen {form} eta {eta:g}: " + ('diverged' if scores[f'{eta:g}'] is None
                                                else f"median SDR {scores[f'{eta:g}']:.2f}"))
    best = max(etas, key=lambda e: -np.inf if scores[f"{e:g}"] is None else scores[f"{e:g}"])
    return dict(scores=scores, best=best, mixes=a.screen_mixes,
                steps=f"{steps} per level" if form == 'annealed' else steps)


def chains_in_chunks(run, m, chunk, path, log):
    """Estimates [N, B, T] of `run(mixes, first)` over the mixes m [B, T] in chunks of `chunk`
    mixes. Each finished chunk is kept in `path` (npz: the estimates so far and the seconds they
    took), so a stopped run resumes at the next chunk; returns the estimates and the seconds per
    mix over every run that contributed."""
    done = dict(np.load(path)) if os.path.exists(path) else {}
    est = [done['est']] if done else []
    count = done['est'].shape[1] if done else 0
    seconds = float(done['seconds']) if done else 0.0
    while count < len(m):
        t0 = time.time()
        part = run(m[count:count + chunk], count)
        seconds += time.time() - t0
        est.append(part.astype(np.float32))
        count += part.shape[1]
        save_npz_atomically(path, est=np.concatenate(est, axis=1), seconds=seconds)
        log(f"  {count}/{len(m)} mixes done")
    return np.concatenate(est, axis=1)[:, :len(m)], seconds / len(m)


def mu_law_round_trip(mixes, refs, mu=255.0):
    """What 8-bit μ-law codes cost separation: the SDR of each true source after a round trip
    through its code (the best a separation in codes can reach), and how far the sum of the
    quantised sources is from the mix (mixing is linear in x, not in codes)."""
    def q(x):
        y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
        k = np.round((np.clip(y, -1, 1) + 1) * 127.5)
        y = k / 127.5 - 1
        return np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
    src = [sdr(r, q(r)) for rr in refs for r in rr]
    mix = [sdr(m, q(rr).sum(axis=0)) for m, rr in zip(mixes, refs)]
    return dict(source_sdr_median=float(np.median(src)), mix_sdr_median=float(np.median(mix)), mixes=len(mixes))


def scores_for(refs, est):
    """SDR [B, N] of estimates [N, B, T] against references [B, N, T]."""
    return np.array([[sdr(refs[b, k], est[k, b]) for k in range(len(KINDS))] for b in range(len(refs))])


def summary(table):
    t = np.asarray(table)
    per = {k: dict(median=float(np.median(t[:, i])), mean=float(np.mean(t[:, i]))) for i, k in enumerate(KINDS)}
    per['all'] = dict(median=float(np.median(t)), mean=float(np.mean(t)))
    return per


def glow_estimates(mixes, work, priors_dir, extra):
    """Separates each toy mix with the `stemflow` CLI (Glow spectrogram priors, Adam)."""
    exe = os.path.join(REPO, 'target', 'release', 'stemflow')
    import soundfile as sf
    out = np.zeros((len(KINDS), len(mixes), toy_sources.FRAME), np.float32)
    for b, m in enumerate(mixes):
        path = os.path.join(work, f"mix_{b:03d}.wav")
        sf.write(path, m, SAMPLE_RATE, subtype='FLOAT')
        dest = os.path.join(work, f"glow_{b:03d}")
        cmd = [exe, 'separate', path, '-o', dest, '--priors', priors_dir, '--stems', ','.join(KINDS),
               '--force'] + extra
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        for k, kind in enumerate(KINDS):
            y, rate = sf.read(os.path.join(dest, f"{kind}.wav"), dtype='float32')
            y = y.mean(axis=1) if y.ndim > 1 else y
            out[k, b] = y[:toy_sources.FRAME]
    return out


# ---------------------------------------------------------------- 3. figure
def figure(path, mix, refs, estimates, rate=SAMPLE_RATE, samples=FIGURE_SAMPLES):
    """One toy mix, its true sources and each method's estimates of them. The estimates furthest
    from the truth are drawn first (underneath), and each panel's range is the true source's
    (with a margin), so a method whose chains wander does not hide the others; the legend sits
    above the panels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    t = np.arange(samples) / rate * 1000
    rows = 1 + len(KINDS)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 1.6 * rows + 0.6), sharex=True)
    axes[0].plot(t, mix[:samples], 'k', lw=0.8)
    axes[0].set_ylabel('mix')
    colours = dict(zip(estimates, plt.rcParams['axes.prop_cycle'].by_key()['color']))
    for k, kind in enumerate(KINDS):
        ax = axes[k + 1]
        ref = refs[k, :samples]
        ax.plot(t, ref, 'k', lw=1.6, alpha=0.35, label='true')
        error = {name: float(np.mean((est[k, :samples] - ref) ** 2)) for name, est in estimates.items()}
        for name in sorted(estimates, key=lambda n: -error[n]):
            ax.plot(t, estimates[name][k, :samples], lw=0.8, color=colours[name], label=name)
        peak = 1.5 * max(float(np.max(np.abs(ref))), 1e-3)
        ax.set_ylim(-peak, peak)
        ax.set_ylabel(kind)
    handles, labels = axes[1].get_legend_handles_labels()
    order = ['true'] + list(estimates)
    pairs = sorted(zip(handles, labels), key=lambda hl: order.index(hl[1]))
    fig.legend([h for h, _ in pairs], [l for _, l in pairs], loc='upper center', fontsize=7,
               ncol=3, bbox_to_anchor=(0.5, 0.955), frameon=False)
    axes[-1].set_xlabel('ms')
    fig.suptitle('A held-out toy mix: true and separated sources (first 54 ms)')
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- report
def markdown(res):
    lines = []
    keys = [(f"{fam}: {key}", fam, title) for fam in FAMILIES
            for key, title in (('clean', 'clean priors'), ('noisy', 'after noise fine-tuning'))]
    for key, fam, title in keys:
        if key not in res.get('likelihood', {}):
            continue
        L = res['likelihood'][key]
        extra = f", σ = {L['sigma']}" if L['sigma'] else ''
        lines += [f"Cross-likelihood, {fam}, {title}{extra} ({L['examples']} held-out examples per type; "
                  f"NLL bits/sample, rows = prior, columns = data; own prior likeliest for "
                  f"{100 * L['own_best']:.0f} % of the examples):", '',
                  '| prior \\ data | ' + ' | '.join(KINDS) + ' |', '|---' * (len(KINDS) + 1) + '|']
        for i, k in enumerate(KINDS):
            lines.append(f"| {k} | " + ' | '.join(f"{v:.2f}" for v in L['bits'][i]) + ' |')
        lines.append('')
    if 'mu_law' in res:
        q = res['mu_law']
        lines += [f"μ-law (8-bit) round trip of the true sources: SDR median {q['source_sdr_median']:.1f} dB "
                  f"(the ceiling of a separation in codes); the sum of the quantised sources misses the mix by "
                  f"SDR {q['mix_sdr_median']:.1f} dB (median over {q['mixes']} mixes).", '']
    if res.get('sdr'):
        lines += ['SDR (dB) on held-out toy mixes, median (mean) per source type (η: the step size; '
                  's/mix: seconds per mix):', '',
                  '| method | mixes | η | s/mix | ' + ' | '.join(KINDS) + ' | all |', '|---' * (len(KINDS) + 5) + '|']
        for name, r in res['sdr'].items():
            if 'error' in r:
                lines.append(f"| {name} | {r['mixes']} | | | {r['error']} |")
                continue
            s = r['summary']
            eta = f"{r['eta']:g}" if r.get('eta') else ''
            secs = f"{r['seconds']:.0f}" if r.get('seconds') else ''
            lines.append(f"| {name} | {r['mixes']} | {eta} | {secs} | " + ' | '.join(
                f"{s[k]['median']:.2f} ({s[k]['mean']:.2f})" for k in list(KINDS) + ['all']) + ' |')
        lines.append('')
    if res.get('screen'):
        lines += ['Step-size screen (median SDR in dB on mixes that are not scored above; "diverged": the '
                  'chains left the finite numbers):', '', '| chains | mixes | steps | η: median SDR | chosen |',
                  '|---|---|---|---|---|']
        for name, r in res['screen'].items():
            cells = ', '.join(f"{e}: {'diverged' if v is None else f'{v:.2f}'}" for e, v in r['scores'].items())
            lines.append(f"| {name} | {r['mixes']} | {r['steps']} | {cells} | {r['best']:g} |")
        lines.append('')
    return '\n'.join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', required=True)
    ap.add_argument('--priors', default=TOY_PRIORS, help='FloWaveNet toy priors')
    ap.add_argument('--wavenet-priors', default=TOY_WAVENET, help='WaveNet toy priors (skipped when missing)')
    ap.add_argument('--glow-priors', default=TOY_GLOW)
    ap.add_argument('--mixes', type=int, default=50, help='held-out mixes for mixture/4, oracle and Glow')
    ap.add_argument('--sgld-mixes', type=int, default=50, help='held-out mixes for the Langevin chains')
    ap.add_argument('--likelihood-examples', type=int, default=20)
    ap.add_argument('--steps', type=int, default=100, help='SGLD steps')
    ap.add_argument('--annealed-steps', type=int, default=20, help='annealed Langevin steps per level')
    ap.add_argument('--eta', type=float, action='append',
                    help='SGLD step size(s); with several, each family and form takes the one with the best median '
                         'SDR on --screen-mixes mixes that are not evaluated (default: 1e-7, 1e-6, 1e-5)')
    ap.add_argument('--screen-mixes', type=int, default=2)
    ap.add_argument('--screen-steps', type=int, default=50)
    ap.add_argument('--sigma', type=float, default=0.01, help='likelihood width of the non-annealed chains')
    ap.add_argument('--annealed-eta', type=float, action='append',
                    help='step size(s) at the first level, screened like --eta when several (default: 1e-3)')
    ap.add_argument('--likelihood-scale', type=float, default=1.0)
    ap.add_argument('--chunk', type=int, default=10,
                    help='mixes per batch of chains; each finished batch is kept under OUT/chains, so a '
                         'stopped run resumes at the next one')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--skip', action='append', default=[],
                    help='skip a part: likelihood, glow, textbook, as-written, annealed, FloWaveNet, WaveNet')
    return ap.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    res_path = os.path.join(a.out, 'results.json')
    res = load_results(res_path)
    log = lambda msg: print(msg, flush=True)

    def put(section, key, value):
        """Sets res[section][key] (section None: res[key]) in results.json as it is on disk now,
        so that runs in parallel (other families or forms, into the same folder) keep each
        other's rows; res becomes the merged results."""
        with locked(res_path):
            merged = load_results(res_path)
            (merged.setdefault(section, {}) if section else merged)[key] = value
            write_atomically(res_path, json.dumps(merged, indent=1))
            write_atomically(os.path.join(a.out, 'results.md'), markdown(merged))
        res.clear()
        res.update(merged)

    def keep_for_figure(name, est):
        """Keeps mix 0's estimates [N, T] of a row for the figure (merged like put)."""
        with locked(fig_path):
            kept.update(dict(np.load(fig_path)) if os.path.exists(fig_path) else {})
            kept[name] = est[:, 0, :FIGURE_SAMPLES]
            save_npz_atomically(fig_path, **kept)

    families = {fam: load_priors(path, a.threads) for fam, path in
                (('FloWaveNet', a.priors), ('WaveNet', a.wavenet_priors))
                if fam not in a.skip and all(os.path.isdir(os.path.join(path, k)) for k in KINDS)}
    fig_path = os.path.join(a.out, 'figure_estimates.npz')
    kept = dict(np.load(fig_path)) if os.path.exists(fig_path) else {}
    if 'likelihood' not in a.skip:
        for fam, priors in families.items():
            for noisy in (False, True):
                key = f"{fam}: {'noisy' if noisy else 'clean'}"
                if key not in res['likelihood'] and (not noisy or all(p.noisy for p in priors)):
                    log(f"cross-likelihood ({key})")
                    put('likelihood', key, cross_likelihood(priors, a.likelihood_examples, noisy))

    n = max(a.mixes, a.sgld_mixes)
    made = [toy_sources.mix(i) for i in range(n)]
    mixes = np.stack([m for m, _, _ in made]).astype(np.float32)
    refs = np.stack([s for _, s, _ in made]).astype(np.float32)

    def record(name, est, count, seconds=None, eta=None):
        row = dict(mixes=count, summary=summary(scores_for(refs[:count], est)), seconds=seconds)
        put('sdr', name, dict(row, eta=eta) if eta is not None else row)
        log(markdown({'sdr': {name: res['sdr'][name]}}).splitlines()[-1])

    record('mixture/4', np.repeat(mixes[None, :a.mixes] / 4, 4, axis=0), a.mixes)
    oracle = np.stack([consistent_masks(refs[b], mixes[b]) for b in range(a.mixes)], axis=1)
    record('oracle ratio mask', oracle, a.mixes)
    glow = 'Glow (spectrogram) + Adam'
    glow_row = res['sdr'].get(glow, {})
    if 'glow' not in a.skip and os.path.isdir(a.glow_priors) and (glow_row.get('mixes', 0) < a.mixes or glow not in kept):
        with tempfile.TemporaryDirectory() as work:
            t0 = time.time()
            est = glow_estimates(mixes[:a.mixes], work, a.glow_priors, ['--nmf-weight', '0'])
            record(glow, est, a.mixes, (time.time() - t0) / a.mixes)
            keep_for_figure(glow, est)
    put(None, 'mu_law', mu_law_round_trip(mixes[:a.mixes], refs[:a.mixes]))
    m = mixes[:a.sgld_mixes]
    if a.sgld_mixes != a.mixes:
        # the reference the chains are read against, on exactly their mixes
        record(f'mixture/4 (the {a.sgld_mixes} Langevin mixes)', np.repeat(m[None] / 4, 4, axis=0), a.sgld_mixes)
    etas = a.eta or [1e-7, 1e-6, 1e-5]
    runs = [('textbook', etas, 'SGLD (textbook)'), ('as-written', etas, 'SGLD (as written)'),
            ('annealed', a.annealed_eta or [1e-3], 'annealed Langevin')]
    for fam, priors in families.items():
        for form, eta, label in runs:
            name = f"{fam} + {label}"
            if form in a.skip or (form == 'annealed' and not all(p.noisy for p in priors)):
                continue
            row = res['sdr'].get(name, {})
            if 'error' in row or (row.get('mixes', 0) >= a.sgld_mixes and name + ', masked' in res['sdr']):
                continue
            steps = a.annealed_steps if form == 'annealed' else a.steps
            if len(eta) > 1 and name not in res['screen']:
                put('screen', name, screen(priors, form, eta, a, n, log))
            eta = res['screen'][name]['best'] if len(eta) > 1 else eta[0]
            log(f"{name}: {a.sgld_mixes} mixes, {steps} steps{' per level' if form == 'annealed' else ''}, eta {eta:g}")
            # the chains' noise is seeded by the first mix of each chunk
            run = lambda part, first: langevin(priors, part, steps, eta, a.sigma, form, a.seed + first,
                                               ladder=priors[0].ladder, lam=a.likelihood_scale, log=log)
            # keyed by everything the chains depend on, so no setting's batches are reused for another
            partial = os.path.join(a.out, 'chains', f"{slug(name)}-{priors_key(a.priors if fam == 'FloWaveNet' else a.wavenet_priors, KINDS)}"
                                   f"_eta{eta:g}_steps{steps}_sigma{a.sigma:g}_lam{a.likelihood_scale:g}"
                                   f"_chunk{a.chunk}_seed{a.seed}.npz")
            os.makedirs(os.path.dirname(partial), exist_ok=True)
            try:
                est, secs = chains_in_chunks(run, m, a.chunk, partial, log)
            except FloatingPointError as e:
                put('sdr', name, dict(mixes=a.sgld_mixes, error=str(e)))
                log(str(e))
                continue
            record(name, est, a.sgld_mixes, secs, eta)
            masked = np.stack([consistent_masks(est[:, b], m[b]) for b in range(len(m))], axis=1)
            record(name + ', masked', masked, a.sgld_mixes, secs)
            keep_for_figure(name, est)
    # the figure: every method but the as-written chains (which the textbook ones resemble)
    estimates_for_figure = {k: v for k, v in kept.items() if 'as written' not in k}
    if estimates_for_figure:
        figure(os.path.join(a.out, 'toy_mix.png'), mixes[0], refs[0], estimates_for_figure)
    print(markdown(res))


if __name__ == '__main__':
    main()
