"""STFT exactly as in models/CONTRACT.md, and its inverse.

periodic Hann (1024), hop 256, centred frames with ZERO padding, unscaled rfft.
Frame t is centred on sample t*hop.  A segment of n samples gives 1 + n // hop
frames (110250 -> 431); `magnitude_frames` appends frames (centred past the end)
until the requested count (432 for a 5-s segment).  `istft` inverts `stft` exactly
(weighted overlap-add with the same window).
"""
import numpy as np

N_FFT = 1024
HOP = 256
SAMPLE_RATE = 22050
BINS = N_FFT // 2 + 1
FRAME_SECONDS = 5.0
SEGMENT_SAMPLES = int(SAMPLE_RATE * FRAME_SECONDS)  # 110250
FRAMES = 432


def hann_periodic(n=N_FFT):
    k = np.arange(n)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


def stft(x, n_frames=None, n_fft=N_FFT, hop=HOP):
    """Complex STFT [bins, frames] of a 1-D signal.

    X[b, t] = sum_n w[n] x[t*hop - n_fft/2 + n] e^{-2 pi i b n / n_fft}, x = 0 outside.
    n_frames defaults to 1 + len(x) // hop.
    """
    x = np.asarray(x, dtype=np.float64)
    if n_frames is None:
        n_frames = 1 + len(x) // hop
    half = n_fft // 2
    total = (n_frames - 1) * hop + n_fft
    padded = np.zeros(total, dtype=np.float64)
    m = min(len(x), total - half)
    padded[half:half + m] = x[:m]
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = padded[idx] * hann_periodic(n_fft)[None, :]
    return np.fft.rfft(frames, axis=1).T  # [bins, frames]


def magnitude(x, n_frames=None):
    return np.abs(stft(x, n_frames=n_frames)).astype(np.float32)


def segment_magnitude(x):
    """Magnitude [513, 432] of a 5-s segment (zero-padded / truncated to 110250 samples)."""
    seg = np.zeros(SEGMENT_SAMPLES, dtype=np.float64)
    n = min(len(x), SEGMENT_SAMPLES)
    seg[:n] = x[:n]
    return magnitude(seg, n_frames=FRAMES)


def istft(X, length, n_fft=N_FFT, hop=HOP):
    """Inverse of stft with the same n_fft and hop (weighted overlap-add with the same window,
    exact)."""
    w = hann_periodic(n_fft)
    frames = np.fft.irfft(X.T, n=n_fft, axis=1) * w[None, :]
    n_frames = X.shape[1]
    total = (n_frames - 1) * hop + n_fft
    y = np.zeros(total)
    norm = np.zeros(total)
    for t in range(n_frames):
        y[t * hop:t * hop + n_fft] += frames[t]
        norm[t * hop:t * hop + n_fft] += w ** 2
    half = n_fft // 2
    y = y[half:half + length]
    norm = norm[half:half + length]
    return y / np.maximum(norm, 1e-8)
