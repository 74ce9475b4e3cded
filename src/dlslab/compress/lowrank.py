"""Low-rank factorisation of linear layers by truncated SVD.

A (out, in) weight W = U S V^T is replaced by two layers: in -> r (sqrt(S) V^T, no bias)
and r -> out (U sqrt(S), with the original bias), which stores r * (in + out) numbers
instead of in * out. The packed file records the ranks (`structure: {"lowrank": ...}`), so
the loader rebuilds the factorised layers before loading the weights.
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.errors import UsageError


def factorised_linear(in_features: int, out_features: int, rank: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, rank, bias=False), nn.Linear(rank, out_features, bias=bias))


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _linear(model: nn.Module, name: str) -> nn.Linear:
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        raise UsageError(f"no layer named {name!r} to factorise") from None
    if not isinstance(layer, nn.Linear):
        raise UsageError(f"{name!r} is a {type(layer).__name__}; only Linear layers are factorised")
    return layer


@torch.no_grad()
def low_rank_factorise(model: nn.Module, ranks: dict[str, int]) -> dict[str, int]:
    """Replace each named Linear by its rank-r factors (in place); ranks that would not save
    storage are skipped. Returns the ranks applied."""
    applied = {}
    for name, r in ranks.items():
        layer = _linear(model, name)
        out_f, in_f = layer.weight.shape
        if r * (in_f + out_f) >= in_f * out_f:
            continue
        u, s, vh = torch.linalg.svd(layer.weight.float(), full_matrices=False)
        root = s[:r].sqrt()
        new = factorised_linear(in_f, out_f, r, layer.bias is not None).to(layer.weight.device)
        new[0].weight.copy_(root[:, None] * vh[:r])  # (r, in)
        new[1].weight.copy_(u[:, :r] * root[None, :])  # (out, r)
        if layer.bias is not None:
            new[1].bias.copy_(layer.bias)
        _replace(model, name, new)
        applied[name] = r
    return applied


def apply_low_rank_structure(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Give `model` the factorised layers recorded in a packed file (weights loaded after)."""
    for name, r in ranks.items():
        layer = _linear(model, name)
        out_f, in_f = layer.weight.shape
        _replace(model, name, factorised_linear(in_f, out_f, int(r), layer.bias is not None))
    return model
