"""Evaluate source separation on validation mixtures: per-stem median / mean SDR.

    cd models/research && PYTHONPATH=../training python -m stemflow_research.evaluate \
        --mixtures DIR --references DIR \
        [--nmf ../training/nmf-dictionaries.npz [--nmf-train DIR --nmf-soundfont NAME]] \
        [--glow PRIORS_DIR [--glow-variant mle --glow-variant map:0.5 ...]] \
        [--estimates NAME=DIR ...] [--segment-seconds 5] [--json OUT.json]

Layout: DIR_MIX/<piece>.wav, DIR_REF/<piece>/<stem>.wav, an estimate DIR/<piece>/<stem>.wav.
Audio is mono (multichannel is averaged) at any rate; the baselines work at 22.05 kHz.

SDR (Music Demixing Challenge "global SDR"), per segment of `--segment-seconds` (5 s
by default; a trailing part of at least half a segment counts as a segment):
    SDR = 10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)),  eps = 1e-7,
segments whose reference RMS is below -60 dBFS (silent) are skipped.  Reported per
stem: median and mean over all segments of all pieces.

Methods:
  mixture/N        every stem estimated as mix / N
  oracle IRM       ideal ratio mask |S_i| / sum_j |S_j| on the mixture STFT (upper bound
                   of magnitude-ratio masking, the engine's `consistent` output); also the
                   oracle Wiener mask |S_i|^2 / sum_j |S_j|^2
  KL-NMF           source-only supervised NMF: per-stem KL-NMF dictionaries (--nmf-atoms
                   atoms) learned from isolated training stems (--nmf-train, e.g.
                   ../training/.cache/data/train; --nmf-soundfont: only the stems the data
                   manifest says were rendered with that soundfont), silent frames dropped,
                   on an STFT of its own (--nmf-n-fft / --nmf-hop, default Hann 2048 / 512);
                   dictionaries fixed, activations fitted on the mixture magnitude by
                   multiplicative updates; masks V_i^p / sum_j V_j^p (--nmf-mask-power, 1 = soft
                   masks) with the mixture phase.  The dictionaries and that configuration are
                   saved to / loaded from --nmf (npz); a file without it is the contract STFT
                   with Wiener masks (p = 2).
  Glow             the Rust CLI: `stemflow separate MIX -o OUT --stems ... --priors DIR
                   [--objective map --gamma G]` per mixture.
All other STFTs are the prior contract's (periodic Hann 1024, hop 256, centred, 22.05 kHz).
"""
import argparse
import hashlib
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

from stemflow_training.audio_io import read_mono
from stemflow_training.files import sha256
from stemflow_training.nmf import dictionary_frames, kl_nmf
from stemflow_training.stft import SAMPLE_RATE, istft, stft

STEMS = ('bass', 'drums', 'guitar', 'piano')
EPS = 1e-7
SILENT_DBFS = -60.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


# ---------------------------------------------------------------- metrics
def scored_segments(ref, est, seg):
    """The (reference, estimate) pairs of every non-silent `seg`-sample segment."""
    n = min(len(ref), len(est))
    ref, est = ref[:n], est[:n]
    for s in range(0, n, seg):
        r, e = ref[s:s + seg], est[s:s + seg]
        if len(r) < seg // 2:
            break
        if 10 * np.log10(np.mean(r ** 2) + 1e-20) < SILENT_DBFS:
            continue
        yield r, e


def segment_sdrs(ref, est, seg):
    return [10 * np.log10((np.sum(r ** 2) + EPS) / (np.sum((r - e) ** 2) + EPS))
            for r, e in scored_segments(ref, est, seg)]


def segment_level_bias(ref, est, seg):
    """Estimate level minus reference level (dB) per scored segment: which stems a method leaves
    too quiet or too loud."""
    return [10 * np.log10((np.sum(e ** 2) + EPS) / (np.sum(r ** 2) + EPS))
            for r, e in scored_segments(ref, est, seg)]


# ---------------------------------------------------------------- KL-NMF
# kl_nmf and the dictionary frames live in the trainer's package (stemflow_training.nmf), which
# also stores a dictionary in a prior (nmf.bin); `ev.kl_nmf` stays importable from here.


