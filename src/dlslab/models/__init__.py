"""Model families, one file each, and a registry by name.

A model file defines its blocks first and its model class last, and registers a factory:

    @register_model("lenet300", example=lambda: torch.randn(2, 1, 28, 28))
    def lenet300(num_classes: int = 10) -> nn.Module: ...

`tests/models/test_registry.py` builds every registered model with its defaults, runs a
forward and a backward pass on `example()`, and checks the gradients are finite, so a new
model is tested without a new test. Model files never read data.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    example: Callable[[], Any]  # a small input batch (a tensor, or a tuple of forward args)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, example: Callable[[], Any]) -> Callable:
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(name, factory, example)
        return factory

    return wrap


def all_models() -> dict[str, ModelEntry]:
    """Every registered model (imports each module in this package once)."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return dict(_REGISTRY)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    models = all_models()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(models))}")
    return models[name].factory(**kwargs)
