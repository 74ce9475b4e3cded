"""Noise: coloured spectra slope as they should, mixing hits the SNR, recordings split in time."""

from __future__ import annotations

import numpy as np

from dlslab.audio.noise import TRAIN_FRACTION, NoiseBank, babble, coloured_noise, mix_at_snr


def _slope_db_per_octave(x: np.ndarray, rate: int = 16000) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    band = (f > 100) & (f < 6000)
    return float(np.polyfit(np.log2(f[band]), 10 * np.log10(power[band]), 1)[0])


def test_coloured_noise_slopes():
    rng = np.random.default_rng(0)
    slopes = {k: _slope_db_per_octave(coloured_noise(k, 1 << 16, rng)) for k in ("white", "pink", "brown")}
    assert abs(slopes["white"]) < 0.5
    assert abs(slopes["pink"] + 3.0) < 0.5  # 1/f power: -3 dB per octave
    assert abs(slopes["brown"] + 6.0) < 0.5  # 1/f^2 power: -6 dB per octave


def test_mix_at_snr_and_babble_level():
    rng = np.random.default_rng(1)
    clean = rng.standard_normal(4000).astype(np.float32)
    noisy, noise = mix_at_snr(clean, coloured_noise("pink", 4000, rng), 5.0)
    assert abs(10 * np.log10(np.sum(clean.astype(float) ** 2) / np.sum(noise.astype(float) ** 2)) - 5.0) < 1e-3
    np.testing.assert_allclose(noisy, clean + noise, atol=1e-6)
    b = babble(3000, rng, [np.sin(np.arange(500) * k / 10.0) for k in range(1, 6)])
    assert b.shape == (3000,) and abs(np.sqrt(np.mean(b.astype(float) ** 2)) - 1) < 1e-3


def test_recording_segments_come_from_the_split_part():
    wave = np.arange(1000, dtype=np.float32)
    bank = NoiseBank(16000, {"ramp": wave})
    rng = np.random.default_rng(2)
    cut = TRAIN_FRACTION * len(wave)
    for _ in range(20):
        assert bank.segment("ramp", 100, rng, "train").max() < cut
        assert bank.segment("ramp", 100, rng, "test").min() >= cut