def soundfont_of_segments(train_dir, stem):
    """{segment file name: soundfont} of one stem's training segments, from the data manifest
    beside the split folder (segments are `<piece id>_<index>.wav`)."""
    manifest = os.path.join(os.path.dirname(os.path.abspath(train_dir)), 'manifest.json')
    if not os.path.exists(manifest):
        sys.exit(f"evaluate: --nmf-soundfont needs the data manifest, expected at {manifest}")
    with open(manifest) as f:
        pieces = json.load(f)['splits'][os.path.basename(os.path.abspath(train_dir))]
    by_piece = {p['id']: p['stems'][stem]['soundfont'] for p in pieces if stem in p['stems']}
    out = {}
    for path in glob.glob(os.path.join(train_dir, stem, '*.wav')):
        name = os.path.basename(path)
        piece = name.rsplit('_', 1)[0]
        if piece in by_piece:
            out[name] = by_piece[piece]
    return out


def learn_dictionaries(train_dir, stems, atoms, iters, max_frames, seed, n_fft, hop, soundfont=None):
    """Per-stem dictionaries from `train_dir/<stem>/*.wav` (only `soundfont`'s segments if given)
    on an STFT of n_fft / hop: up to `max_frames` non-silent frames of randomly chosen segments."""
    rng = np.random.default_rng(seed)
    dicts, info = {}, {}
    for stem in stems:
        files = sorted(glob.glob(os.path.join(train_dir, stem, '*.wav')))
        if soundfont:
            fonts = soundfont_of_segments(train_dir, stem)
            files = [f for f in files if fonts.get(os.path.basename(f)) == soundfont]
        if not files:
            sys.exit(f"evaluate: no training stems in {os.path.join(train_dir, stem)}"
                     + (f" rendered with {soundfont}" if soundfont else ''))
        # files in an order drawn from rng, silent frames dropped, up to max_frames frames
        V, used = dictionary_frames(files, n_fft, hop, max_frames, rng)
        t = time.time()
        W, _ = kl_nmf(V, atoms, iters, rng)
        dicts[stem] = W.astype(np.float32)
        info[stem] = {'files': used, 'frames': int(V.shape[1]), 'seconds': round(time.time() - t, 1)}
        print(f"evaluate: NMF dictionary {stem}: {atoms} atoms from {V.shape[1]} frames of {used} files "
              f"({info[stem]['seconds']} s)", flush=True)
    return dicts, info


def nmf_separate(mix, dicts, iters, rng, power=2.0, n_fft=1024, hop=256):
    """Activations of the fixed `dicts` fitted on the mixture's magnitude (STFT n_fft / hop), then
    masks V_i^power / sum_j V_j^power on the mixture STFT, inverted with its phase."""
    X = stft(mix, n_fft=n_fft, hop=hop)
    V = np.abs(X)
    names = list(dicts)
    W = np.concatenate([dicts[s] for s in names], axis=1).astype(np.float64)
    _, H = kl_nmf(V, None, iters, rng, W=W)
    parts, k0 = [], 0
    for s in names:
        k = dicts[s].shape[1]
        parts.append(W[:, k0:k0 + k] @ H[k0:k0 + k])
        k0 += k
    P = np.stack(parts) ** power
    masks = P / (P.sum(axis=0, keepdims=True) + 1e-12)
    return {s: istft(masks[i] * X, len(mix), n_fft=n_fft, hop=hop) for i, s in enumerate(names)}


def oracle_separate(mix, refs, stems, power):
    X = stft(mix)
    S = np.stack([np.abs(stft(refs[s])) ** power for s in stems])
    masks = S / (S.sum(axis=0, keepdims=True) + 1e-12)
    return {s: istft(masks[i] * X, len(mix)) for i, s in enumerate(stems)}


# ---------------------------------------------------------------- Glow (Rust CLI)
STEMFLOW_EXE = os.path.join(REPO, 'target', 'release', 'stemflow')


