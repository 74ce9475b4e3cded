"""The real datasets in $DLSLAB_DATA load with the documented shapes and label counts."""

from __future__ import annotations

import torch

from dlslab.data.images import load_images, verify
from dlslab.data.splits import split_validation, subset_fraction


def test_mnist_matches_its_manifest(data_root) -> None:
    d = load_images("mnist")
    assert d.train_x.shape == (60000, 1, 28, 28) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(d.train_x.float().div(255).mean().item() - 0.1307) < 1e-3
    assert all(row["status"].startswith("ok") for row in verify("mnist"))


def test_fashion_mnist_and_cifar10(data_root) -> None:
    f = load_images("fashion-mnist")
    assert f.train_x.shape == (60000, 1, 28, 28) and f.classes[9] == "Ankle boot"
    c = load_images("cifar10")
    assert c.train_x.shape == (50000, 3, 32, 32) and c.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(c.test_y).tolist() == [1000] * 10
    assert c.classes[0] == "airplane" and "not the canonical" in c.note
    assert "NOT the canonical" in verify("cifar10")[0]["status"]


def test_validation_split_is_stratified_seeded_and_disjoint() -> None:
    x = torch.arange(1000)
    y = torch.arange(1000) % 10
    (tx, ty), (vx, vy) = split_validation(x, y, 0.1, seed=3)
    assert len(vx) == 100 and torch.bincount(vy).tolist() == [10] * 10
    assert set(tx.tolist()).isdisjoint(vx.tolist()) and len(tx) + len(vx) == 1000
    (_, _), (vx2, _) = split_validation(x, y, 0.1, seed=3)
    assert torch.equal(vx, vx2)
    sx, sy = subset_fraction(x, y, 0.05, seed=1)
    assert len(sx) == 50 and torch.bincount(sy).tolist() == [5] * 10
