"""k-means weight sharing and centroid fine-tuning."""

from __future__ import annotations

import torch
from torch import nn

from dlslab.compress.layers import bake, trainable
from dlslab.compress.prune import prune_magnitude
from dlslab.compress.share import kmeans_1d, share_weights
from dlslab.models import build_model
from dlslab.train.engine import fit


def test_kmeans_beats_its_linear_start_and_uses_k_values():
    values = torch.randn(20000) * 0.05
    centroids, codes = kmeans_1d(values, 16)
    err = (centroids[codes] - values).pow(2).mean()
    linear = torch.linspace(float(values.min()), float(values.max()), 16)
    lin_err = (linear[torch.bucketize(values, (linear[1:] + linear[:-1]) / 2)] - values).pow(2).mean()
    assert err < 0.6 * lin_err
    assert len(centroids) == 16 and torch.all(centroids[1:] > centroids[:-1])


def test_centroid_fine_tuning_lowers_the_loss_and_keeps_codes_and_zeros():
    torch.manual_seed(0)
    x = torch.randn(512, 1, 28, 28)
    y = x.flatten(1)[:, :10].argmax(1)
    model = build_model("lenet300", hidden=(64, 32))
    loss = lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb)  # noqa: E731
    fit(model, (x, y), loss, optimizer=torch.optim.Adam(model.parameters(), 3e-3), epochs=4, batch_size=64,
        verbose=False)
    prune_magnitude(model, 0.7)
    bake(model)
    zeros = model.fc1.weight == 0
    share_weights(model, {"fc1": 3, "fc2": 3, "fc3": 3}, bias_bits=2)
    params = trainable(model)
    assert all(p.numel() <= 8 for p in params)  # only centroids train
    codes = model.fc1.parametrizations.weight[0].codes.clone()
    shared_loss = loss(model, x, y).item()
    fit(model, (x, y), loss, optimizer=torch.optim.Adam(params, 1e-3), epochs=4, batch_size=64, verbose=False)
    assert loss(model, x, y).item() < shared_loss
    assert torch.equal(model.fc1.parametrizations.weight[0].codes, codes)
    bake(model)
    w = model.fc1.weight
    assert torch.all(w[zeros] == 0)
    assert len(torch.unique(w[w != 0])) <= 8
    assert len(torch.unique(model.fc1.bias)) <= 4
