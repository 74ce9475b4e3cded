"""Uniform symmetric quantisation of weights to int8/int4: post-training (PTQ) and
quantisation-aware training (QAT) with a straight-through estimator.

A b-bit tensor is `q * scale` with integer q in [-(2**(b-1) - 1), 2**(b-1) - 1] and one
float scale per tensor. The clipping range is the largest magnitude, or (for few bits) the
fraction of it that minimises the squared error, since a few outliers otherwise waste most
of the levels. Activations stay in floating point (weight-only quantisation).
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.compress.layers import Parametrization, attach, bake, weight_layers
from dlslab.compress.prune import Mask

CLIP_GRID = torch.linspace(0.3, 1.0, 36)  # clip fractions tried by the squared-error search


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def fake_quantise(w: torch.Tensor, bits: int, clip: float | torch.Tensor) -> torch.Tensor:
    """The exact quantised value of `w` at clip fraction `clip` of max |w|."""
    scale = (w.detach().abs().max() * clip / qmax(bits)).clamp_min(torch.finfo(w.dtype).tiny)
    return (w / scale).round().clamp(-qmax(bits), qmax(bits)) * scale


def best_clip(w: torch.Tensor, bits: int) -> float:
    """The clip fraction with the smallest squared quantisation error (1.0 at 8 bits and up)."""
    if bits >= 8:
        return 1.0
    errors = torch.stack([(fake_quantise(w, bits, c) - w).pow(2).sum() for c in CLIP_GRID])
    return float(CLIP_GRID[errors.argmin()])


class FakeQuant(Parametrization):
    """Quantise in the forward pass, pass the gradient straight through."""

    def __init__(self, bits: int, clip: float):
        super().__init__()
        self.bits = bits
        self.register_buffer("clip", torch.tensor(clip))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (fake_quantise(w, self.bits, self.clip) - w).detach()

    def exact(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantise(w, self.bits, self.clip)


@torch.no_grad()
def quantise_ptq(model: nn.Module, bits: int) -> nn.Module:
    """Post-training quantisation of every weight layer, in place."""
    bake(model)
    for m in weight_layers(model).values():
        m.weight.data = fake_quantise(m.weight, bits, best_clip(m.weight, bits)) + 0.0
    return model


def prepare_qat(model: nn.Module, bits: int | dict[str, int], *, keep_zeros: bool = False) -> nn.Module:
    """Make every weight layer train through fake quantisation at `bits` (one width for all,
    or layer name -> width); `bake` fixes the result. With `keep_zeros` (a pruned model),
    weights that are zero now are held at zero."""
    bake(model)
    for name, m in weight_layers(model).items():
        b = bits[name] if isinstance(bits, dict) else bits
        if keep_zeros:
            attach(m, "weight", Mask(m.weight.detach() != 0))
        attach(m, "weight", FakeQuant(b, best_clip(m.weight.detach(), b)))
    return model
