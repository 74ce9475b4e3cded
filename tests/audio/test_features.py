"""Log-mel, STFT-magnitude and MFCC frames."""

from __future__ import annotations

import math

import torch

from dlslab.audio.features import (cepstrum, dct_matrix, frame_features, log_mel, mel_filterbank,
                                   mel_to_hz, mfcc)


def test_mel_filters_tile_the_band_in_rising_order() -> None:
    fb = mel_filterbank(40, 512, 16000)
    assert fb.shape == (40, 257) and (fb >= 0).all() and (fb.max(1).values > 0.5).all()
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[-1] > 200
    assert mel_filterbank(40, 512, 16000, fmax=4000).nonzero()[:, 1].max() <= 4000 / 8000 * 256 + 1


def test_a_tone_lights_the_mel_band_of_its_frequency() -> None:
    sr, f0 = 16000, 1000.0
    t = torch.arange(sr) / sr
    mel = log_mel(torch.sin(2 * math.pi * f0 * t), sr)
    assert mel.shape == (40, sr // 256 + 1)
    band = int(mel.mean(1).argmax())
    edges = mel_to_hz(torch.linspace(0, 2595 * math.log10(1 + 8000 / 700), 42).numpy())
    assert edges[band] < f0 < edges[band + 2]


def test_stft_frames_and_batching() -> None:
    waves = torch.randn(3, 8000)
    feats = frame_features(waves, 16000, "stft")
    assert feats.shape == (3, 257, 8000 // 256 + 1) and torch.isfinite(feats).all()
    assert torch.allclose(feats[1], frame_features(waves[1], 16000, "stft"), atol=1e-5)


def test_mfcc_is_an_orthonormal_dct_of_log_mel() -> None:
    d = dct_matrix(40, 40)
    assert torch.allclose(d @ d.T, torch.eye(40), atol=1e-5)
    wave = torch.randn(16000)
    c = mfcc(wave, 16000, n_mfcc=40)
    assert torch.allclose(d.T @ c, log_mel(wave, 16000), atol=1e-3)  # invertible: nothing lost
    assert torch.allclose(cepstrum(log_mel(wave, 16000), 13), mfcc(wave, 16000, n_mfcc=13), atol=1e-5)
