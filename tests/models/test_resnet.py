"""The CIFAR CNNs: shapes, stable parameter names, and both learn a tiny batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlslab.models import build_model
from dlslab.models.resnet import ResNetFast, SmallCNN


@pytest.mark.parametrize("name", ["resnet-fast", "small-cnn"])
def test_registered_and_shapes(name):
    model = build_model(name, num_classes=7)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)


def test_resnet_widths_blocks_and_names():
    model = ResNetFast(10, widths=(8, 16, 32, 64), blocks=(1, 0, 2))
    names = {n for n, _ in model.named_parameters()}
    assert {"stem.conv.weight", "stages.0.conv.weight", "stages.0.res.0.a.conv.weight",
            "stages.2.res.1.b.bn.weight", "head.weight"} <= names
    assert not any(n.startswith("stages.1.res.") for n in names)
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError, match="one entry per stage"):
        ResNetFast(10, widths=(8, 16), blocks=(1, 1))


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = ResNetFast(10, widths=(8, 16, 32, 64)).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, cl, atol=1e-4)


@pytest.mark.parametrize("make", [lambda: ResNetFast(4, widths=(8, 16, 32, 32)), lambda: SmallCNN(4, width=8)],
                         ids=["resnet-fast", "small-cnn"])
def test_fits_a_tiny_batch(make):
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(32, 3, 32, 32), torch.arange(32) % 4
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model.eval()(x).argmax(1) == y).float().mean() > 0.9
