"""Demo and test audio (seeds never used in training: synth.FIXTURE_BASE + ...).

    python -m stemflow_training.make_demo

models/demo/mix.wav                20 s, 44.1 kHz, stereo, 16-bit PCM; the four synthetic
                                   sources with mild constant-power panning, peak <= -1 dBFS
models/demo/references/<kind>.wav  the stereo stems (16-bit); the mix is the sample-exact
                                   integer sum of the four stem files
tests/fixtures/two_source/         mix.wav, sine.wav, noise.wav: 8 s, 22.05 kHz, mono,
                                   float32 WAV, mix = float32(sine + noise), sine 3 dB above noise
                                   (RMS), mix peak <= 0.9
"""
import os

import numpy as np
import soundfile as sf

from . import synth

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
PAN = {'sine': -0.35, 'noise': 0.1, 'saw': 0.4, 'square': -0.15}   # -1 left .. +1 right
PEAK = 10 ** (-1.0 / 20)
SINE_OVER_NOISE_DB = 3.0   # two_source: sine RMS this much above noise RMS


def demo(out_dir, seconds=20.0, sr=44100):
    stems = {}
    for k in synth.KINDS:
        y = synth.render(k, synth.FIXTURE_BASE + synth.KIND_OFFSET[k], seconds, sr)
        th = (PAN[k] + 1) * np.pi / 4
        stems[k] = np.stack([np.cos(th) * y, np.sin(th) * y], axis=1) * np.sqrt(2)
    mix = sum(stems.values())
    gain = min(1.0, 0.98 * PEAK / np.max(np.abs(mix)))
    ints = {k: np.round(v * gain * 32767).astype(np.int32) for k, v in stems.items()}
    mix_i = sum(ints.values())
    assert np.max(np.abs(mix_i)) <= PEAK * 32768
    os.makedirs(os.path.join(out_dir, 'references'), exist_ok=True)
    sf.write(os.path.join(out_dir, 'mix.wav'), mix_i.astype(np.int16), sr, subtype='PCM_16')
    for k, v in ints.items():
        sf.write(os.path.join(out_dir, 'references', f'{k}.wav'), v.astype(np.int16), sr, subtype='PCM_16')
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
    demo(os.path.join(ROOT, 'models', 'demo'))
    two_source(os.path.join(ROOT, 'tests', 'fixtures', 'two_source'))


if __name__ == '__main__':
    main()
