"""MLP and StackedMLP: mixed activations in one stack, and zero-padding to a wider stack."""

from __future__ import annotations

import pytest
import torch

from dlslab.models.mlp import ACTIVATIONS, MLP, StackedMLP, resize_hidden, zero_preserving


def test_a_mixed_activation_stack_matches_its_members_forward_and_backward():
    torch.manual_seed(0)
    members = [MLP(12, [8, 8], 3, act) for act in ACTIVATIONS]  # one segment per activation
    stack = StackedMLP(members)
    x = torch.randn(5, 12)
    logits = stack(x)  # (M, classes, B)
    logits.square().sum().backward()
    for k, net in enumerate(members):
        out = net(x)
        torch.testing.assert_close(logits[k], out.T, atol=1e-6, rtol=1e-5)
        out.square().sum().backward()
        for layer, w in zip(net.linears, stack.weights):
            torch.testing.assert_close(w.grad[k], layer.weight.grad, atol=1e-5, rtol=1e-5)


def test_zero_preserving_activations():
    assert not zero_preserving("sigmoid")
    assert all(zero_preserving(a) for a in ACTIVATIONS if a != "sigmoid")


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_padding_keeps_outputs_and_cutting_back_restores_the_weights(activation):
    torch.manual_seed(1)
    net = MLP(10, [4, 4], 3, activation, "xavier_uniform")
    wide = net.resized(9)
    assert [layer.out_features for layer in wide.hidden] == [9, 9]
    x = torch.randn(6, 10)
    torch.testing.assert_close(wide(x), net(x))
    back = resize_hidden(wide.state_dict(), [4, 4])
    for key, value in net.state_dict().items():
        assert torch.equal(back[key], value), key
    assert wide.init == "xavier_uniform"


def test_shallower_members_skip_the_extra_layers_exactly():
    torch.manual_seed(2)
    members = [MLP(12, [8] * depth, 3, act) for depth, act in [(3, "relu"), (1, "sigmoid"), (2, "tanh")]]
    stack = StackedMLP(members)
    x = torch.randn(5, 12)
    logits = stack(x)
    logits.square().sum().backward()
    for k, net in enumerate(members):
        out = net(x)
        torch.testing.assert_close(logits[k], out.T, atol=1e-6, rtol=1e-5)
        out.square().sum().backward()
        own = [*range(len(net.hidden)), len(stack.weights) - 1]
        for layer, j in zip(net.linears, own):
            torch.testing.assert_close(stack.weights[j].grad[k], layer.weight.grad, atol=1e-5, rtol=1e-5)
        for j in range(len(net.hidden), len(stack.weights) - 1):  # skipped layers: no gradient at all
            assert stack.weights[j].grad[k].abs().max() == 0 and stack.biases[j].grad[k].abs().max() == 0
        back = stack.member(k)
        assert len(back.hidden) == len(net.hidden)
        torch.testing.assert_close(back(x), out)
