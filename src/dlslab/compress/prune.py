"""Magnitude pruning: one-shot or iterative, with per-layer or global thresholds.

A pruned layer keeps its weight under a `Mask` parametrization, so the pruned weights are
exactly zero in every forward pass and receive no gradient: they stay zero through
retraining. Iterative pruning (Han et al., 2015) raises the sparsity round by round,
retraining in between; `sparsity_schedule` spaces the rounds cubically (Zhu & Gupta, 2017),
pruning most while the network still has much to spare.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dlslab.compress.layers import Parametrization, attach, bake, weight_layers
from dlslab.errors import UsageError


class Mask(Parametrization):
    """weight * mask, with mask 0 for pruned weights."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask

    def exact(self, w: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask.bool(), w, torch.zeros_like(w))


def keep_largest(w: torch.Tensor, keep: int) -> torch.Tensor:
    """A 0/1 mask of the `keep` largest-magnitude entries of `w`."""
    mask = torch.zeros(w.numel(), device=w.device)
    if keep > 0:
        mask[w.detach().abs().flatten().topk(keep).indices] = 1.0
    return mask.view_as(w)


def magnitude_masks(model: nn.Module, sparsity: float | dict[str, float],
                    scope: Literal["layer", "global"] = "layer") -> dict[str, torch.Tensor]:
    """Masks that zero the smallest weights: per layer (`sparsity` a float for all layers or a
    dict layer -> fraction), or with one global threshold across layers (`sparsity` a float)."""
    layers = weight_layers(model)
    if isinstance(sparsity, dict):
        unknown = set(sparsity) - set(layers)
        if unknown:
            raise UsageError(f"no prunable layer named {sorted(unknown)}; layers: {', '.join(layers)}")
        if scope == "global":
            raise UsageError("a global threshold takes one sparsity for the whole model, not one per layer")
    fractions = sparsity if isinstance(sparsity, dict) else dict.fromkeys(layers, float(sparsity))
    if any(not 0.0 <= f < 1.0 for f in fractions.values()):
        raise UsageError(f"sparsity must lie in [0, 1); got {fractions}")
    if scope == "layer":
        return {name: keep_largest(layers[name].weight, round((1 - f) * layers[name].weight.numel()))
                for name, f in fractions.items()}
    everything = torch.cat([m.weight.detach().abs().flatten() for m in layers.values()])
    keep = round((1 - float(sparsity)) * everything.numel())
    threshold = everything.topk(keep).values.min() if keep else torch.tensor(float("inf"))
    return {name: (m.weight.detach().abs() >= threshold).float() for name, m in layers.items()}


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Bake any earlier parametrization, then hold each masked layer's pruned weights at zero."""
    bake(model)
    layers = weight_layers(model)
    for name, mask in masks.items():
        attach(layers[name], "weight", Mask(mask))
    return model


def prune_magnitude(model: nn.Module, sparsity: float | dict[str, float],
                    scope: Literal["layer", "global"] = "layer") -> dict[str, torch.Tensor]:
    """Prune `model` in place (see `magnitude_masks`) and return the masks."""
    bake(model)
    masks = magnitude_masks(model, sparsity, scope)
    apply_masks(model, masks)
    return masks


def sparsity_schedule(final: dict[str, float], rounds: int) -> list[dict[str, float]]:
    """Per-round sparsities rising cubically from 0 to `final` over `rounds` rounds."""
    return [{k: s * (1 - (1 - r / rounds) ** 3) for k, s in final.items()} for r in range(1, rounds + 1)]


def layer_density(model: nn.Module) -> dict[str, float]:
    """Fraction of non-zero weights per layer (of the weights as the model computes them)."""
    return {name: float((m.weight != 0).float().mean()) for name, m in weight_layers(model).items()}
