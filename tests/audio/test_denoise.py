"""audio.denoise: the checkpoint format round trip, finding a run's model, and block inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlslab.audio.denoise import (StftSpec, checkpoint_path, denoise_blocks, denoise_wave, find_checkpoint,
                                  load_denoiser, save_denoiser)
from dlslab.errors import DataError, UsageError
from dlslab.models import build_model


def test_a_saved_denoiser_loads_back_and_denoises_alike_in_blocks(tmp_path) -> None:
    torch.manual_seed(0)
    kwargs = {"bins": 129, "context": 3, "channels": [4], "dropout": 0.0, "output": "mask"}
    model = build_model("denoise_cnn1d", **kwargs).eval()
    save_denoiser(checkpoint_path(tmp_path, "cnn1d"), model, "denoise_cnn1d", kwargs, StftSpec(8000, 256, 64))
    loaded, spec = load_denoiser(find_checkpoint(tmp_path))
    assert spec == StftSpec(8000, 256, 64)
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    whole = denoise_wave(loaded, wave, spec.n_fft, spec.hop)
    assert np.array_equal(whole, denoise_wave(model, wave, spec.n_fft, spec.hop))
    assert np.max(np.abs(denoise_blocks(loaded, wave, spec.n_fft, spec.hop, block_frames=9) - whole)) < 1e-5


def test_missing_or_foreign_checkpoints_are_clear_errors(tmp_path) -> None:
    with pytest.raises(UsageError, match="no denoising model"):
        find_checkpoint(tmp_path)
    with pytest.raises(UsageError, match="no such"):
        find_checkpoint(tmp_path / "none")
    torch.save({"not": "a model"}, tmp_path / "x.pt")
    with pytest.raises(DataError, match="not a denoising checkpoint"):
        load_denoiser(tmp_path / "x.pt")
