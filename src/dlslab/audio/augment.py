"""Training augmentations of speech for speaker models: crops, speed, noise, band masks.

Crops, noise and band masks act on batches of frame features (B, F, T) with a frame mask
(B, T) on the device, drawing from torch's global generator (which `fit` checkpoints, so a
resumed run draws the same); speed perturbation acts on waveforms once, before features.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from dlslab.audio.features import FeatureKind, frame_features
from dlslab.audio.io import read_audio
from dlslab.audio.noise import AUDIO_SUFFIXES
from dlslab.audio.speakers import Utterance, normalise_level


def random_crops(frames: torch.Tensor, lengths: torch.Tensor, idx: torch.Tensor,
                 crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random window of `crop` frames of each utterance idx -> (x (B, F, crop), mask (B, crop));
    utterances shorter than `crop` are taken whole, padded and masked."""
    length = lengths[idx]
    start = (torch.rand(len(idx), device=frames.device) * (length - crop + 1).clamp_min(1)).long()
    t = start[:, None] + torch.arange(crop, device=frames.device)[None]  # (B, crop)
    mask = t < length[:, None]
    t = t.clamp(max=frames.shape[-1] - 1)
    x = torch.gather(frames[idx], 2, t[:, None].expand(-1, frames.shape[1], -1))  # (B, F, crop)
    return x * mask[:, None], mask.float()


def speed_perturbed(utterances: list[Utterance], factors: list[float]) -> list[Utterance]:
    """Copies of `utterances` played `factor` times faster (resampled, so pitch and formants
    move too); each (speaker, factor) is a new pseudo-speaker `speaker@x<factor>`."""
    from scipy.signal import resample_poly

    out = []
    for factor in factors:
        ratio = Fraction(factor).limit_denominator(100)  # new length = old length / factor
        out += [Utterance(f"{u.speaker}@x{factor:g}", u.corpus, u.path,
                          resample_poly(u.wave, ratio.denominator, ratio.numerator).astype(np.float32))
                for u in utterances]
    return out


def noise_features(folder: str | Path, sample_rate: int, kind: FeatureKind, *, n_mels: int, n_fft: int,
                   hop: int) -> torch.Tensor:
    """Frame features (F, T) of the noise recordings in `folder`, each levelled to unit RMS,
    one after another: the pool `add_noise` draws windows from."""
    files = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in AUDIO_SUFFIXES)
    waves = [normalise_level(read_audio(f, sample_rate=sample_rate)[0]) for f in files]
    return torch.cat([frame_features(w, sample_rate, kind, n_mels=n_mels, n_fft=n_fft, hop=hop) for w in waves], dim=-1)


def add_noise(x: torch.Tensor, noise: torch.Tensor, snr_db: tuple[float, float]) -> torch.Tensor:
    """Log-power frames x (B, F, T) mixed with random windows of log-power noise frames
    (F, T_noise) at a random SNR in `snr_db` per utterance (both levelled to unit RMS, so the
    gain sets the SNR): log(exp(x) + g exp(n))."""
    b, _, t = x.shape
    start = (torch.rand(b, device=x.device) * (noise.shape[-1] - t)).long()
    n = noise[:, start[:, None] + torch.arange(t, device=x.device)].permute(1, 0, 2)  # (B, F, T)
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(b, 1, 1, device=x.device)
    return torch.logaddexp(x, n - snr * math.log(10) / 10)


def mask_band(x: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
    """Each utterance's frames x (B, F, T) with a random band of 0..width feature rows
    replaced by the utterance's mean over its valid frames (SpecAugment's frequency mask)."""
    b, f, _ = x.shape
    w = (torch.rand(b, 1, device=x.device) * (width + 1)).long()
    lo = (torch.rand(b, 1, device=x.device) * (f - w + 1)).long()
    rows = torch.arange(f, device=x.device)[None]
    band = ((rows >= lo) & (rows < lo + w))[..., None]  # (B, F, 1)
    mean = (x * mask[:, None]).sum(-1) / mask.sum(-1, keepdim=True).clamp_min(1.0)  # (B, F) over valid frames
    return torch.where(band, mean[..., None], x)
