"""Uniform quantisation, low-rank factorisation and structured pruning."""

from __future__ import annotations

import torch
from torch import nn

from dlslab.compress.layers import bake
from dlslab.compress.lowrank import low_rank_factorise
from dlslab.compress.quant import fake_quantise, prepare_qat, quantise_ptq
from dlslab.compress.structured import structured_prune
from dlslab.models import build_model


def test_ptq_puts_weights_on_a_grid_with_small_error():
    torch.manual_seed(0)
    model = build_model("lenet300")
    original = model.fc1.weight.detach().clone()
    for bits, levels, rel_error in ((8, 255, 0.01), (4, 15, 0.25)):
        m = quantise_ptq(build_model("lenet300"), bits)
        m.load_state_dict(model.state_dict())
        quantise_ptq(m, bits)
        w = m.fc1.weight.detach()
        assert len(torch.unique(w)) <= levels
        assert (w - original).norm() / original.norm() < rel_error


def test_qat_bakes_to_exact_grid_values():
    torch.manual_seed(0)
    model = prepare_qat(build_model("lenet300"), 4)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    assert model.fc1.parametrizations.weight.original.grad is not None  # straight-through gradient
    clip = model.fc1.parametrizations.weight[0].clip.clone()
    raw = model.fc1.parametrizations.weight.original.detach().clone()
    bake(model)
    assert torch.equal(model.fc1.weight, fake_quantise(raw, 4, clip) + 0.0)
    assert len(torch.unique(model.fc1.weight)) <= 15


def test_low_rank_factors_reproduce_a_low_rank_layer_with_fewer_numbers():
    torch.manual_seed(0)
    model = build_model("lenet300", hidden=(40, 30))
    with torch.no_grad():
        model.fc1.weight.copy_(torch.randn(40, 5) @ torch.randn(5, 784) * 0.05)  # rank 5
    x = torch.randn(3, 1, 28, 28)
    reference = model(x)
    before = sum(p.numel() for p in model.parameters())
    applied = low_rank_factorise(model, {"fc1": 5, "fc2": 30})
    assert applied == {"fc1": 5}  # rank 30 of a 30x40 layer would store more, so it is skipped
    assert torch.allclose(model(x), reference, atol=1e-4)
    assert sum(p.numel() for p in model.parameters()) == before - 40 * 784 + 5 * (784 + 40)


def test_structured_pruning_removes_dead_units_without_changing_outputs():
    torch.manual_seed(0)
    model = build_model("lenet5")
    with torch.no_grad():
        model.conv2.weight[10:] = 0  # 40 of 50 channels produce nothing
        model.conv2.bias[10:] = -1  # ... and stay below zero, so the ReLU zeroes them
        model.fc1.weight[250:] = 0  # half the hidden units have no input
        model.fc1.bias[250:] = -1
    x = torch.randn(4, 1, 28, 28)
    small, kwargs = structured_prune(model, "lenet5", {}, [1.0, 0.2, 0.5])
    assert kwargs["channels"] == [20, 10] and kwargs["hidden"] == 250
    assert small.fc1.weight.shape == (250, 160)
    assert torch.allclose(small(x), model(x), atol=1e-5)


def test_qat_of_a_pruned_model_keeps_its_zeros_through_training():
    from dlslab.compress.prune import prune_magnitude

    torch.manual_seed(0)
    model = build_model("lenet300")
    prune_magnitude(model, 0.8)
    bake(model)
    zeros = {n: m.weight == 0 for n, m in (("fc1", model.fc1), ("fc2", model.fc2))}
    prepare_qat(model, 4, keep_zeros=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(16, 1, 28, 28)), torch.randint(0, 10, (16,))).backward()
        opt.step()
    bake(model)
    for n, z in zeros.items():
        w = getattr(model, n).weight
        assert torch.all(w[z] == 0)  # pruned weights stayed exactly zero
        assert (w[~z] != 0).float().mean() > 0.5  # the kept ones trained and sit on the int4 grid
        assert len(torch.unique(w)) <= 15
