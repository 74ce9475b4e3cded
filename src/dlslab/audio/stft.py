"""STFT and inverse STFT in torch, with magnitude/phase helpers.

Defaults follow the classic denoising setting: a 1024-point Hann window and hop 512, so a
frame has n_fft // 2 + 1 = 513 frequency bins. The window is centred (frames are padded
by n_fft // 2 on both sides), which makes `istft(stft(x), length=len(x))` reproduce `x`.
"""

from __future__ import annotations

import torch

N_FFT = 1024  # default window length in samples
HOP = 512  # default hop between frames in samples


def _window(n_fft: int, ref: torch.Tensor) -> torch.Tensor:
    dtype = ref.real.dtype if ref.is_complex() else ref.dtype
    return torch.hann_window(n_fft, dtype=dtype, device=ref.device)


def stft(wave: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """Complex spectrogram (..., n_fft // 2 + 1, frames) of `wave` (..., T)."""
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1])  # (B, T)
    spec = torch.stft(flat, n_fft, hop_length=hop, window=_window(n_fft, flat), center=True,
                      return_complex=True)  # (B, F, frames)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP, length: int | None = None) -> torch.Tensor:
    """Waveform (..., T) from a complex spectrogram (..., n_fft // 2 + 1, frames)."""
    shape = spec.shape
    flat = spec.reshape(-1, *shape[-2:])  # (B, F, frames)
    wave = torch.istft(flat, n_fft, hop_length=hop, window=_window(n_fft, flat), center=True,
                       length=length)  # (B, T)
    return wave.reshape(*shape[:-2], wave.shape[-1])


def magphase(spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|X|, angle X) of a complex spectrogram."""
    return spec.abs(), spec.angle()


def reconstruct(mag: torch.Tensor, phase: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP,
                length: int | None = None) -> torch.Tensor:
    """Waveform from an (estimated) magnitude and a (noisy) phase of the same shape."""
    return istft(torch.polar(mag.clamp_min(0), phase), n_fft, hop, length)