def stemflow_cmd():
    """The release CLI, built first if it is missing."""
    if not os.path.exists(STEMFLOW_EXE):
        subprocess.run(['cargo', 'build', '--release', '--quiet', '--bin', 'stemflow',
                        '--manifest-path', os.path.join(REPO, 'Cargo.toml')], check=True)
    return [STEMFLOW_EXE]


_ENGINE_KEY = []


def engine_key():
    """Short hash of the CLI binary that makes the Glow estimates: the cache never serves
    estimates made by another build (a changed default would otherwise be invisible in the key,
    which holds only the options given). Any rebuild starts a new cache."""
    if not _ENGINE_KEY:
        stemflow_cmd()
        _ENGINE_KEY.append(sha256(STEMFLOW_EXE)[:8])
    return _ENGINE_KEY[0]


def file_key(path):
    """Short hash of a mixture file's bytes: two sets with the same piece names (e.g. valid and
    valid-heldout-sf) never share cached estimates."""
    return sha256(path)[:8]


def priors_key(priors, stems):
    """Short hash of the priors' manifests: the estimate cache never mixes two sets of priors."""
    h = hashlib.sha256()
    for s in stems:
        with open(os.path.join(priors, s, 'manifest.json'), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:10]


def prior_row_name(priors, stems, variant, cli_args):
    """The table row of a prior set the CLI runs: its family (the manifest's domain and model
    kind: Glow, FloWaveNet, WaveNet) and its search (the objective, or --separator when given)."""
    with open(os.path.join(priors, stems[0], 'manifest.json')) as f:
        manifest = json.load(f)
    kind = manifest.get('model', {}).get('kind', '') if manifest.get('domain') == 'waveform' else 'glow'
    family = {'glow': 'Glow', 'flowavenet': 'FloWaveNet', 'wavenet': 'WaveNet'}.get(kind, kind or 'waveform')
    words = cli_args.split()
    separator = words[words.index('--separator') + 1] if '--separator' in words[:-1] else None
    objective = 'MLE' if variant == 'mle' else f"MAP γ={variant.split(':')[1]}"
    if separator is None:
        return f"{family} {objective}"
    return f"{family} + {separator}" if variant == 'mle' else f"{family} + {separator} ({objective})"


def run_glow(mix_path, out_dir, priors, variant, stems, extra):
    cmd = stemflow_cmd() + ['separate', mix_path, '-o', out_dir, '--stems', ','.join(stems), '--priors', priors]
    if variant != 'mle':
        kind, _, gamma = variant.partition(':')
        if kind != 'map':
            sys.exit(f"evaluate: unknown --glow-variant {variant!r} (mle or map:GAMMA)")
        cmd += ['--objective', 'map', '--gamma', gamma]
    cmd += extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"evaluate: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    # a separation that succeeded may still have changed its settings (a halved Langevin step)
    for line in r.stderr.splitlines():
        if ' WARN' in line:
            print(f"evaluate: {os.path.basename(mix_path)}: {line}", file=sys.stderr)


# ---------------------------------------------------------------- table
def summarise(sdrs):
    return {s: {'median': float(np.median(v)) if v else float('nan'),
                'mean': float(np.mean(v)) if v else float('nan'), 'segments': len(v)} for s, v in sdrs.items()}


def markdown(results, stems):
    head = '| method | ' + ' | '.join(stems) + ' | avg of medians |'
    sub = '|---|' + '---|' * (len(stems) + 1)
    lines = [head, sub]
    for name, res in results.items():
        cells = [f"{res[s]['median']:.2f} / {res[s]['mean']:.2f}" for s in stems]
        avg = np.mean([res[s]['median'] for s in stems])
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {avg:.2f} |')
    return '\n'.join(lines)


