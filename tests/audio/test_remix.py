"""audio.remix: the speech is kept, the noise moved (or replaced by fresh babble) and rescaled."""

from __future__ import annotations

import numpy as np

from dlslab.audio.remix import remix_noise


def test_remixed_copies_keep_the_speech_and_move_the_noise() -> None:
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(1600).astype(np.float32)
    noise = rng.standard_normal(1600).astype(np.float32)
    copies = remix_noise(clean, noise, 3, 3.0, np.random.default_rng(1))
    assert len(copies) == 3
    for new_noise, noisy in copies:
        assert np.allclose(noisy - clean, new_noise, atol=1e-6)
        gain = np.sqrt(np.sum(new_noise.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))
        assert 10 ** (-3 / 20) - 1e-4 <= gain <= 10 ** (3 / 20) + 1e-4
        shift = int(np.argmax(np.fft.irfft(np.fft.rfft(new_noise) * np.conj(np.fft.rfft(noise)), len(noise))))
        assert 160 <= shift <= 1440  # a real move of 10-90 %, not the same stretch
        assert np.allclose(np.roll(noise, shift) * gain, new_noise, atol=1e-5)
    again = remix_noise(clean, noise, 3, 3.0, np.random.default_rng(1))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(copies, again))  # fixed by the generator
    assert remix_noise(clean, noise, 0, 3.0, rng) == []


def test_fresh_babble_remix_is_other_speech_at_the_noise_level() -> None:
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(1600).astype(np.float32)
    noise = 0.3 * rng.standard_normal(1600).astype(np.float32)
    talkers = [np.sin(np.arange(800) * f).astype(np.float32) for f in (0.05, 0.11, 0.23, 0.31, 0.47)]
    copies = remix_noise(clean, noise, 4, 2.0, np.random.default_rng(1), babble_pool=talkers)
    assert len(copies) == 4
    for new_noise, noisy in copies:
        assert np.allclose(noisy - clean, new_noise, atol=1e-6)  # the speech is kept
        gain_db = 10 * np.log10(np.sum(new_noise**2) / np.sum(noise**2))
        assert abs(gain_db) <= 2.0 + 1e-3  # at the old noise's level, within the gain range
        # made of the pool's voices: their spectral lines hold nearly all of its energy ...
        power = np.abs(np.fft.rfft(new_noise.astype(np.float64))) ** 2
        lines = [round(f * 1600 / (2 * np.pi)) for f in (0.05, 0.11, 0.23, 0.31, 0.47)]
        near = sum(power[max(0, k - 3): k + 4].sum() for k in lines)
        assert near > 0.9 * power.sum()  # (white noise would put ~4% there)
        # ... and none of the old noise is left in it
        assert abs(np.corrcoef(new_noise, noise)[0, 1]) < 0.1
