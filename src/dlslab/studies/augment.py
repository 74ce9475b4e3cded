"""Study 4: how much data augmentation buys on CIFAR-10 as the training set shrinks.

Scientific hyperparameters: the augmentation policy and the training-set fraction.
Nuisance: none tuned per cell; every cell uses the same recipe (fast residual CNN, SGD with
Nesterov momentum, linear warm-up and decay, label smoothing), and small fractions train for
at least `min_steps` optimizer steps so they are not starved of updates. Fixed: the test set.

The recipe here (`CifarRecipe`, `train_cifar`) is shared with the transfer study and the
CIFAR benchmarks.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from dlslab.config import StudyConfig
from dlslab.data.images import ImageData, load_images
from dlslab.data.splits import subset_fraction
from dlslab.models.resnet import ResNetFast, SmallCNN
from dlslab.report.plots import line_plot
from dlslab.runs import Run
from dlslab.train.augment import POLICIES, Augmenter, flip_tta, normalize, soft_cross_entropy, to_unit
from dlslab.train.ddp import fit_data_parallel
from dlslab.train.engine import History, fit, predict
from dlslab.train.optim import linear_decay


@dataclass
class CifarRecipe(StudyConfig):
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


@dataclass
class Config(CifarRecipe):
    policies: list[str] = field(default_factory=lambda: list(POLICIES))  # augmentation policies compared
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.25, 0.5, 1.0])  # training-set fractions (stratified, seeded)
    seeds: int = 3  # seeds per (policy, fraction): the n of mean ± std
    grid_images: int = 8  # training images shown per policy in the samples grid


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"policies": ["none", "flip-crop"], "fractions": [0.02], "seeds": 1, "arch": "small-cnn",
              "widths": [16], "epochs": 4, "min_steps": 60, "batch_size": 64, "lr": 0.05,
              "eval_size": 500, "test_size": 1000, "tta": False},
    "quick": {"policies": ["none", "flip-crop", "flip-crop-cutout", "mixup", "trivial"], "fractions": [0.01, 0.05],
              "seeds": 1, "widths": [16, 32, 64, 128], "blocks": [0, 0, 1], "epochs": 6, "min_steps": 60,
              "batch_size": 128, "lr": 0.2, "eval_size": 500, "test_size": 2000},
    "full": {},
}


def data_needs(cfg: CifarRecipe) -> list[str]:
    return ["cifar10"]


# --- the shared recipe --------------------------------------------------------------------------


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
    common = {"optimizer": opt, "scheduler": sched, "epochs": epochs, "batch_size": batch,
              "transform": Augmenter(policy, num_classes), "evaluate": lambda m: {"test_acc": accuracy(m, ex, ey, cfg)},
              "seed": seed, "name": name, "verbose": verbose, "on_epoch_end": on_epoch_end}
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


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# --- the study ----------------------------------------------------------------------------------------


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}"


def run(cfg: Config, run: Run) -> dict:
    data = load_images("cifar10", run.data_dir)
    device = run.device
    if data.note:
        run.info(f"cifar10: {data.note}")
    train_all, test = device_tensors(data, device)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]

    acc: dict[tuple[str, float], list[float]] = {}
    rows = []
    t0 = time.perf_counter()
    for fi, fraction in enumerate(cfg.fractions):
        for si, seed in enumerate(seeds):
            x, y = subset_fraction(train_all[0].cpu(), train_all[1].cpu(), fraction, seed)
            x, y = x.to(device), y.to(device)
            for pi, policy in enumerate(cfg.policies):
                name = f"{policy}-f{_pct(fraction)}-s{seed}"

                def train(policy: str = policy, cell_seed: int = seed * 1000 + fi * 100 + pi) -> Trained:
                    torch.manual_seed(cell_seed)
                    model = build_model(cfg, 10, device)
                    return train_cifar(cfg, model, (x, y), test, policy=policy, seed=seed, run=run, name=name,
                                       num_classes=10)

                out = trained_cell(run, name, train)
                acc.setdefault((policy, fraction), []).append(out["test_acc"])
                rows.append({"policy": policy, "fraction": fraction, "seed": seed, "train_images": len(x),
                             "steps": out["steps"], "test_acc": out["test_acc"], "train_s": round(out["seconds"], 1)})
                run.log(stage="cell", **rows[-1])
    seconds = time.perf_counter() - t0

    summary = []
    for policy in cfg.policies:
        row: dict[str, Any] = {"policy": policy}
        for fraction in cfg.fractions:
            m, s = mean_std(acc[(policy, fraction)])
            row[f"{_pct(fraction)}%"] = f"{m:.4f} ± {s:.4f}" if len(seeds) > 1 else round(m, 4)
        summary.append(row)
    run.add_table("Test accuracy by policy and training-set fraction", summary,
                  caption=f"mean ± std over n={len(seeds)} seeds; {len(test[0][:cfg.test_size])} test images; "
                          f"TTA={'flip' if cfg.tta else 'off'}; data: cifar10 from {data.source.name}"
                          + (f" ({data.note})" if data.note else ""))
    run.add_table("Every training", rows)

    xs = [f * 100 for f in cfg.fractions]
    series = {p: (xs, [mean_std(acc[(p, f)])[0] for f in cfg.fractions]) for p in cfg.policies}
    bands = {p: [mean_std(acc[(p, f)])[1] for f in cfg.fractions] for p in cfg.policies}
    run.add_figure(line_plot(series, title="CIFAR-10: test accuracy vs training-set size", xlabel="% of training set",
                             ylabel="test accuracy", logx=len(xs) > 1, bands=bands if len(seeds) > 1 else None),
                   "acc_vs_fraction", title="Test accuracy vs training-set fraction, one line per policy")
    _sample_grid(cfg, run, train_all)

    headline, text = _conclusions(cfg, acc)
    run.add_text("What augmentation buys", text)
    return {"headline": headline, "cells": rows, "seconds": round(seconds, 1),
            "data": {"source": str(data.source.name), "note": data.note}}


def _sample_grid(cfg: Config, run: Run, train: tuple[torch.Tensor, torch.Tensor]) -> None:
    """One row per policy: the same training images as that policy sees them."""
    x, y = train[0][:cfg.grid_images], train[1][:cfg.grid_images]
    torch.manual_seed(cfg.seed)
    rows = [to_unit(x)] + [Augmenter(p).augment(x, y)[0] for p in cfg.policies]
    run.add_image_grid(torch.cat(rows).cpu(), "augmented_samples", nrow=cfg.grid_images, scale=3,
                       title="Augmented training images",
                       caption="top row: originals; then one row per policy, in order: " + ", ".join(cfg.policies))


def _conclusions(cfg: Config, acc: dict[tuple[str, float], list[float]]) -> tuple[dict[str, float], str]:
    mean = {k: mean_std(v)[0] for k, v in acc.items()}
    headline: dict[str, float] = {f"test_acc.{p}.f{_pct(f)}": round(mean[(p, f)], 4)
                                  for p in cfg.policies for f in cfg.fractions}
    best_key = max(mean, key=mean.get)
    headline["best_test_acc"] = round(mean[best_key], 4)
    lines = [f"Best: {best_key[0]} on {_pct(best_key[1])}% of the training set, "
             f"test accuracy {mean[best_key]:.4f}."]
    augmented = [p for p in cfg.policies if p != "none"]
    if "none" in cfg.policies and augmented:
        gains = {}
        for f in cfg.fractions:
            best = max(augmented, key=lambda p: mean[(p, f)])
            gains[f] = mean[(best, f)] - mean[("none", f)]
            headline[f"aug_gain.f{_pct(f)}"] = round(gains[f], 4)
            lines.append(f"{_pct(f)}%: best policy {best} ({mean[(best, f)]:.4f}) vs none "
                         f"({mean[('none', f)]:.4f}): {gains[f]:+.4f}.")
        small = [f for f in cfg.fractions if f <= 0.25]
        if small:
            helped = [f for f in small if gains[f] > 0]
            lines.append(f"Augmentation beat no augmentation at {len(helped)} of {len(small)} fractions ≤ 25%"
                         + ("." if len(helped) == len(small) else
                            f" (not at {', '.join(_pct(f) + '%' for f in small if f not in helped)})."))
            headline["aug_gain.min_le25"] = round(min(gains[f] for f in small), 4)
    return headline, "\n".join(lines)