def parse_args(argv):
    """The command line (see the module doc)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mixtures', required=True)
    ap.add_argument('--references', required=True)
    ap.add_argument('--stems', default=','.join(STEMS))
    ap.add_argument('--segment-seconds', type=float, default=5.0)
    ap.add_argument('--limit', type=int, default=0, help='first N mixtures only (sorted by name)')
    ap.add_argument('--max-seconds', type=float, default=0.0,
                    help='evaluate only the first S seconds of each piece (e.g. 14: three 5-s frames)')
    ap.add_argument('--shard', default=None, metavar='K/N',
                    help='only mixtures K, K+N, K+2N, ... (0-based, after --limit): run N processes in parallel '
                         'with --no-baselines, then once without --shard to print the table from the cache')
    ap.add_argument('--no-baselines', action='store_true', help='skip mixture/N, oracle and NMF')
    ap.add_argument('--nmf', default=os.path.join(REPO, 'models', 'training', 'nmf-dictionaries.npz'),
                    help='dictionary file: loaded if it exists, else learned from --nmf-train and saved')
    ap.add_argument('--nmf-train', default=None, help='DIR/<stem>/*.wav isolated training stems')
    ap.add_argument('--nmf-atoms', type=int, default=48)
    ap.add_argument('--nmf-learn-iters', type=int, default=200)
    ap.add_argument('--nmf-max-frames', type=int, default=20000)
    ap.add_argument('--nmf-soundfont', default=None,
                    help='learn only from the training stems rendered with this soundfont (data manifest name)')
    ap.add_argument('--nmf-n-fft', type=int, default=2048, help='NMF STFT size (Hann, periodic) when learning')
    ap.add_argument('--nmf-hop', type=int, default=512, help='NMF STFT hop when learning')
    ap.add_argument('--nmf-mask-power', type=float, default=1.0,
                    help='NMF masks V_i^p / sum V_j^p when learning (1 = soft, 2 = Wiener)')
    ap.add_argument('--nmf-iters', type=int, default=200, help='activation updates on each mixture')
    ap.add_argument('--glow', default=None, help='priors folder for `stemflow separate --priors`')
    ap.add_argument('--glow-variant', action='append', default=None,
                    help='mle (default) or map:GAMMA; repeatable')
    ap.add_argument('--glow-args', default='', help='extra arguments for stemflow separate (one string)')
    ap.add_argument('--work', default=os.path.join(REPO, 'models', 'training', '.cache', 'eval'),
                    help='where Glow estimates are written')
    ap.add_argument('--estimates', action='append', default=[], metavar='NAME=DIR',
                    help='precomputed estimates DIR/<piece>/<stem>.wav')
    ap.add_argument('--json', default=None, help='write the per-segment SDRs and summary here')
    ap.add_argument('--level-bias', action='store_true',
                    help='also print each method\'s estimate level minus the reference level (dB) per stem')
    return ap.parse_args(argv)


def select_mixtures(args):
    """The mixture files to score: sorted by name, then --limit, then --shard."""
    mixes = sorted(glob.glob(os.path.join(args.mixtures, '*.wav')))
    if args.limit:
        mixes = mixes[:args.limit]
    if args.shard:
        k, _, n = args.shard.partition('/')
        mixes = mixes[int(k)::int(n)]
    if not mixes:
        sys.exit(f"evaluate: no mixtures in {args.mixtures}")
    return mixes


def nmf_config(info):
    """How the dictionaries in a file are used: {n_fft, hop, mask_power, soundfont}; a file from
    before these keys is the contract STFT with Wiener masks."""
    return {'n_fft': info.get('n_fft', 1024), 'hop': info.get('hop', 256),
            'mask_power': info.get('mask_power', 2.0), 'soundfont': info.get('soundfont')}


def nmf_dictionaries(args, stems):
    """The KL-NMF dictionaries and their configuration: loaded from --nmf, else learned from
    --nmf-train and saved there, else (None, None) (NMF skipped)."""
    if os.path.exists(args.nmf):
        z = np.load(args.nmf)
        print(f"evaluate: NMF dictionaries from {args.nmf}", flush=True)
        info = json.loads(str(z['info'])) if 'info' in z.files else {}
        return {s: z[s] for s in z.files if s != 'info'}, nmf_config(info)
    if args.nmf_train:
        dicts, info = learn_dictionaries(args.nmf_train, stems, args.nmf_atoms, args.nmf_learn_iters,
                                         args.nmf_max_frames, 3, args.nmf_n_fft, args.nmf_hop,
                                         args.nmf_soundfont)
        meta = {'train_dir': os.path.relpath(os.path.abspath(args.nmf_train), REPO), 'atoms': args.nmf_atoms,
                'learn_iters': args.nmf_learn_iters, 'max_frames': args.nmf_max_frames, 'seed': 3,
                'n_fft': args.nmf_n_fft, 'hop': args.nmf_hop, 'mask_power': args.nmf_mask_power,
                'soundfont': args.nmf_soundfont,
                'stft': f'hann-periodic {args.nmf_n_fft} / {args.nmf_hop}, 22.05 kHz, magnitudes',
                'per_stem': info}
        np.savez_compressed(args.nmf, **dicts, info=json.dumps(meta))
        print(f"evaluate: saved NMF dictionaries to {args.nmf}", flush=True)
        return dicts, nmf_config(meta)
    print("evaluate: no NMF dictionaries (--nmf file missing, no --nmf-train): NMF skipped", flush=True)
    return None, None


def methods_to_run(args, stems):
    """{table row name: how to make its estimates}, in the table's order: the baselines, the Glow
    variants, then the precomputed estimate folders."""
    methods = {}
    if not args.no_baselines:
        methods[f'mixture/{len(stems)}'] = 'mix'
        methods['oracle IRM (magnitude ratio)'] = 'irm1'
        methods['oracle Wiener (power ratio)'] = 'irm2'
        dicts, config = nmf_dictionaries(args, stems)
        if dicts is not None:
            if not set(stems) <= set(dicts):
                print(f"evaluate: {args.nmf} has no dictionary for some of {','.join(stems)}: NMF skipped", flush=True)
            else:
                masks = {1.0: 'soft masks', 2.0: 'Wiener'}.get(config['mask_power'], f"masks p={config['mask_power']:g}")
                name = (f"KL-NMF ({dicts[stems[0]].shape[1]} atoms/stem, STFT {config['n_fft']}/{config['hop']}, "
                        + (f"{config['soundfont']} only, " if config['soundfont'] else '') + f"{masks})")
                methods[name] = ('nmf', {s: dicts[s] for s in stems}, config)
    for variant in (args.glow_variant or (['mle'] if args.glow else [])):
        methods[prior_row_name(args.glow, stems, variant, args.glow_args)] = ('glow', variant)
    for item in args.estimates:
        name, _, d = item.partition('=')
        methods[name] = ('dir', d)
    return methods


def load_piece(args, mp, stems):
    """One piece: (mixture path the CLI separates, its cache key, mixture, references), the mixture
    cropped to --max-seconds (a cropped copy written under --work) and the references padded or
    cut to its length."""
    pid = os.path.splitext(os.path.basename(mp))[0]
    # the cache key of this piece's estimates: the source file's bytes (a cropped copy's own
    # bytes are not stable: libsndfile stamps float WAVs with the time they were written)
    source_key = file_key(mp)
    mix = read_mono(mp)
    if args.max_seconds:
        # the first --max-seconds of the piece: a cropped copy (22.05 kHz mono) is what Glow separates
        mix = mix[:int(round(args.max_seconds * SAMPLE_RATE))]
        import soundfile as sf
        # keyed by the source file's bytes: two sets with the same piece names (valid and
        # valid-heldout-sf) evaluated at the same time must not overwrite each other's crops
        mp = os.path.join(args.work, f'crop-{args.max_seconds:g}s', source_key, f'{pid}.wav')
        os.makedirs(os.path.dirname(mp), exist_ok=True)
        sf.write(mp, mix.astype(np.float32), SAMPLE_RATE, subtype='FLOAT')
    refs = {s: read_mono(os.path.join(args.references, pid, f'{s}.wav')) for s in stems}
    n = len(mix)
    refs = {s: np.pad(r, (0, max(0, n - len(r))))[:n] for s, r in refs.items()}
    return mp, source_key, mix, refs


def glow_out_dir(args, stems, variant, pid, source_key):
    """The cache folder of one piece's Glow estimates: keyed by the priors, the CLI binary, the
    variant, the crop, the extra CLI arguments and the mixture's bytes."""
    return os.path.join(args.work, f"glow-{priors_key(args.glow, stems)}-{engine_key()}-{variant.replace(':', '-')}"
                        + (f"-first{args.max_seconds:g}s" if args.max_seconds else '')
                        + (f"-{hashlib.sha256(args.glow_args.encode()).hexdigest()[:8]}" if args.glow_args else ''),
                        f"{pid}-{source_key}")


