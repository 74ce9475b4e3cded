"""PCA maps: the first axis carries the most variance, and the ratios sum to one."""

from __future__ import annotations

import torch

from dlslab.metrics.projection import pca


def test_pca_orders_axes_by_explained_variance():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 3, generator=g) * torch.tensor([5.0, 1.0, 0.1])
    proj, ratio = pca(z)
    assert proj.shape == (500, 2)
    assert torch.all(ratio[:-1] >= ratio[1:]) and abs(ratio.sum().item() - 1) < 1e-6
    assert ratio[0] > 0.9 and abs(proj[:, 0].std().item() - z[:, 0].std().item()) < 0.1
