"""Frame features of speech for speaker models: log-mel and STFT-magnitude frames, and MFCCs.

Every function takes a waveform tensor (..., T) and returns frames (..., features, frames),
computed with `dlslab.audio.stft.stft` (Hann window, centred), so a batch of zero-padded
waveforms gives each utterance's frames at the start of its row.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Literal

import numpy as np
import torch

from dlslab.audio.stft import stft

FeatureKind = Literal["logmel", "stft"]
LOG_FLOOR = 1e-6  # added to powers before the log, so silence gives a finite floor


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@cache
def _mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> torch.Tensor:
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling))).float()  # (n_mels, F)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """Triangular filters (n_mels, n_fft // 2 + 1), evenly spaced on the mel scale."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel band {fmin}-{fmax} Hz must lie within 0-{sample_rate / 2} Hz")
    return _mel_filterbank(n_mels, n_fft, sample_rate, float(fmin), float(fmax)).clone()


def power_spectrogram(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT|^2, (..., n_fft // 2 + 1, frames)."""
    return stft(wave, n_fft, hop).abs().square()


def log_mel(wave: torch.Tensor, sample_rate: int, *, n_mels: int = 40, n_fft: int = 512,
            hop: int = 256, fmax: float | None = None) -> torch.Tensor:
    """Log mel-band energies (..., n_mels, frames)."""
    fb = mel_filterbank(n_mels, n_fft, sample_rate, fmax=fmax).to(wave.device, wave.dtype)
    power = power_spectrogram(wave, n_fft, hop)  # (..., F, frames)
    return torch.log(torch.einsum("mf,...ft->...mt", fb, power) + LOG_FLOOR)


def log_stft_magnitude(wave: torch.Tensor, *, n_fft: int = 512, hop: int = 256) -> torch.Tensor:
    """log |STFT| (..., n_fft // 2 + 1, frames)."""
    return 0.5 * torch.log(power_spectrogram(wave, n_fft, hop) + LOG_FLOOR)


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Orthonormal DCT-II basis (n_out, n_in)."""
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    n = torch.arange(n_in, dtype=torch.float64)[None]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def cepstrum(mel: torch.Tensor, n_mfcc: int = 20) -> torch.Tensor:
    """MFCCs (..., n_mfcc, frames) from log mel energies (..., n_mels, frames)."""
    return torch.einsum("cm,...mt->...ct", dct_matrix(n_mfcc, mel.shape[-2]).to(mel), mel)


def mfcc(wave: torch.Tensor, sample_rate: int, *, n_mfcc: int = 20, n_mels: int = 40,
         n_fft: int = 512, hop: int = 256) -> torch.Tensor:
    """Mel-frequency cepstral coefficients (..., n_mfcc, frames): DCT of the log mel energies."""
    return cepstrum(log_mel(wave, sample_rate, n_mels=n_mels, n_fft=n_fft, hop=hop), n_mfcc)


def frame_features(wave: torch.Tensor, sample_rate: int, kind: FeatureKind = "logmel", *,
                   n_mels: int = 40, n_fft: int = 512, hop: int = 256) -> torch.Tensor:
    """The model's input frames: log-mel (n_mels rows) or log STFT magnitude (n_fft // 2 + 1 rows)."""
    if kind == "logmel":
        return log_mel(wave, sample_rate, n_mels=n_mels, n_fft=n_fft, hop=hop)
    if kind == "stft":
        return log_stft_magnitude(wave, n_fft=n_fft, hop=hop)
    raise ValueError(f"unknown feature kind {kind!r}; valid: logmel, stft")
