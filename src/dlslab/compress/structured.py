"""Structured pruning: remove whole hidden units and channels, so the layers really shrink
and the result is an ordinary, smaller model of the same family (no masks, no sparse
kernels needed).

A unit's importance is the product of the norms of its incoming weights (a row of the
producing layer) and outgoing weights (the matching columns of the consuming layer), so a
unit with large inputs but near-zero outputs still counts as unimportant. For a convolution
feeding a linear layer, each channel owns a group of `in_features // channels` columns.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlslab.errors import UsageError
from dlslab.models import all_models, build_model


@dataclass(frozen=True)
class Link:
    """Units of `producer` that feed `consumer`; their count is `kwarg[index]` of the model."""

    producer: str
    consumer: str
    kwarg: str
    index: int | None = None  # position in a list-valued argument, None for a scalar


CHAINS: dict[str, list[Link]] = {
    "lenet300": [Link("fc1", "fc2", "hidden", 0), Link("fc2", "fc3", "hidden", 1)],
    "lenet5": [Link("conv1", "conv2", "channels", 0), Link("conv2", "fc1", "channels", 1),
               Link("fc1", "fc2", "hidden")],
}


def unit_importance(producer: torch.Tensor, consumer: torch.Tensor) -> torch.Tensor:
    """(units,) = ||incoming||_2 * ||outgoing||_2 per unit of the producing layer."""
    units = producer.shape[0]
    incoming = producer.reshape(units, -1).norm(dim=1)
    outgoing = consumer.reshape(consumer.shape[0], units, -1).transpose(0, 1).reshape(units, -1).norm(dim=1)
    return incoming * outgoing


@torch.no_grad()
def structured_prune(model: nn.Module, name: str, kwargs: dict[str, Any], keep: float | list[float]
                     ) -> tuple[nn.Module, dict[str, Any]]:
    """A smaller `name` model keeping the `keep` fraction (one per link, or one for all) of the
    most important units of each hidden layer, with their weights; and its arguments."""
    if name not in CHAINS:
        raise UsageError(f"structured pruning knows {', '.join(CHAINS)}, not {name!r}")
    links = CHAINS[name]
    fractions = keep if isinstance(keep, list) else [keep] * len(links)
    if len(fractions) != len(links) or any(not 0 < f <= 1 for f in fractions):
        raise UsageError(f"structured keep fractions for {name}: {len(links)} values in (0, 1]")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    defaults = {p.name: p.default for p in inspect.signature(all_models()[name].factory).parameters.values()
                if p.default is not p.empty}
    new_kwargs = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in (defaults | kwargs).items()}
    for link, frac in zip(links, fractions):
        wp, wc = state[f"{link.producer}.weight"], state[f"{link.consumer}.weight"]
        units = wp.shape[0]
        n_keep = max(1, round(frac * units))
        kept = unit_importance(wp, wc).topk(n_keep).indices.sort().values
        group = wc.shape[1] // units
        cols = (kept[:, None] * group + torch.arange(group, device=kept.device)).flatten()
        state[f"{link.producer}.weight"] = wp[kept]
        state[f"{link.producer}.bias"] = state[f"{link.producer}.bias"][kept]
        state[f"{link.consumer}.weight"] = wc[:, cols]
        if link.index is None:
            new_kwargs[link.kwarg] = n_keep
        else:
            new_kwargs[link.kwarg][link.index] = n_keep
    small = build_model(name, **new_kwargs).to(next(model.parameters()).device)
    small.load_state_dict(state)
    return small, new_kwargs
