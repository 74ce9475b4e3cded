"""Study 5: transfer learning on CIFAR-10, with and without augmentation.

A source network learns the source classes (default: airplane..deer, 0-4) on all their
training images. The target task is the other classes (dog..truck, 5-9) with only a small
stratified fraction of their training images. Four ways to train the target network, each
with and without augmentation:

- `scratch`: fresh weights;
- `init`: every tensor of the source whose (mapped) name and shape match is copied, the
  head included when it fits, then everything trains as from scratch;
- `frozen`: the source backbone is frozen (weights and batch-norm statistics) and only a new
  linear head trains;
- `finetune`: the source backbone with a new head; the backbone trains at
  `backbone_lr_scale` times the head's learning rate.

`transfer_weights` does the copying and says exactly which tensors were copied, which are new
and which source tensors went unused; the report lists them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dlslab.data.images import load_images
from dlslab.data.splits import subset_fraction
from dlslab.errors import UsageError
from dlslab.report.plots import line_plot
from dlslab.runs import Run
from dlslab.studies.augment import CifarRecipe, build_model, device_tensors, mean_std, train_cifar, trained_cell
from dlslab.train.augment import POLICIES

METHODS: tuple[str, ...] = ("scratch", "init", "frozen", "finetune")


@dataclass
class Config(CifarRecipe):
    source_classes: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # classes of the source task
    target_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])  # classes of the target task
    source_fraction: float = 1.0  # fraction of the source classes' training images the source learns from
    source_policy: str = "flip-crop-cutout"  # augmentation of the source training
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1])  # target training-set fractions (low-data regimes)
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # scratch, init, frozen, finetune
    policies: list[str] = field(default_factory=lambda: ["none", "flip-crop-cutout"])  # target augmentation: without and with
    backbone_lr_scale: float = 0.1  # finetune: backbone learning rate relative to the head's
    seeds: int = 3  # seeds per target cell (the source network is trained once)
    curve_fraction: float = 0.1  # the regime whose learning curves are plotted


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"arch": "small-cnn", "widths": [16], "source_fraction": 0.1, "fractions": [0.04],
              "policies": ["none", "flip-crop"], "seeds": 1, "epochs": 2, "min_steps": 30, "batch_size": 64,
              "lr": 0.05, "eval_size": 500, "test_size": 1000, "tta": False, "curve_fraction": 0.04},
    "quick": {"widths": [16, 32, 64, 128], "blocks": [0, 0, 1], "source_fraction": 0.2, "fractions": [0.01, 0.05],
              "policies": ["none", "flip-crop"], "seeds": 1, "epochs": 6, "min_steps": 60, "batch_size": 128,
              "lr": 0.2, "eval_size": 500, "test_size": 2000, "curve_fraction": 0.05},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return ["cifar10"]


# --- copying tensors by name --------------------------------------------------------------------


@dataclass
class TransferReport:
    """What `transfer_weights` did, tensor by tensor (parameters and buffers)."""

    copied: list[tuple[str, str]]  # (target name, source name) of every copied tensor
    new: list[str]  # target tensors left as initialised
    unused: list[str]  # source tensors that were not copied anywhere

    def rows(self) -> list[dict[str, str]]:
        return ([{"tensor": t, "status": "copied", "from": s} for t, s in self.copied]
                + [{"tensor": t, "status": "new", "from": ""} for t in self.new]
                + [{"tensor": s, "status": "source only (unused)", "from": s} for s in self.unused])


def transfer_weights(source: Mapping[str, torch.Tensor], target: nn.Module, *,
                     name_map: Mapping[str, str] | None = None, exclude: Sequence[str] = ()) -> TransferReport:
    """Copy into `target` every tensor of the state dict `source` whose name and shape match.

    `name_map` ({regex: replacement}, applied in order to each target name) gives the source
    name for a different architecture; target names starting with a prefix in `exclude` are
    never copied (e.g. a head that must start fresh)."""
    state = target.state_dict()
    copied, new, used = [], [], set()
    for name, tensor in state.items():
        src = name
        for pattern, repl in (name_map or {}).items():
            src = re.sub(pattern, repl, src)
        if any(name.startswith(p) for p in exclude) or src not in source or source[src].shape != tensor.shape:
            new.append(name)
            continue
        with torch.no_grad():
            tensor.copy_(source[src].to(tensor.device, tensor.dtype))
        copied.append((name, src))
        used.add(src)
    return TransferReport(copied, new, [s for s in source if s not in used])


class FrozenBackbone(nn.Module):
    """A network whose every tensor but `head.*` is frozen, batch-norm statistics included:
    it stays in eval mode whatever `train()` asks, and only the head has gradients."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith("head."))

    def train(self, mode: bool = True) -> FrozenBackbone:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- the study ----------------------------------------------------------------------------------


