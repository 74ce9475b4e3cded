"""Optimizers and LR schedules by name, with the fast (fused, else foreach) kernels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

import torch

OptimizerName = Literal["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
MOMENTUM = 0.9  # of `momentum` and `nesterov`
ADAMW_DECAY = 1e-2  # AdamW's decoupled weight decay when none is given (torch's default)


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float,
                   weight_decay: float = 0.0, momentum: float = MOMENTUM) -> torch.optim.Optimizer:
    """`sgd`, `momentum` (SGD, momentum 0.9), `nesterov`, `adam`, `adamw`, `rmsprop`, `adagrad`."""
    params = list(params)
    # fused kernels (one op for every parameter's update) where torch has them, else foreach
    fast = {"fused": True}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **fast)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True,
                               weight_decay=weight_decay, **fast)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay or ADAMW_DECAY, **fast)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay, **fast)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float, total_steps: int,
              pct_start: float = 0.25) -> torch.optim.lr_scheduler.LRScheduler:
    """Warm up to `max_lr`, then anneal; step it once per batch."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 2),
                                               pct_start=pct_start)


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int,
                 warmup_steps: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over `warmup_steps`, then linear decay to zero at `total_steps`."""
    total = max(total_steps, 1)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total - step) / max(total - warmup_steps, 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