def estimate(args, how, stems, pid, mp, source_key, mix, refs):
    """One method's estimates {stem: samples} of one piece."""
    if how == 'mix':
        return {s: mix / len(stems) for s in stems}
    if how in ('irm1', 'irm2'):
        return oracle_separate(mix, refs, stems, 1.0 if how == 'irm1' else 2.0)
    if how[0] == 'nmf':
        config = how[2]
        return nmf_separate(mix, how[1], args.nmf_iters, np.random.default_rng(0), config['mask_power'],
                            config['n_fft'], config['hop'])
    if how[0] == 'glow':
        out = glow_out_dir(args, stems, how[1], pid, source_key)
        if not all(os.path.exists(os.path.join(out, f'{s}.wav')) for s in stems):
            run_glow(mp, out, args.glow, how[1], stems, args.glow_args.split())
        return {s: read_mono(os.path.join(out, f'{s}.wav')) for s in stems}
    return {s: read_mono(os.path.join(how[1], pid, f'{s}.wav')) for s in stems}


def score_all(args, mixes, methods, stems):
    """Every method on every piece: per-segment SDRs and level biases per method and stem, and the
    SDRs per piece; one progress line per piece and method."""
    seg = int(round(args.segment_seconds * SAMPLE_RATE))
    sdrs = {m: {s: [] for s in stems} for m in methods}
    bias = {m: {s: [] for s in stems} for m in methods}
    per_piece = {m: {} for m in methods}
    for path in mixes:
        pid = os.path.splitext(os.path.basename(path))[0]
        mp, source_key, mix, refs = load_piece(args, path, stems)
        for name, how in methods.items():
            tm = time.time()
            est = estimate(args, how, stems, pid, mp, source_key, mix, refs)
            per_piece[name][pid] = {}
            for s in stems:
                v = segment_sdrs(refs[s], est[s], seg)
                sdrs[name][s] += v
                bias[name][s] += segment_level_bias(refs[s], est[s], seg)
                per_piece[name][pid][s] = v
            print(f"evaluate: {pid:32s} {name:30s} " + ' '.join(
                f"{s} {np.median(per_piece[name][pid][s]) if per_piece[name][pid][s] else float('nan'):6.2f}" for s in stems)
                + f"  ({time.time() - tm:.1f} s)", flush=True)
    return sdrs, bias, per_piece


