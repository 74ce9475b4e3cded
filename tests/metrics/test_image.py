"""Region metrics: they count only the region, and give the textbook values."""

from __future__ import annotations

import math

import pytest
import torch

from dlslab.metrics.image import (region_l1, region_mse, region_psnr, region_ssim, rmse_missing,
                                  sample_diversity)


def _border(size: int = 16, patch: int = 8) -> torch.Tensor:
    mask = torch.ones(1, 1, size, size)
    a = (size - patch) // 2
    mask[..., a:a + patch, a:a + patch] = 0
    return mask


def test_rmse_counts_only_missing_entries() -> None:
    truth = torch.zeros(4, 5)
    observed = torch.ones(4, 5)
    observed[0, 0] = observed[2, 3] = 0
    imputed = truth.clone()
    imputed[0, 0], imputed[2, 3] = 0.3, 0.4
    expected = math.sqrt((0.3 ** 2 + 0.4 ** 2) / 2)
    assert rmse_missing(imputed, truth, observed) == pytest.approx(expected)
    imputed[observed.bool()] = 99.0  # errors on observed entries do not count
    assert rmse_missing(imputed, truth, observed) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no entry is missing"):
        rmse_missing(truth, truth, torch.ones(4, 5))


def test_region_metrics_ignore_pixels_outside_the_region() -> None:
    torch.manual_seed(0)
    target = torch.rand(3, 1, 16, 16)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    border = _border()
    changed = pred.clone()
    changed[..., 4:12, 4:12] = 1 - changed[..., 4:12, 4:12]  # inside the known patch
    assert region_l1(changed, target, border) == pytest.approx(region_l1(pred, target, border))
    assert region_mse(changed, target, border) == pytest.approx(region_mse(pred, target, border))


def test_psnr_and_mse_values() -> None:
    target = torch.zeros(2, 1, 16, 16)
    pred = target + 0.1 * _border()  # error 0.1 on every border pixel, 0 inside
    assert region_mse(pred, target, _border()) == pytest.approx(0.01)
    assert region_l1(pred, target, _border()) == pytest.approx(0.1)
    assert region_psnr(pred, target, _border()) == pytest.approx(20.0, abs=1e-4)
    assert region_psnr(target, target, _border()) == 100.0  # a perfect copy is capped, not infinite


def test_ssim_is_one_for_identical_images_and_drops_with_noise() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 1, 16, 16)
    assert region_ssim(target, target, _border()) == pytest.approx(1.0, abs=1e-4)
    noisy = (target + 0.3 * torch.randn_like(target)).clamp(0, 1)
    less = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    assert region_ssim(noisy, target, _border()) < region_ssim(less, target, _border()) < 0.999


def test_diversity_is_zero_for_identical_samples_and_the_mean_pairwise_l1_otherwise() -> None:
    base = torch.rand(3, 1, 16, 16)
    same = torch.stack([base, base, base])
    assert sample_diversity(same, _border()) == 0.0
    shifted = torch.stack([base, base + 0.1 * _border(), base + 0.2 * _border()])
    assert sample_diversity(shifted, _border()) == pytest.approx((0.1 + 0.2 + 0.1) / 3)
    with pytest.raises(ValueError, match="two samples"):
        sample_diversity(same[:1], _border())


def test_nearest_neighbours_finds_the_closest_reference_image():
    from dlslab.metrics.image import nearest_neighbours

    g = torch.Generator().manual_seed(0)
    reference = torch.rand(50, 1, 4, 4, generator=g)
    queries = reference[[7, 3, 42]] + 0.001
    dist, idx = nearest_neighbours(queries, reference, chunk=2)
    assert idx.tolist() == [7, 3, 42] and torch.all(dist < 0.01)


def test_binary_scores_are_finite_for_hard_predictions():
    from dlslab.metrics.image import binary_scores

    real = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    perfect, wrong = binary_scores(real, real), binary_scores(1 - real, real)
    assert perfect["mse"] == 0.0 and perfect["bce"] < 0.01
    assert wrong["mse"] == 1.0 and 6.0 < wrong["bce"] < 7.0  # clamped: -ln(1e-3), not infinite
