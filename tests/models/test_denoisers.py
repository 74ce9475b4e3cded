"""Frame denoisers: shapes, non-negative outputs, masks never add energy, normalisation."""

from __future__ import annotations

import pytest
import torch

from dlslab.models import build_model
from dlslab.models.denoisers import time_kernels

FAMILIES = {"denoise_mlp": 0, "denoise_cnn1d": 4, "denoise_cnn2d": 20}


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("output", ["mask", "magnitude"])
def test_output_is_a_non_negative_frame(name, output):
    torch.manual_seed(0)
    model = build_model(name, bins=129, output=output).eval()
    run = torch.rand(6, FAMILIES[name] + 5, 129) * 3  # context + 5 frames
    est = model(run)
    assert model.context == FAMILIES[name]
    assert est.shape == (6, 5, 129) and torch.all(est >= 0)
    if output == "mask":  # a mask can only remove energy from each noisy frame
        assert torch.all(est <= run[:, model.context:] + 1e-6)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_run_of_frames_equals_each_frame_alone(name):
    torch.manual_seed(1)
    model = build_model(name, bins=129).eval()
    ctx = model.context
    run = torch.rand(2, ctx + 6, 129)
    together = model(run)
    alone = torch.stack([model(run[:, t:t + ctx + 1])[:, 0] for t in range(6)], 1)
    assert torch.allclose(together, alone, atol=1e-5)
    frames = torch.rand(40, 129)
    blocked = model.denoise_frames(frames, block=7)
    padded = torch.cat([torch.zeros(ctx, 129), frames])[None]
    assert torch.allclose(blocked, model(padded)[0], atol=1e-5)


def test_context_is_configurable_and_normalisation_is_fitted():
    model = build_model("denoise_cnn2d", bins=65, context=6, channels=[4, 8]).eval()
    assert model(torch.rand(3, 7, 65)).shape == (3, 1, 65)
    noisy = torch.rand(500, 65) * torch.linspace(0.1, 5, 65)
    model.fit_norm(noisy, noisy / 2)
    feats = model.norm(noisy)
    assert feats.mean(0).abs().max() < 1e-4 and (feats.std(0) - 1).abs().max() < 1e-3
    assert abs(model.norm.scale.item() - (noisy / 2).mean().item()) < 1e-5


def test_unknown_output_is_rejected():
    with pytest.raises(ValueError, match="mask"):
        build_model("denoise_mlp", output="wave")


@pytest.mark.parametrize("context", [0, 1, 5, 6, 8, 20, 21, 40])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_time_kernels_span_exactly_the_window(context, layers):
    kernels = time_kernels(context, layers)
    assert len(kernels) == layers
    assert sum((k - 1) * d for k, d in kernels) == context  # one output frame sees context + 1 frames
    assert all(k >= 1 and d >= 1 for k, d in kernels)
    model = build_model("denoise_cnn2d", bins=33, context=context, channels=[2] * layers).eval()
    assert model(torch.rand(2, context + 3, 33)).shape == (2, 3, 33)
