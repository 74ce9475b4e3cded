"""Speech metrics: SNR matches its formula, SI-SDR ignores scale, perfect estimates are capped."""

from __future__ import annotations

import math

import numpy as np
import torch

from dlslab.audio import metrics


def test_snr_matches_formula_on_constructed_signals():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    for target_db in (-5.0, 0.0, 7.0, 20.0):
        scale = math.sqrt(np.sum(s**2) / np.sum(noise**2) / 10 ** (target_db / 10))
        est = s + scale * noise
        assert abs(metrics.snr_db(s, est) - target_db) < 1e-9
    expected = 10 * np.log10(np.sum(s**2) / np.sum((s - 0.5 * s) ** 2))
    assert abs(metrics.snr_db(s, 0.5 * s) - expected) < 1e-9  # = 6.02 dB


def test_lengths_are_aligned_and_torch_is_accepted():
    s = np.sin(np.arange(1000) / 7.0)
    est = np.concatenate([s + 0.1, np.ones(50)])
    expected = 10 * np.log10(np.sum(s**2) / (1000 * 0.01))
    assert abs(metrics.snr_db(torch.tensor(s), torch.tensor(est)) - expected) < 1e-6


def test_perfect_estimate_is_a_finite_cap_not_a_crash():
    s = np.random.default_rng(1).standard_normal(4000)
    assert metrics.snr_db(s, s) == metrics.CAP_DB
    assert metrics.si_sdr(s, 3.0 * s) == metrics.CAP_DB
    assert math.isfinite(metrics.snr_db(s, np.zeros_like(s)))


def test_si_sdr_is_scale_invariant_and_orders_noise_levels():
    rng = np.random.default_rng(2)
    s, n = rng.standard_normal(8000), rng.standard_normal(8000)
    a = metrics.si_sdr(s, s + 0.1 * n)
    assert abs(metrics.si_sdr(s, 0.2 * (s + 0.1 * n)) - a) < 1e-9
    assert a > metrics.si_sdr(s, s + 0.5 * n) + 10


def test_pesq_and_stoi_prefer_the_cleaner_estimate():
    rng = np.random.default_rng(3)
    rate = 16000
    t = np.arange(2 * rate) / rate
    # a voiced, amplitude-modulated harmonic signal stands in for speech
    s = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    s = 0.2 * s / np.max(np.abs(s))
    light, heavy = s + 0.003 * rng.standard_normal(len(s)), s + 0.05 * rng.standard_normal(len(s))
    assert metrics.pesq_wb(s, light, rate) > metrics.pesq_wb(s, heavy, rate)
    assert metrics.stoi(s, light, rate) > metrics.stoi(s, heavy, rate)
    # another rate is resampled for PESQ
    s8 = s[::2]
    assert math.isfinite(metrics.pesq_wb(s8, s8 + 0.003 * rng.standard_normal(len(s8)), 8000))
