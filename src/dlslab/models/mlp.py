"""Multilayer perceptrons: one network (`MLP`), and many same-shape networks run as one
batched network (`StackedMLP`) so a sweep trains them together.

`MLP` takes images (B, C, H, W) or flat vectors (B, D). Each hidden layer is
Linear -> activation; `layer_outputs` returns what every hidden layer computes, with the input
pixels as layer 0, for the layer-embeddings study.

`StackedMLP` holds M member MLPs (their parameters stay separate leaf tensors, so each member
keeps its own optimizer and can be taken out and used alone). Its forward stacks the members'
weights layer by layer into (M, out, in) and runs one batched matmul per layer: for narrow
networks this removes the per-model launch overhead that dominates training one at a time.
It also keeps, per member, a copy of the weights at its best validation accuracy.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from dlslab.models import register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}
INITS: tuple[str, ...] = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                          "orthogonal", "normal", "zeros")


def _gain_name(activation: str) -> str:
    """The `nn.init.calculate_gain` name that fits an activation (ReLU-like ones use 'relu')."""
    return {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}.get(activation, "relu")


@torch.no_grad()
def init_linear(layer: nn.Linear, init: str, activation: str) -> None:
    """Re-initialise `layer` by name. 'default' keeps PyTorch's (uniform +-1/sqrt(fan_in) weights
    and biases); every other scheme sets the biases to zero. 'zeros' sets the weights to zero
    too, so all hidden units of a layer stay identical (the symmetry is never broken)."""
    w = layer.weight
    if init == "default":
        return
    if init == "xavier_uniform":
        nn.init.xavier_uniform_(w)
    elif init == "xavier_normal":
        nn.init.xavier_normal_(w)
    elif init == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, a=0.01 if activation == "leaky_relu" else 0.0, nonlinearity=_gain_name(activation))
    elif init == "kaiming_normal":
        nn.init.kaiming_normal_(w, a=0.01 if activation == "leaky_relu" else 0.0, nonlinearity=_gain_name(activation))
    elif init == "orthogonal":
        nn.init.orthogonal_(w)
    elif init == "normal":
        nn.init.normal_(w, 0.0, 0.01)
    elif init == "zeros":
        nn.init.zeros_(w)
    else:
        raise ValueError(f"unknown initializer {init!r}; valid: {', '.join(INITS)}")
    nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """in -> [Linear -> activation] x len(widths) -> Linear -> logits."""

    def __init__(self, in_features: int = 784, widths: Sequence[int] = (256, 256), num_classes: int = 10,
                 activation: str = "relu", init: str = "default"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        sizes = [in_features, *widths]
        self.activation, self.init = activation, init
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)
        self.act = ACTIVATIONS[activation]()
        for layer in self.linears:
            init_linear(layer, init, activation)

    @property
    def linears(self) -> list[nn.Linear]:
        return [*self.hidden, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, D)
        for layer in self.hidden:
            x = self.act(layer(x))  # (B, width)
        return self.head(x)  # (B, classes)

    @torch.no_grad()
    def layer_outputs(self, x: torch.Tensor, pre_activation: bool = False) -> list[torch.Tensor]:
        """[input (B, D), hidden 1 (B, w1), ...]: post-activation outputs, or the
        pre-activations (Linear outputs) with `pre_activation`."""
        x = x.flatten(1)
        outs = [x]
        for layer in self.hidden:
            z = layer(x)
            x = self.act(z)
            outs.append(z if pre_activation else x)
        return outs


class StackedMLP(nn.Module):
    """M MLPs of one shape, trained as one batched network (activations may differ).

    forward takes (B, D), one batch shared by all members — the first layer is then a single
    (B, D) x (D, M * width) matmul — or (M, B, D), each member its own batch; it returns
    (M, B, classes). `alive` marks members whose loss stayed finite; `best` holds each member's
    weights at its best validation accuracy (`best_val`, `best_epoch`); `loss_sum` accumulates
    each member's training loss until `take_train_loss` reads it.
    """

    def __init__(self, members: Sequence[MLP]):
        super().__init__()
        if not members:
            raise ValueError("StackedMLP needs at least one member")
        if len({tuple(p.shape for p in m.parameters()) for m in members}) > 1:
            raise ValueError("StackedMLP members must share layer shapes")
        self.members = nn.ModuleList(members)
        self.best = nn.ModuleList(copy.deepcopy(m).requires_grad_(False) for m in members)
        # runs of consecutive members with the same activation: (activation, start, end)
        self.segments: list[tuple[nn.Module, int, int]] = []
        for i, net in enumerate(members):
            if self.segments and members[self.segments[-1][1]].activation == net.activation:
                act, start, _ = self.segments[-1]
                self.segments[-1] = (act, start, i + 1)
            else:
                self.segments.append((net.act, i, i + 1))
        m = len(members)
        self.register_buffer("alive", torch.ones(m, dtype=torch.bool))
        self.register_buffer("best_val", torch.full((m,), -math.inf))
        self.register_buffer("best_epoch", torch.zeros(m, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("loss_sum", torch.zeros(m))
        self.register_buffer("loss_count", torch.zeros(()))

    def __len__(self) -> int:
        return len(self.members)

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's own activation on its slice of x (M, B, width)."""
        if len(self.segments) == 1:
            return self.segments[0][0](x)
        return torch.cat([act(x[start:end]) for act, start, end in self.segments])

    def forward(self, x: torch.Tensor, *, best: bool = False) -> torch.Tensor:
        nets = self.best if best else self.members
        layers = [net.linears for net in nets]
        first = 0
        if x.dim() == 2:  # shared batch: one wide matmul for every member's first layer
            w = torch.cat([ls[0].weight for ls in layers])  # (M * out, D)
            b = torch.cat([ls[0].bias for ls in layers])  # (M * out,)
            x = nn.functional.linear(x, w, b).view(len(x), len(nets), -1).transpose(0, 1)  # (M, B, out)
            if len(layers[0]) > 1:
                x = self.activate(x)
            first = 1
        for i in range(first, len(layers[0])):
            w = torch.stack([ls[i].weight for ls in layers])  # (M, out, in)
            b = torch.stack([ls[i].bias for ls in layers]).unsqueeze(1)  # (M, 1, out)
            x = torch.baddbmm(b, x, w.transpose(1, 2))  # (M, B, out)
            if i < len(layers[0]) - 1:
                x = self.activate(x)
        return x  # (M, B, classes)

    @torch.no_grad()
    def add_train_loss(self, losses: torch.Tensor, count: int) -> None:
        self.loss_sum += losses * count
        self.loss_count += count

    @torch.no_grad()
    def take_train_loss(self) -> torch.Tensor:
        """Each member's mean training loss since the last call (M,); resets the sums."""
        mean = self.loss_sum / self.loss_count.clamp_min(1)
        self.loss_sum.zero_()
        self.loss_count.zero_()
        return mean

    @torch.no_grad()
    def keep_best(self, val_acc: torch.Tensor, epoch: int) -> None:
        """Snapshot the members whose validation accuracy `val_acc` (M,) improved."""
        better = (val_acc > self.best_val) & self.alive
        for i in torch.nonzero(better).flatten().tolist():
            self.best[i].load_state_dict(self.members[i].state_dict())
        self.best_epoch[better] = epoch
        self.best_val[better] = val_acc[better]


@register_model("mlp", example=lambda: torch.randn(4, 1, 28, 28))
def mlp(in_features: int = 784, widths: Sequence[int] = (256, 256), num_classes: int = 10,
        activation: str = "relu", init: str = "default") -> nn.Module:
    return MLP(in_features, widths, num_classes, activation, init)

