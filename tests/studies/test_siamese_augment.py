"""audio.augment, the siamese study's training augmentations: speed-perturbed pseudo-speakers, noise, band masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlslab.audio.speakers import Utterance
from dlslab.audio import augment


def test_speed_perturbation_makes_new_speakers_of_the_right_length() -> None:
    t = np.arange(16000) / 16000
    utts = [Utterance("a/x", "a", Path("x.wav"), np.sin(2 * np.pi * 200 * t).astype(np.float32)),
            Utterance("a/y", "a", Path("y.wav"), np.sin(2 * np.pi * 300 * t[:8000]).astype(np.float32))]
    out = augment.speed_perturbed(utts, [0.9, 1.1])
    assert [u.speaker for u in out] == ["a/x@x0.9", "a/y@x0.9", "a/x@x1.1", "a/y@x1.1"]
    expected = [16000 / 0.9, 8000 / 0.9, 16000 / 1.1, 8000 / 1.1]
    assert all(abs(len(u.wave) - n) <= 1 for u, n in zip(out, expected))
    # played faster, the 200 Hz tone moves to 220 Hz
    spectrum = np.abs(np.fft.rfft(out[2].wave))
    assert abs(np.argmax(spectrum) * 16000 / len(out[2].wave) - 220) < 2


def test_noise_at_high_snr_changes_nothing_and_at_low_snr_dominates() -> None:
    torch.manual_seed(0)
    x, noise = torch.randn(4, 40, 30), torch.randn(40, 500) + 3.0
    assert torch.allclose(augment.add_noise(x, noise, (80.0, 80.0)), x, atol=1e-4)
    loud = augment.add_noise(x, noise, (-60.0, -60.0))
    # at -60 dB the mixture is the noise window, 60 dB up: every frame is one of noise's frames
    windows = (loud - 60 * np.log(10) / 10)[0].T  # (T, F)
    assert all(torch.isclose(noise.T, w, atol=1e-3).all(1).any() for w in windows)


def test_band_mask_replaces_at_most_width_rows_by_the_mean_of_valid_frames() -> None:
    torch.manual_seed(0)
    x, mask = torch.randn(64, 40, 20), torch.ones(64, 20)
    mask[:, 15:] = 0
    out = augment.mask_band(x, mask, 6)
    changed = (out != x).any(-1)  # (B, F) rows that were masked
    assert changed.sum(1).max() <= 6 and changed.any()
    rows = changed.nonzero()
    b, f = rows[0].tolist()
    assert torch.allclose(out[b, f], x[b, f, :15].mean().expand(20))
    assert torch.equal(out[~changed], x[~changed])
