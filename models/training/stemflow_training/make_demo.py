"""Demo and test audio.

    python -m stemflow_training.make_demo [--demo-only]

models/demo/mix.wav                20 s, 44.1 kHz, stereo, 16-bit PCM: a generated song (seed
                                   DEMO_SEED, in neither split of the priors' data) rendered by
                                   FluidSynth with the training soundfonts; bass, drums, guitar,
                                   piano with mild constant-power panning, peak <= -1 dBFS
models/demo/references/<stem>.wav  the stereo stems (16-bit); the mix is the sample-exact
                                   integer sum of the four stem files
models/demo/demo.json              what was rendered (programs, soundfonts, levels)
tests/fixtures/two_source/         mix.wav, sine.wav, noise.wav: 8 s, 22.05 kHz, mono,
                                   float32 WAV, mix = float32(sine + noise), sine 3 dB above noise
                                   (RMS), mix peak <= 0.9
"""
import json
import os

import numpy as np
import soundfile as sf

from . import synth

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
PAN = {'bass': 0.0, 'drums': 0.1, 'guitar': -0.4, 'piano': 0.35}   # -1 left .. +1 right
DEMO_SEED = 950000     # generated-song seed outside both splits (train 100000+i, valid 900000+i)
DEMO_SECONDS = 20.0
PEAK = 10 ** (-1.0 / 20)
SINE_OVER_NOISE_DB = 3.0   # two_source: sine RMS this much above noise RMS


def demo(out_dir, seconds=DEMO_SECONDS, sr=44100):
    """The shipped demo: a generated song (a seed in neither split of the priors' data) rendered
    by FluidSynth at 44.1 kHz with the training soundfonts, four stems panned to stereo."""
    from . import render
    from .fluid import Synth
    render.check_packages(install=True)
    loaded = {}

    def synths(name):
        if name not in loaded:
            loaded[name] = Synth(render.SOUNDFONTS[name][0], sr)
        return loaded[name]

    piece = {'id': f'gen{DEMO_SEED}', 'family': 'generated', 'source': f'seed:{DEMO_SEED}', 'seed': DEMO_SEED}
    spec, mono = render.render_piece(piece, synths, os.path.join(ROOT, 'models', 'training', '.cache',
                                                                 'music21-notes'), False, 'valid', sr=sr)
    n = int(seconds * sr)
    fade = np.minimum(1.0, (n - np.arange(n)) / (0.5 * sr))          # 0.5-s fade-out at the end
    stems = {}
    for k in render.STEMS:
        y = np.pad(mono[k], (0, max(0, n - len(mono[k]))))[:n] * fade
        th = (PAN[k] + 1) * np.pi / 4
        stems[k] = np.stack([np.cos(th) * y, np.sin(th) * y], axis=1) * np.sqrt(2)
    mix = sum(stems.values())
    gain = min(4.0, 0.98 * PEAK / np.max(np.abs(mix)))
    ints = {k: np.round(v * gain * 32767).astype(np.int32) for k, v in stems.items()}
    mix_i = sum(ints.values())
    assert np.max(np.abs(mix_i)) <= PEAK * 32768
    refs = os.path.join(out_dir, 'references')
    os.makedirs(refs, exist_ok=True)
    for f in os.listdir(refs):
        os.remove(os.path.join(refs, f))
    sf.write(os.path.join(out_dir, 'mix.wav'), mix_i.astype(np.int16), sr, subtype='PCM_16')
    for k, v in ints.items():
        sf.write(os.path.join(refs, f'{k}.wav'), v.astype(np.int16), sr, subtype='PCM_16')
    with open(os.path.join(out_dir, 'demo.json'), 'w') as f:
        json.dump({'command': 'python -m stemflow_training.make_demo', 'seconds': seconds, 'sample_rate': sr,
                   'pan': PAN, 'piece': spec}, f, indent=1)
    print('demo mix peak dBFS', 20 * np.log10(np.max(np.abs(mix_i)) / 32768))


def two_source(out_dir, seconds=8.0, sr=22050):
    os.makedirs(out_dir, exist_ok=True)
    ys = {k: synth.render(k, synth.FIXTURE_BASE + synth.KIND_OFFSET[k] + 1, seconds, sr)
          for k in ('sine', 'noise')}
    rms = {k: np.sqrt(np.mean(v ** 2)) for k, v in ys.items()}
    ys['sine'] *= rms['noise'] / rms['sine'] * 10 ** (SINE_OVER_NOISE_DB / 20)   # comparable levels
    gain = min(1.0, 0.9 / np.max(np.abs(ys['sine'] + ys['noise'])))
    ys = {k: (v * gain).astype(np.float32) for k, v in ys.items()}
    mix = ys['sine'] + ys['noise']                                             # float32 sum
    for k, v in ys.items():
        print(f'two_source {k} RMS {20 * np.log10(np.sqrt(np.mean(v.astype(np.float64) ** 2))):.1f} dBFS')
    for k, v in list(ys.items()) + [('mix', mix)]:
        sf.write(os.path.join(out_dir, f'{k}.wav'), v, sr, subtype='FLOAT')
    print('two_source peak', float(np.max(np.abs(mix))))


def main():
    import sys
    demo(os.path.join(ROOT, 'models', 'demo'))
    if '--demo-only' in sys.argv[1:]:
        return
    two_source(os.path.join(ROOT, 'tests', 'fixtures', 'two_source'))


if __name__ == '__main__':
    main()
