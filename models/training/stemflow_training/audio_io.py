"""Reading audio files the way the priors and the evaluation see them: mono float64.

Any rate and any number of channels (channels are averaged); `read_mono` resamples to the
contract's 22.05 kHz (or `rate`) with scipy.signal.resample_poly.
"""
import math

from .stft import SAMPLE_RATE


def read_audio(path):
    """(mono float64 samples, sample rate) of an audio file: its channels averaged."""
    import soundfile as sf
    y, sr = sf.read(path, dtype='float64', always_2d=True)
    return y.mean(axis=1), int(sr)


def read_mono(path, rate=SAMPLE_RATE):
    """Mono float64 samples of an audio file at `rate` (resampled when the file's rate differs)."""
    from scipy.signal import resample_poly
    y, sr = read_audio(path)
    if sr != rate:
        g = math.gcd(sr, rate)
        y = resample_poly(y, rate // g, sr // g)
    return y
