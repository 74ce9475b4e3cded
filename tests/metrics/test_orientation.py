"""Orientation from image moments, rotation by known angles, and the rotation-dimension scores."""

from __future__ import annotations

import math

import pytest
import torch

from dlslab.data.images import load_images
from dlslab.metrics.orientation import (angle_difference, heldout_r2, orientation, pearson, rotate,
                                        rotation_regression, traversal_rotation)
from dlslab.models.vae import MLPVAE


def bar(degrees: float, size: int = 28, half_length: float = 10.0, sigma: float = 1.0) -> torch.Tensor:
    """A soft bar through the centre, tilted `degrees` counter-clockwise from vertical: (1, 1, H, W)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = -r.view(-1, 1), r.view(1, -1)
    a = math.radians(degrees)
    along = -x * math.sin(a) + y * math.cos(a)
    across = x * math.cos(a) + y * math.sin(a)
    img = torch.exp(-0.5 * (across / sigma) ** 2) * torch.sigmoid(2 * (half_length - along.abs()))
    return img.float().view(1, 1, size, size)


@pytest.mark.parametrize("degrees", [-80.0, -45.0, -20.0, -3.0, 0.0, 7.0, 30.0, 60.0, 85.0])
def test_orientation_recovers_a_synthetic_bar_within_3_degrees(degrees: float) -> None:
    assert abs(angle_difference(orientation(bar(degrees)), torch.tensor(degrees)).item()) < 3.0


@pytest.mark.parametrize("degrees", [-45.0, -30.0, -15.0, 15.0, 30.0, 45.0])
def test_rotate_by_a_known_angle_adds_that_angle(degrees: float) -> None:
    start = bar(10.0)
    measured = orientation(rotate(start, degrees)) - orientation(start)
    assert abs(measured.item() - degrees) < 3.0
    # one call with a different angle per image agrees with separate calls
    both = rotate(torch.cat([start, start]), torch.tensor([degrees, -degrees]))
    assert torch.allclose(both[0], rotate(start, degrees)[0], atol=1e-5)
    assert torch.allclose(both[1], rotate(start, -degrees)[0], atol=1e-5)


def test_pearson_and_heldout_r2_separate_signal_from_noise() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(400, generator=g)
    features = torch.stack([2 * target + 0.1 * torch.randn(400, generator=g), torch.randn(400, generator=g),
                            torch.zeros(400)], 1)
    corr = pearson(target, features)
    assert corr[0] > 0.99 and abs(corr[1]) < 0.2 and corr[2] == 0
    r2 = heldout_r2(target, features, torch.arange(400))
    assert r2[0] > 0.98 and r2[1] < 0.05 and r2[2] <= 0.0


def test_an_untrained_vae_has_no_strong_rotation_dimension(data_root) -> None:
    digits = load_images("mnist", data_root).test_x[:100].float() / 255
    best = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = MLPVAE(latent=16, hidden=(256,)).eval()
        with torch.no_grad():
            scores = rotation_regression(lambda x: model.encode(x)[0], digits, [-45.0, -15.0, 0.0, 15.0, 45.0])
        best.append(scores["r2"].max().item())
    assert max(best) < 0.3, best


def test_traversal_finds_the_dimension_that_turns_the_image() -> None:
    # a toy decoder: z0 tilts a bar by 10 degrees per unit, z1 changes its length, z2 does nothing
    def decode(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([bar(10.0 * float(a), half_length=8.0 + float(b)) for a, b, _ in z.tolist()])

    base = torch.tensor([[0.5, 0.0, 0.0], [-1.0, 1.0, 2.0]])
    result = traversal_rotation(decode, base, torch.linspace(-2, 2, 5))
    assert abs(result["slope"][0].item() - 10.0) < 0.5
    assert abs(result["slope"][1].item()) < 0.5 and abs(result["slope"][2].item()) < 0.5
    assert result["abs_corr"][0] > 0.99 and result["angles"].shape == (3, 2, 5)
