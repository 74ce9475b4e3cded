"""Magnitude pruning: the right weights go, and pruned weights stay zero through retraining."""

from __future__ import annotations

import torch
from torch import nn

from dlslab.compress.layers import bake, trainable
from dlslab.compress.prune import layer_density, magnitude_masks, prune_magnitude, sparsity_schedule
from dlslab.models import build_model
from dlslab.train.engine import fit


def test_per_layer_and_global_thresholds():
    torch.manual_seed(0)
    model = build_model("lenet300")
    masks = magnitude_masks(model, {"fc1": 0.9, "fc2": 0.5})
    assert set(masks) == {"fc1", "fc2"}
    assert abs(masks["fc1"].mean().item() - 0.1) < 1e-3 and abs(masks["fc2"].mean().item() - 0.5) < 1e-3
    w = model.fc1.weight.detach().abs()
    assert w[masks["fc1"] == 1].min() >= w[masks["fc1"] == 0].max()  # the largest weights are kept
    glob = magnitude_masks(model, 0.8, scope="global")
    kept = sum(m.sum().item() for m in glob.values())
    total = sum(m.numel() for m in glob.values())
    assert abs(kept / total - 0.2) < 1e-3
    # one threshold: fc3 (larger init scale, 100 inputs) keeps a larger share than fc1 (784 inputs)
    assert glob["fc3"].mean() > glob["fc1"].mean()


def test_pruned_weights_stay_zero_through_retraining_and_the_rest_learn():
    torch.manual_seed(0)
    x = torch.randn(512, 1, 28, 28)
    y = (x.flatten(1)[:, :10].argmax(1))  # a learnable rule
    model = build_model("lenet300", hidden=(64, 32))
    prune_magnitude(model, {"fc1": 0.8, "fc2": 0.6, "fc3": 0.5})
    zero_before = {n: (m == 0) for n, m in _weights(model).items()}
    before = {n: m.clone() for n, m in _weights(model).items()}
    opt = torch.optim.AdamW(trainable(model), lr=3e-3, weight_decay=0.1)  # decay moves every weight
    loss = lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb)  # noqa: E731
    start = loss(model, x, y).item()
    fit(model, (x, y), loss, optimizer=opt, epochs=5, batch_size=64, verbose=False)
    assert loss(model, x, y).item() < 0.85 * start
    bake(model)
    for name, w in _weights(model).items():
        assert torch.all(w[zero_before[name]] == 0), name
        assert not torch.equal(w[~zero_before[name]], before[name][~zero_before[name]]), name
    assert abs(layer_density(model)["fc1"] - 0.2) < 1e-3


def test_iterative_rounds_keep_earlier_pruning_and_reach_the_target():
    torch.manual_seed(0)
    model = build_model("lenet300", hidden=(32, 16))
    schedule = sparsity_schedule({"fc1": 0.9, "fc2": 0.8}, 4)
    assert [s["fc1"] for s in schedule] == sorted(s["fc1"] for s in schedule)
    assert abs(schedule[-1]["fc1"] - 0.9) < 1e-9
    pruned = None
    for sparsity in schedule:
        prune_magnitude(model, sparsity)
        bake(model)
        zeros = model.fc1.weight == 0
        if pruned is not None:
            assert torch.all(zeros[pruned])
        pruned = zeros
    assert abs(layer_density(model)["fc1"] - 0.1) < 2e-3


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: model.get_submodule(n).weight.detach() for n in ("fc1", "fc2", "fc3")}
