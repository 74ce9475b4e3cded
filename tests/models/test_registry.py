"""Every registered model builds with its defaults, runs forward and backward on its example
input, and gets finite gradients for every trainable parameter."""

from __future__ import annotations

import pytest
import torch

from dlslab.models import all_models, build_model

MODELS = all_models()


def test_registry_is_populated() -> None:
    assert "judge-cnn" in MODELS
    with pytest.raises(ValueError, match="valid:"):
        build_model("no-such-model")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    entry = MODELS[name]
    model = entry.factory()
    example = entry.example()
    args = example if isinstance(example, tuple) else (example,)
    out = model(*args)
    tensors = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
    assert tensors and all(torch.isfinite(t).all() for t in tensors), name
    sum(t.float().sum() for t in tensors if t.requires_grad).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None for g in grads), f"{name}: no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads if g is not None), name