def _relabel(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of `classes`, labelled 0..len(classes)-1 in that order."""
    lookup = torch.full((int(y.max()) + 1,), -1, dtype=torch.long, device=y.device)
    lookup[torch.tensor(classes, device=y.device)] = torch.arange(len(classes), device=y.device)
    keep = lookup[y] >= 0
    return x[keep], lookup[y[keep]]


def _check(cfg: Config) -> None:
    overlap = set(cfg.source_classes) & set(cfg.target_classes)
    if overlap or not cfg.source_classes or not cfg.target_classes:
        raise UsageError(f"source_classes and target_classes must be non-empty and disjoint (shared: {sorted(overlap)})")
    for name in [*cfg.policies, cfg.source_policy]:
        if name not in POLICIES:
            raise UsageError(f"unknown augmentation policy {name!r}; valid: {', '.join(POLICIES)}")
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown transfer method(s) {unknown}; valid: {', '.join(METHODS)}")


def target_model(cfg: Config, method: str, source_state: Mapping[str, torch.Tensor], device: torch.device
                 ) -> tuple[nn.Module, list[dict[str, Any]] | None, TransferReport | None]:
    """The target network for `method`, its optimizer parameter groups (None: one group)
    and what was copied from the source."""
    model = build_model(cfg, len(cfg.target_classes), device)
    if method == "scratch":
        return model, None, None
    if method == "init":
        return model, None, transfer_weights(source_state, model)
    report = transfer_weights(source_state, model, exclude=("head.",))
    if method == "frozen":
        frozen = FrozenBackbone(model)
        return frozen, [{"params": list(model.head.parameters()), "lr": cfg.lr}], report
    backbone = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    return model, [{"params": backbone, "lr": cfg.lr * cfg.backbone_lr_scale},
                   {"params": list(model.head.parameters()), "lr": cfg.lr}], report


def run(cfg: Config, run: Run) -> dict:
    _check(cfg)
    data = load_images("cifar10", run.data_dir)
    device = run.device
    if data.note:
        run.info(f"cifar10: {data.note}")
    (train_x, train_y), (test_x, test_y) = device_tensors(data, device)
    src_train = _relabel(train_x, train_y, cfg.source_classes)
    src_test = _relabel(test_x, test_y, cfg.source_classes)
    tgt_train = _relabel(train_x, train_y, cfg.target_classes)
    tgt_test = _relabel(test_x, test_y, cfg.target_classes)

    t0 = time.perf_counter()
    sx, sy = subset_fraction(src_train[0].cpu(), src_train[1].cpu(), cfg.source_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    source = build_model(cfg, len(cfg.source_classes), device)
    src = train_cifar(cfg, source, (sx.to(device), sy.to(device)), src_test, policy=cfg.source_policy,
                      seed=cfg.seed, run=run, name="source", num_classes=len(cfg.source_classes))
    source_state = {k: v.detach() for k, v in source.state_dict().items()}
    run.info(f"source network: test accuracy {src.test_acc:.4f} on classes {cfg.source_classes}")

    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    acc: dict[tuple[str, str, float], list[float]] = {}
    curves: dict[str, list[float]] = {}
    reports: dict[str, TransferReport] = {}
    rows = []
    for fi, fraction in enumerate(cfg.fractions):
        for seed in seeds:
            x, y = subset_fraction(tgt_train[0].cpu(), tgt_train[1].cpu(), fraction, seed)
            x, y = x.to(device), y.to(device)
            for policy in cfg.policies:
                for mi, method in enumerate(cfg.methods):
                    torch.manual_seed(seed * 1000 + fi * 100 + mi)
                    model, groups, report = target_model(cfg, method, source_state, device)
                    if report is not None:
                        reports[method] = report
                    name = f"{method}-{policy}-f{fraction * 100:g}-s{seed}"
                    out = trained_cell(run, name, lambda: train_cifar(
                        cfg, model, (x, y), tgt_test, policy=policy, seed=seed, run=run, name=name,
                        num_classes=len(cfg.target_classes), param_groups=groups))
                    acc.setdefault((method, policy, fraction), []).append(out["test_acc"])
                    if fraction == cfg.curve_fraction and seed == seeds[0]:
                        curves[f"{method} / {policy}"] = out["curve"]
                    rows.append({"method": method, "augment": policy, "fraction": fraction, "seed": seed,
                                 "train_images": len(x), "steps": out["steps"], "test_acc": out["test_acc"]})
                    run.log(stage="cell", **rows[-1])
    seconds = time.perf_counter() - t0

    table = []
    for method in cfg.methods:
        for policy in cfg.policies:
            row: dict[str, Any] = {"method": method, "augment": policy}
            for f in cfg.fractions:
                m, s = mean_std(acc[(method, policy, f)])
                row[f"{f * 100:g}%"] = f"{m:.4f} ± {s:.4f}" if len(seeds) > 1 else round(m, 4)
            table.append(row)
    run.add_table("Target test accuracy", table,
                  caption=f"target classes {cfg.target_classes}; mean ± std over n={len(seeds)} seeds; "
                          f"source network: {src.test_acc:.4f} on classes {cfg.source_classes}; "
                          f"data: cifar10 from {data.source.name}" + (f" ({data.note})" if data.note else ""))
    if curves:
        n = max(len(c) for c in curves.values())
        run.add_figure(line_plot({k: (list(range(1, len(c) + 1)), c) for k, c in curves.items()},
                                 title=f"Learning curves, {cfg.curve_fraction * 100:g}% of the target data",
                                 xlabel=f"epoch (of {n})", ylabel="test accuracy"),
                       "learning_curves", title="Learning curves of the target networks")
    for method, report in reports.items():
        run.add_table(f"Tensors transferred ({method})", report.rows(), key=f"table:tensors-{method}",
                      caption=f"{len(report.copied)} copied, {len(report.new)} new, {len(report.unused)} source-only")
    run.add_table("Every training", rows)

    headline, text = _conclusions(cfg, acc, src.test_acc)
    run.add_text("Does transfer beat training from scratch?", text)
    return {"headline": headline, "cells": rows, "seconds": round(seconds, 1),
            "tensors": {m: {"copied": [t for t, _ in r.copied], "new": r.new, "unused": r.unused}
                        for m, r in reports.items()},
            "data": {"source": str(data.source.name), "note": data.note}}


def _conclusions(cfg: Config, acc: dict[tuple[str, str, float], list[float]], source_acc: float
                 ) -> tuple[dict[str, float], str]:
    mean = {k: mean_std(v)[0] for k, v in acc.items()}
    headline: dict[str, float] = {"source_test_acc": round(source_acc, 4)}
    headline |= {f"test_acc.{m}.{p}.f{f * 100:g}": round(v, 4) for (m, p, f), v in mean.items()}
    lines = []
    transfer = [m for m in cfg.methods if m != "scratch"]
    if "scratch" in cfg.methods and transfer:
        wins, cells = 0, 0
        for f in cfg.fractions:
            for p in cfg.policies:
                best = max(transfer, key=lambda m: mean[(m, p, f)])
                gain = mean[(best, p, f)] - mean[("scratch", p, f)]
                wins, cells = wins + (gain > 0), cells + 1
                headline[f"transfer_gain.{p}.f{f * 100:g}"] = round(gain, 4)
                lines.append(f"{f * 100:g}% of the target data, augmentation {p}: best transfer method {best} "
                             f"({mean[(best, p, f)]:.4f}) vs scratch ({mean[('scratch', p, f)]:.4f}): {gain:+.4f}.")
        lines.append(f"Transfer beat scratch in {wins} of {cells} (fraction, augmentation) regimes.")
    if len(cfg.policies) > 1:
        base, other = cfg.policies[0], cfg.policies[1:]
        diffs = [mean[(m, q, f)] - mean[(m, base, f)] for m in cfg.methods for q in other for f in cfg.fractions]
        better = sum(d > 0 for d in diffs)
        lines.append(f"Augmentation ({', '.join(other)}) beat {base} in {better} of {len(diffs)} (method, fraction) "
                     f"cells, by {sum(diffs) / len(diffs):+.4f} on average.")
    return headline, "\n".join(lines)
