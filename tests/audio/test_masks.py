"""Ideal masks: what they keep, and that the oracle binary mask really denoises."""

from __future__ import annotations

import math

import torch

from dlslab.audio.masks import (apply_mask, ideal_binary_mask, ideal_ratio_mask, mask_loss,
                                masked_waveform)
from dlslab.audio.metrics import snr_db
from dlslab.audio.stft import stft


def test_ideal_masks_values() -> None:
    s = torch.tensor([[3.0, 0.0, 1.0, 0.0]])
    n = torch.tensor([[4.0, 2.0, 1.0, 0.0]])
    assert ideal_binary_mask(s, n).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert ideal_binary_mask(n, s).tolist() == [[1.0, 1.0, 0.0, 0.0]]
    irm = ideal_ratio_mask(s, n)
    assert torch.allclose(irm, torch.tensor([[0.6, 0.0, math.sqrt(0.5), 0.0]]))
    assert torch.allclose(ideal_ratio_mask(s, n, beta=1.0), irm.square())
    assert torch.equal(apply_mask(irm, n), irm * n)


def test_oracle_binary_mask_removes_most_of_the_noise() -> None:
    rate = 16000
    t = torch.arange(rate) / rate
    g = torch.Generator().manual_seed(0)
    # a "voiced" signal: harmonics of 150 Hz switching on and off, in white noise at 0 dB
    clean = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 6)) * (t % 0.25 < 0.15)
    noise = torch.randn(rate, generator=g)
    noise = noise * clean.norm() / noise.norm()
    noisy = clean + noise
    spec = stft(noisy)
    mask = ideal_binary_mask(stft(clean).abs(), stft(noise).abs())
    estimate = masked_waveform(mask, spec, length=rate)
    before, after = snr_db(clean, noisy), snr_db(clean, estimate)
    assert abs(before) < 0.1
    assert after > before + 10
    # a mask of ones gives the noisy signal back
    assert abs(snr_db(clean, masked_waveform(torch.ones_like(mask), spec, length=rate)) - before) < 0.01


def test_mask_loss_is_lowest_at_the_target() -> None:
    target = (torch.rand(2, 6, 5, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    good = mask_loss((target * 2 - 1) * 8, target)
    bad = mask_loss((1 - 2 * target) * 8, target)
    assert float(good) < 1e-3 < 1.0 < float(bad)


def _noisy_tone(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A harmonic 'voice' switching on and off in white noise at 0 dB: clean, noise, noisy."""
    rate = 16000
    t = torch.arange(rate) / rate
    clean = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 6)) * (t % 0.25 < 0.15)
    noise = torch.randn(rate, generator=torch.Generator().manual_seed(seed))
    noise = noise * clean.norm() / noise.norm()
    return clean, noise, clean + noise


def test_phase_sensitive_mask_is_in_range_and_beats_the_binary_mask() -> None:
    from dlslab.audio.masks import phase_sensitive_mask

    clean, noise, noisy = _noisy_tone(0)
    spec = stft(noisy)
    psm = phase_sensitive_mask(stft(clean), spec)
    assert float(psm.min()) >= 0.0 and float(psm.max()) <= 1.0
    assert torch.allclose(phase_sensitive_mask(spec, spec), torch.ones_like(psm))  # no noise: keep all
    ibm = ideal_binary_mask(stft(clean).abs(), stft(noise).abs())
    length = len(clean)
    assert (snr_db(clean, masked_waveform(psm, spec, length=length))
            > snr_db(clean, masked_waveform(ibm, spec, length=length)) + 1.0)


def test_weighted_mask_mse_is_the_error_of_the_rebuilt_spectrum() -> None:
    from dlslab.audio.masks import mask_mse_loss, phase_sensitive_target

    g = torch.Generator().manual_seed(2)
    clean = torch.complex(torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g))
    noisy = clean + 0.3 * torch.complex(torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g))
    logits = torch.randn(3, 7, generator=g)
    mag = noisy.abs()
    target = phase_sensitive_target(clean, noisy) / mag  # unclipped, so the identity is exact
    weight = mag.square()
    rebuilt = torch.sigmoid(logits) * mag * torch.exp(1j * noisy.angle())
    error = (rebuilt - clean).abs().square().sum()
    constant = (clean.abs().square() - phase_sensitive_target(clean, noisy).square()).sum()
    loss = mask_mse_loss(logits, target, weight=weight)
    assert torch.allclose(loss * weight.sum() + constant, error, rtol=1e-4)
    # padded frames are dropped: changing them leaves the loss as it is
    frame_mask = torch.tensor([[True, True, False]])  # (B=1, T=3)
    x = logits.reshape(1, 3, 7)
    y = target.reshape(1, 3, 7)
    moved = x.clone()
    moved[0, 2] += 5.0
    assert torch.equal(mask_mse_loss(x, y, frame_mask), mask_mse_loss(moved, y, frame_mask))
    assert not torch.equal(mask_mse_loss(x, y), mask_mse_loss(moved, y))
