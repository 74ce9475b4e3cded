"""Time-frequency masks for speech denoising.

With the noisy spectrogram X = S + N (speech plus noise), a mask M in [0, 1] of the same
shape keeps the speech-dominated cells: the estimate is |Ŝ| = M · |X| with the noisy phase.

- ideal binary mask (IBM): 1 where |S| > |N|, else 0. It needs the clean speech and the
  noise, so it is an oracle: its SNR is the ceiling a mask-estimating model aims at.
- ideal ratio mask (IRM): (|S|² / (|S|² + |N|²))^β, a soft mask (β = 0.5 is the usual
  "square-root Wiener" form).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dlslab.audio.stft import HOP, N_FFT, reconstruct


def ideal_binary_mask(clean_mag: torch.Tensor, noise_mag: torch.Tensor) -> torch.Tensor:
    """1.0 where the speech magnitude exceeds the noise magnitude, else 0.0."""
    return (clean_mag > noise_mag).to(clean_mag.dtype)


def ideal_ratio_mask(clean_mag: torch.Tensor, noise_mag: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """(|S|² / (|S|² + |N|²))^beta; 0 where both are silent."""
    s2, n2 = clean_mag.square(), noise_mag.square()
    total = s2 + n2
    ratio = torch.where(total > 0, s2 / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)
    return ratio.pow(beta)


def phase_sensitive_target(clean_spec: torch.Tensor, noisy_spec: torch.Tensor) -> torch.Tensor:
    """|S|·cos(∠S − ∠X): the clean spectrum projected on the noisy phase (complex spectra in,
    real out, may be negative). Of all magnitudes rebuilt with the noisy phase, this one is
    nearest the clean spectrum."""
    return (clean_spec * noisy_spec.conj()).real / noisy_spec.abs().clamp_min(1e-12)


def apply_mask(mask: torch.Tensor, noisy_mag: torch.Tensor) -> torch.Tensor:
    """The estimated speech magnitude M · |X|."""
    return mask * noisy_mag


def masked_waveform(mask: torch.Tensor, noisy_spec: torch.Tensor, *, n_fft: int = N_FFT,
                    hop: int = HOP, length: int | None = None) -> torch.Tensor:
    """Waveform of the masked noisy spectrogram (..., bins, frames), with the noisy phase."""
    return reconstruct(apply_mask(mask, noisy_spec.abs()), noisy_spec.angle(), n_fft, hop, length)


def mask_loss(logits: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None = None,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy between an estimated mask, given as logits (the mask is their
    sigmoid), and a target mask (binary or ratio), averaged over the real frames only:
    (B, T, F) tensors and a (B, T) frame mask. Padded frames are dropped before the loss,
    so whatever they hold cannot change it. `weight` (same shape as the logits, >= 0) makes
    it a weighted mean over time-frequency cells, e.g. |X| so that loud cells count more."""
    return _cell_mean(lambda est, tgt: F.binary_cross_entropy_with_logits(est, tgt, reduction="none"),
                      logits, target, frame_mask, weight)


def _cell_mean(cell_loss, logits: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None,
               weight: torch.Tensor | None) -> torch.Tensor:
    """The mean of cell_loss(logits, target) over the real frames (`frame_mask`), weighted by
    `weight` when given: what `mask_loss` and `mask_mse_loss` share."""
    if frame_mask is not None:
        logits, target = logits[frame_mask], target[frame_mask]  # (frames, F)
        weight = weight[frame_mask] if weight is not None else None
    cells = cell_loss(logits.float(), target.float())
    if weight is None:
        return cells.mean()
    return (cells * weight).sum() / weight.sum().clamp_min(torch.finfo(cells.dtype).tiny)


def phase_sensitive_mask(clean_spec: torch.Tensor, noisy_spec: torch.Tensor) -> torch.Tensor:
    """The phase-sensitive target as a mask of |X|: |S|·cos(∠S − ∠X) / |X|, clipped to [0, 1]
    (complex spectra in). Applied to |X| with the noisy phase it is the nearest to the clean
    spectrum that a mask in [0, 1] can get, cell by cell; 0 where |X| is 0."""
    mag = noisy_spec.abs()
    ratio = phase_sensitive_target(clean_spec, noisy_spec) / mag.clamp_min(torch.finfo(mag.dtype).tiny)
    return torch.where(mag > 0, ratio, 0.0).clamp(0.0, 1.0)


def mask_mse_loss(logits: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None = None,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error between the estimated mask sigmoid(logits) and a target mask, over the
    real frames only, like `mask_loss`. Weighted by |X|² and aimed at `phase_sensitive_mask`,
    it is the squared error of the masked spectrum, rebuilt with the noisy phase, against the
    clean one (up to a constant per cell, where the target needs no clipping): what the SNR
    measures."""
    return _cell_mean(lambda est, tgt: (torch.sigmoid(est) - tgt).square(), logits, target, frame_mask, weight)


def weighted_mask_loss(kind: str = "bce", power: float = 2.0):
    """loss(logits, target, frame_mask, noisy_mag): `mask_loss` (kind "bce") or `mask_mse_loss`
    ("mse") with each cell weighted by |X| ** power (0: all cells alike; 2: by energy, as the
    SNR weighs errors)."""
    if kind not in ("bce", "mse"):
        raise ValueError(f"unknown mask loss {kind!r}; valid: bce, mse")
    cell_loss = mask_mse_loss if kind == "mse" else mask_loss

    def loss(logits: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None,
             noisy_mag: torch.Tensor) -> torch.Tensor:
        return cell_loss(logits, target, frame_mask, noisy_mag.pow(power) if power else None)

    return loss