def report(args, mixes, stems, sdrs, bias, per_piece, seconds):
    """Print the tables (and the level bias with --level-bias), write --json; the summary."""
    results = {m: summarise(v) for m, v in sdrs.items()}
    nseg = {s: len(sdrs[next(iter(sdrs))][s]) for s in stems}
    print()
    print(f"{len(mixes)} mixtures from {args.mixtures}; SDR in dB per {args.segment_seconds:g}-s segment "
          f"(median / mean; silent reference segments skipped; segments per stem: "
          + ', '.join(f'{s} {nseg[s]}' for s in stems) + f"); {seconds:.0f} s")
    print()
    print(markdown(results, stems))
    if args.level_bias:
        print()
        print('Level bias: estimate level − reference level, dB per segment (median / mean; the last column '
              'is the average of medians)')
        print()
        print(markdown({m: summarise(v) for m, v in bias.items()}, stems))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'mixtures': args.mixtures, 'segment_seconds': args.segment_seconds, 'summary': results,
                       'per_piece': per_piece}, f, indent=1)
    return results


def main(argv=None):
    """Score every method on every selected mixture and print the table."""
    args = parse_args(argv)
    stems = tuple(args.stems.split(','))
    mixes = select_mixtures(args)
    methods = methods_to_run(args, stems)
    t0 = time.time()
    sdrs, bias, per_piece = score_all(args, mixes, methods, stems)
    return report(args, mixes, stems, sdrs, bias, per_piece, time.time() - t0)


if __name__ == '__main__':
    main()
