"""The CIFAR-10 training recipe, as library code: the `augment` and `transfer` studies and the
CIFAR benchmarks all train through `train_cifar`.

`CifarRecipe` is the spec (network, steps, optimizer, schedule, evaluation); `build_model`
makes its network, `train_cifar` trains it on uint8 images with a named augmentation policy
and scores it on normalised test images, `trained_cell` keeps only a training's numbers in a
run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from dlslab.data.images import ImageData
from dlslab.data.splits import split_validation
from dlslab.errors import ConfigError
from dlslab.models.resnet import ResNetFast, SmallCNN
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.augment import Augmenter, flip_tta, normalize, soft_cross_entropy, to_unit
from dlslab.train.ddp import fit_data_parallel
from dlslab.train.engine import History, fit, predict
from dlslab.train.optim import linear_decay


@dataclass
class CifarRecipe:
    """The training recipe shared by the CIFAR-10 studies."""

    arch: Literal["resnet-fast", "small-cnn"] = "resnet-fast"  # the fast residual CNN or the plain small CNN
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # resnet-fast: stem and stage widths; small-cnn: first conv width
    blocks: list[int] = field(default_factory=lambda: [1, 0, 1])  # resnet-fast: residual pairs per stage
    epochs: int = 24  # passes over the training set (at least; see min_steps)
    min_steps: int = 500  # small training sets get more epochs, so at least this many steps
    batch_size: int = 512  # images per step (smaller when the training set is small: n // 8)
    lr: float = 0.4  # peak SGD learning rate (Nesterov momentum 0.9)
    weight_decay: float = 5e-4  # L2 weight decay
    warmup: float = 0.2  # fraction of the steps spent warming the learning rate up linearly
    label_smoothing: float = 0.2  # label smoothing of the cross-entropy
    tta: bool = True  # evaluate with flip test-time augmentation
    bf16: bool = True  # bfloat16 autocast on the CPU too (CUDA always uses it)
    eval_size: int = 10000  # test images scored after every epoch (the learning curves)
    test_size: int = 10000  # test images scored for the final accuracy
    holdout: float = 0.0  # > 0: hold out this stratified fraction of the training set and score on it, not on the test set (to choose settings)





def build_model(cfg: CifarRecipe, num_classes: int, device: torch.device) -> nn.Module:
    """The configured network on `device`, channels-last (faster convolutions on CPU and GPU)."""
    if cfg.arch == "resnet-fast":
        model: nn.Module = ResNetFast(num_classes, tuple(cfg.widths), tuple(cfg.blocks))
    else:
        model = SmallCNN(num_classes, width=cfg.widths[0])
    return model.to(device, memory_format=torch.channels_last)


def steps_plan(n: int, cfg: CifarRecipe) -> tuple[int, int]:
    """(batch size, epochs) for a training set of n images: the batch shrinks to n // 8 for
    tiny sets, and epochs grow until there are at least `min_steps` steps."""
    batch = max(8, min(cfg.batch_size, n // 8))
    per_epoch = math.ceil(n / batch)
    return batch, max(cfg.epochs, math.ceil(cfg.min_steps / per_epoch))


def autocast(cfg: CifarRecipe, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on the CPU when asked (the engine already does it on CUDA)."""
    if cfg.bf16 and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_loss(cfg: CifarRecipe, device: torch.device):
    def loss_fn(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with autocast(cfg, device):
            logits = model(x)
        return soft_cross_entropy(logits, targets, cfg.label_smoothing)

    return loss_fn


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: CifarRecipe) -> float:
    """Test accuracy on normalised images, with flip TTA when `cfg.tta`."""
    device = x.device

    def forward(m: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        with autocast(cfg, device):
            return (flip_tta(m, xb) if cfg.tta else m(xb)).float()

    return (predict(model, x, 1000, fn=forward).argmax(1) == y).float().mean().item()


@dataclass
class Trained:
    history: History
    test_acc: float
    steps: int
    batch_size: int


def train_cifar(cfg: CifarRecipe, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                test: tuple[torch.Tensor, torch.Tensor], *, policy: str, seed: int, run: Run | None,
                name: str, num_classes: int, param_groups: list[dict[str, Any]] | None = None,
                verbose: bool = True, data_parallel: bool = False,
                on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> Trained:
    """Train `model` on uint8 `train` images with augmentation `policy` and score it on the
    normalised `test` images. `param_groups` (each with an `lr`) overrides the single group.
    `data_parallel` trains across the process group (torchrun) instead of in this process."""
    device = next(model.parameters()).device
    x, y = train
    batch, epochs = steps_plan(len(x), cfg)
    steps = epochs * math.ceil(len(x) / batch)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay,
                          foreach=True)
    sched = linear_decay(opt, steps, warmup_steps=int(cfg.warmup * steps))
    tx, ty = test
    ex, ey = tx[:cfg.eval_size], ty[:cfg.eval_size]
    torch.manual_seed(seed)
    # the engine's shuffle seed must fit in 63 bits after its own arithmetic: derived seeds are folded
    common = {"optimizer": opt, "scheduler": sched, "epochs": epochs, "batch_size": batch,
              "transform": Augmenter(policy, num_classes), "evaluate": lambda m: {"test_acc": accuracy(m, ex, ey, cfg)},
              "seed": seed % 2**31, "name": name, "verbose": verbose, "on_epoch_end": on_epoch_end}
    if data_parallel:
        history = fit_data_parallel(model, (x, y), make_loss(cfg, device), **common)
    else:
        history = fit(model, (x, y), make_loss(cfg, device), run=run, **common)
    return Trained(history, accuracy(model, tx[:cfg.test_size], ty[:cfg.test_size], cfg), steps, batch)


def trained_cell(run: Run, name: str, train: Any) -> dict[str, Any]:
    """Run `train() -> Trained` once per run and keep only its numbers: the cell's result is
    cached in the run folder and the finished weights are deleted (a full sweep would
    otherwise keep hundreds of networks on disk)."""

    def compute() -> dict[str, Any]:
        out = train()
        return {"test_acc": out.test_acc, "steps": out.steps, "curve": out.history.series("test_acc"),
                "seconds": out.history.seconds}

    result = run.cached(name, compute)
    (run.checkpoint_dir / f"{name}.done.pt").unlink(missing_ok=True)
    return result


def device_tensors(data: ImageData, device: torch.device) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Training images stay uint8 on the device (augmented per batch); test images are
    converted and normalised once."""
    train = (data.train_x.to(device), data.train_y.to(device))
    test = (normalize(to_unit(data.test_x.to(device))), data.test_y.to(device))
    return train, test


def check_recipe(cfg: CifarRecipe) -> None:
    """Refuse out-of-range recipe values (a study's `check` calls this) with a ConfigError."""
    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: {allowed}")

    for key in ("epochs", "min_steps", "batch_size", "eval_size", "test_size"):
        need(getattr(cfg, key) >= 1, key, "must be >= 1")
    for key in ("widths", "blocks"):
        need(bool(getattr(cfg, key)), key, "give one or more values")
    need(min(cfg.widths) >= 1, "widths", "every width must be >= 1")
    need(min(cfg.blocks) >= 0, "blocks", "every block count must be >= 0")
    need(cfg.arch != "resnet-fast" or len(cfg.blocks) == len(cfg.widths) - 1, "blocks",
         f"resnet-fast needs one entry per stage ({len(cfg.widths) - 1} for widths={cfg.widths})")
    need(cfg.lr > 0, "lr", "must be > 0")
    need(cfg.weight_decay >= 0, "weight_decay", "must be >= 0")
    need(0 <= cfg.warmup <= 1, "warmup", "must be a fraction in [0, 1]")
    need(0 <= cfg.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
    need(0 <= cfg.holdout < 1, "holdout", "must be a fraction in [0, 1) (0: score on the test set)")


def study_tensors(data: ImageData, cfg: CifarRecipe, device: torch.device
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    """(train, scored, what scored is): the test set, or with `cfg.holdout` > 0 a stratified
    validation split of the training set (the rest trains), so settings are chosen without
    looking at the test set."""
    if cfg.holdout <= 0:
        train, test = device_tensors(data, device)
        return train, test, f"{min(cfg.test_size, len(test[0]))} test images"
    (tx, ty), (vx, vy) = split_validation(data.train_x, data.train_y, cfg.holdout, derive(0, "holdout"))
    held = dataclasses.replace(data, train_x=tx, train_y=ty, test_x=vx, test_y=vy)
    train, val = device_tensors(held, device)
    return train, val, f"{min(cfg.test_size, len(val[0]))} held-out training images (validation, not the test set)"
