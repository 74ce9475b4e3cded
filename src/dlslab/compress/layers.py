"""Which tensors the compression techniques act on, and how a technique's
parametrization is made permanent ("baked") with exact values.

Pruning masks, shared weights and fake quantisation are `torch.nn.utils.parametrize`
parametrizations: the layer's `weight` is computed from trainable state on every forward,
so training sees exactly the compressed weights. `bake` replaces each by the exact values it
stands for (a straight-through estimator's forward may differ from them by rounding), so
the model that is packed, measured and loaded back is the same, bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear and convolution layers by module name (their `weight` is what is compressed)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}


def bias_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in weight_layers(model).items() if m.bias is not None}


class Parametrization(nn.Module):
    """Base class: `exact(original)` is the value the tensor stands for (default: forward)."""

    def exact(self, original: torch.Tensor) -> torch.Tensor:
        return self.forward(original)


def attach(module: nn.Module, attr: str, p: Parametrization, *, freeze_original: bool = False) -> None:
    """Parametrize `module.attr` by `p`; with `freeze_original`, the underlying tensor stops
    training (weight sharing trains the centroids instead)."""
    parametrize.register_parametrization(module, attr, p)
    if freeze_original:
        module.parametrizations[attr].original.requires_grad_(False)


@torch.no_grad()
def bake(model: nn.Module) -> nn.Module:
    """Replace every parametrized tensor by its exact value (signed zeros become +0.0)."""
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        for attr in list(module.parametrizations.keys()):
            plist = module.parametrizations[attr]
            value = plist.original
            for p in plist:
                value = p.exact(value)
            value = value + 0.0
            parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
            param = getattr(module, attr)
            param.data = value.detach().clone()
            param.requires_grad_(True)
    return model


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
