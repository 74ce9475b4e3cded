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
