"""Study 5: transfer learning on CIFAR-10, with and without augmentation.

Scientific variables: how the target network starts (`methods`), the target training-set
fraction and the augmentation. Nuisance: none tuned per cell; every cell trains with the same
recipe (`train.cifar`), whose settings were chosen on a validation split (`holdout`). Fixed:
the source network (trained once), the test set; within a repeat every method sees the same
subset and batch order.

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
  `backbone_lr_scale` times the head's learning rate;
- `cross-arch`: as `init`, but from a source network of a different architecture (a
  `ResNetFast` with the same widths, trained on the same source task): its tensors are mapped
  to the target's names (`models.airbench.names_from_resnet`), so the copy is by role, not
  by name.

`transfer_weights` does the copying and says exactly which tensors were copied under their
own name, which were mapped from another name, which are new and which source tensors went
unused; the report lists them.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import nn

from dlslab.config import StudyConfig
from dlslab.data.images import load_images
from dlslab.data.splits import subset_fraction
from dlslab.errors import ConfigError
from dlslab.models.airbench import names_from_resnet
from dlslab.report.plots import line_plot
from dlslab.report.stats import STD_NOTE, format_mean_std, mean_std
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.augment import Policy
from dlslab.train.cifar import CifarRecipe, build_model, check_recipe, study_tensors, train_cifar, trained_cell

Method = Literal["scratch", "init", "frozen", "finetune", "cross-arch"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass
class Config(StudyConfig, CifarRecipe):
    source_classes: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # classes of the source task
    target_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])  # classes of the target task
    source_fraction: float = 1.0  # fraction of the source classes' training images the source learns from
    source_policy: Policy = "flip-crop-cutout"  # augmentation of the source training
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1])  # target training-set fractions (low-data regimes)
    methods: list[Method] = field(default_factory=lambda: list(METHODS))  # how the target network starts
    policies: list[Policy] = field(default_factory=lambda: ["none", "flip-crop-cutout"])  # target augmentation: without and with
    backbone_lr_scale: float = 0.1  # finetune: backbone learning rate relative to the head's
    seeds: int = 3  # repeats per target cell, each with its own subset and weights (the source is trained once)
    curve_fraction: float = 0.1  # the regime whose learning curves are plotted


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"widths": [16, 32, 32], "source_fraction": 0.1, "fractions": [0.04], "policies": ["none", "flip-crop"],
              "seeds": 1, "epochs": 2, "min_steps": 30, "eval_size": 500, "test_size": 1000, "tta": 0,
              "curve_fraction": 0.04},
    "quick": {"widths": [32, 64, 64], "source_fraction": 0.2, "fractions": [0.01, 0.05],
              "methods": ["scratch", "frozen", "finetune"], "policies": ["flip-crop"], "seeds": 2, "epochs": 16,
              "min_steps": 200, "eval_size": 500, "test_size": 2000, "tta": 1, "curve_fraction": 0.05},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return ["cifar10"]


def check(cfg: Config) -> None:
    """Refuse out-of-range values before anything runs."""
    check_recipe(cfg)

    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: {allowed}")

    for key in ("source_classes", "target_classes"):
        need(bool(getattr(cfg, key)) and all(0 <= c <= 9 for c in getattr(cfg, key)), key,
             "give one or more CIFAR-10 classes in 0..9")
    need(not set(cfg.source_classes) & set(cfg.target_classes), "target_classes",
         f"must not share a class with source_classes={cfg.source_classes}")
    need(0 < cfg.source_fraction <= 1, "source_fraction", "must be a fraction in (0, 1]")
    need(bool(cfg.fractions) and all(0 < f <= 1 for f in cfg.fractions), "fractions",
         "give one or more fractions in (0, 1]")
    need(bool(cfg.methods), "methods", "give one or more of " + ", ".join(METHODS))
    need(bool(cfg.policies), "policies", "give one or more augmentation policies")
    need("cross-arch" not in cfg.methods or cfg.arch == "airbench", "methods",
         f"cross-arch maps a resnet-fast source onto an airbench target; arch={cfg.arch!r} has no map (drop cross-arch)")
    need(cfg.backbone_lr_scale > 0, "backbone_lr_scale", "must be > 0")
    need(cfg.seeds >= 1, "seeds", "must be >= 1")
    need(cfg.curve_fraction in cfg.fractions, "curve_fraction", f"must be one of fractions={cfg.fractions}")


# --- copying tensors by name --------------------------------------------------------------------


@dataclass
class TransferReport:
    """What `transfer_weights` did, tensor by tensor (parameters and buffers)."""

    copied: list[tuple[str, str]]  # (target name, source name) of every copied tensor
    new: list[str]  # target tensors left as initialised
    unused: list[str]  # source tensors that were not copied anywhere

    @property
    def mapped(self) -> list[tuple[str, str]]:
        """The copied tensors whose source had another name (a different architecture)."""
        return [(t, s) for t, s in self.copied if t != s]

    def rows(self) -> list[dict[str, str]]:
        return ([{"tensor": t, "status": "copied" if t == s else "mapped", "from": s} for t, s in self.copied]
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


def other_arch(cfg: Config) -> Config:
    """The recipe of the `cross-arch` source: a ResNetFast of the same widths, one residual
    pair per stage."""
    return replace(cfg, arch="resnet-fast", blocks=[1] * (len(cfg.widths) - 1))


def target_model(cfg: Config, method: str, sources: Mapping[str, Mapping[str, torch.Tensor]], images: torch.Tensor
                 ) -> tuple[nn.Module, float, TransferReport | None]:
    """The target network for `method` (whitened from the target `images` unless it copies
    the source's whitening), the learning-rate scale of its backbone, and what was copied.
    `sources`: the source network's state ("same"), and the other architecture's ("other")."""
    model = build_model(cfg, len(cfg.target_classes), images.device, whiten=images)
    if method == "scratch":
        return model, 1.0, None
    if method == "cross-arch":
        return model, 1.0, transfer_weights(sources["other"], model, name_map=names_from_resnet(len(cfg.widths)))
    source_state = sources["same"]
    if method == "init":
        return model, 1.0, transfer_weights(source_state, model)
    report = transfer_weights(source_state, model, exclude=("head.",))
    if method == "frozen":
        return FrozenBackbone(model), 1.0, report
    return model, cfg.backbone_lr_scale, report


def run(cfg: Config, run: Run) -> dict:
    data = load_images("cifar10", run.data_dir)
    if data.note:
        run.info(f"cifar10: {data.note}")
    (train_x, train_y), (test_x, test_y), scored_on = study_tensors(data, cfg, run.device)
    source_task = (_relabel(train_x, train_y, cfg.source_classes), _relabel(test_x, test_y, cfg.source_classes))
    target_task = (_relabel(train_x, train_y, cfg.target_classes), _relabel(test_x, test_y, cfg.target_classes))
    t0 = time.perf_counter()
    sources, source_acc = {}, {}
    sources["same"], source_acc["same"] = _train_source(cfg, run, *source_task)
    if "cross-arch" in cfg.methods:
        sources["other"], source_acc["other"] = _train_source(other_arch(cfg), run, *source_task, name="source-other")
    acc, curves, reports, rows = _train_cells(cfg, run, sources, *target_task)
    seconds = time.perf_counter() - t0
    _record(cfg, run, acc, curves, reports, rows, source_acc, scored_on, data)
    headline, text = _conclusions(cfg, acc, source_acc)
    run.answer(text.split("\n", 1)[0])  # _conclusions puts the answer first
    run.add_text("Does transfer beat training from scratch?", text)
    return {"headline": headline, "cells": rows, "seconds": round(seconds, 1), "scored_on": scored_on,
            "tensors": {m: {"copied": [t for t, _ in r.copied], "mapped": dict(r.mapped), "new": r.new, "unused": r.unused}
                        for m, r in reports.items()},
            "data": {"source": str(data.source.name), "note": data.note}}


def _train_source(cfg: Config, run: Run, train: tuple[torch.Tensor, torch.Tensor],
                  test: tuple[torch.Tensor, torch.Tensor], name: str = "source") -> tuple[dict[str, torch.Tensor], float]:
    """The source network's weights (architecture `cfg.arch`) and its accuracy on the source
    classes."""
    device = train[0].device
    x, y = subset_fraction(train[0].cpu(), train[1].cpu(), cfg.source_fraction, derive(cfg.seed, "source-subset"))
    seed = derive(cfg.seed, name)
    torch.manual_seed(seed)
    x, y = x.to(device), y.to(device)
    source = build_model(cfg, len(cfg.source_classes), device, whiten=x)
    out = train_cifar(cfg, source, (x, y), test, policy=cfg.source_policy, seed=seed, run=run,
                      name=name, num_classes=len(cfg.source_classes))
    run.info(f"{name} network ({cfg.arch}): test accuracy {out.test_acc:.4f} on classes {cfg.source_classes}")
    return {k: v.detach() for k, v in source.state_dict().items()}, out.test_acc


def _train_cells(cfg: Config, run: Run, sources: Mapping[str, Mapping[str, torch.Tensor]],
                 train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]):
    """Every (fraction, repeat, policy, method) cell: accuracies, learning curves of the
    `curve_fraction` regime, what each method copied, and one row per cell."""
    device = train[0].device
    acc: dict[tuple[str, str, float], list[float]] = {}
    curves: dict[str, list[float]] = {}
    reports: dict[str, TransferReport] = {}
    rows = []
    for fraction in cfg.fractions:
        for repeat in range(cfg.seeds):
            x, y = subset_fraction(train[0].cpu(), train[1].cpu(), fraction,
                                   derive(cfg.seed, "subset", fraction, repeat))
            x, y = x.to(device), y.to(device)
            seed = derive(cfg.seed, "cell", fraction, repeat)  # the same for every method and policy
            for policy in cfg.policies:
                for method in cfg.methods:
                    torch.manual_seed(seed)
                    model, backbone_lr_scale, report = target_model(cfg, method, sources, x)
                    if report is not None:
                        reports[method] = report
                    name = f"{method}-{policy}-f{fraction * 100:g}-r{repeat}"
                    plotted = fraction == cfg.curve_fraction and repeat == 0  # only these are scored per epoch
                    recipe = cfg if plotted else replace(cfg, eval_size=0)
                    out = trained_cell(run, name, lambda: train_cifar(
                        recipe, model, (x, y), test, policy=policy, seed=seed, run=run, name=name,
                        num_classes=len(cfg.target_classes), backbone_lr_scale=backbone_lr_scale))
                    acc.setdefault((method, policy, fraction), []).append(out["test_acc"])
                    if plotted:
                        curves[f"{method} / {policy}"] = out["curve"]
                    rows.append({"method": method, "augment": policy, "fraction": fraction, "repeat": repeat,
                                 "train_images": len(x), "steps": out["steps"], "test_acc": out["test_acc"]})
                    run.log(stage="cell", **rows[-1])
    return acc, curves, reports, rows


def _record(cfg: Config, run: Run, acc: dict[tuple[str, str, float], list[float]], curves: dict[str, list[float]],
            reports: dict[str, TransferReport], rows: list[dict], source_acc: dict[str, float], scored_on: str,
            data: Any) -> None:
    table = [{"method": m, "augment": p, **{f"{f * 100:g}%": format_mean_std(acc[(m, p, f)], 4) for f in cfg.fractions}}
             for m in cfg.methods for p in cfg.policies]
    run.add_table("Target test accuracy", table,
                  caption=f"target classes {cfg.target_classes}; mean ± std over n={cfg.seeds} repeats ({STD_NOTE}); "
                          f"scored on {scored_on}; source network: {source_acc['same']:.4f} on classes {cfg.source_classes}"
                          + (f" (the other architecture's, for cross-arch: {source_acc['other']:.4f})"
                             if "other" in source_acc else "") + "; "
                          f"data: cifar10 from {data.source.name}" + (f" ({data.note})" if data.note else ""))
    if curves:
        n = max(len(c) for c in curves.values())
        run.add_figure(line_plot({k: (list(range(1, len(c) + 1)), c) for k, c in curves.items()},
                                 title=f"Learning curves, {cfg.curve_fraction * 100:g}% of the target data",
                                 xlabel=f"epoch (of {n})", ylabel="test accuracy"),
                       "learning_curves", title="Learning curves of the target networks")
    for method, report in reports.items():
        run.add_table(f"Tensors transferred ({method})", report.rows(), key=f"table:tensors-{method}",
                      caption=f"{len(report.copied) - len(report.mapped)} copied under their own name, "
                              f"{len(report.mapped)} mapped from another name, {len(report.new)} new, "
                              f"{len(report.unused)} source-only")
    run.add_table("Every training", rows)


def _conclusions(cfg: Config, acc: dict[tuple[str, str, float], list[float]], source_acc: dict[str, float]
                 ) -> tuple[dict[str, Any], str]:
    """The headline numbers and the report's text, the answer in its first sentence."""
    mean = {k: mean_std(v)[0] for k, v in acc.items()}
    headline: dict[str, Any] = {"source_test_acc": round(source_acc["same"], 4), "test_acc": {}}
    if "other" in source_acc:
        headline["other_source_test_acc"] = round(source_acc["other"], 4)
    for (m, p, f), v in mean.items():
        headline["test_acc"].setdefault(m, {}).setdefault(p, {})[f"f{f * 100:g}"] = round(v, 4)
    lines = []
    transfer = [m for m in cfg.methods if m != "scratch"]
    if "scratch" in cfg.methods and transfer:
        gains, details = {}, []
        for f in cfg.fractions:
            for p in cfg.policies:
                best = max(transfer, key=lambda m: mean[(m, p, f)])
                gains[(p, f)] = mean[(best, p, f)] - mean[("scratch", p, f)]
                headline.setdefault("transfer_gain", {}).setdefault(p, {})[f"f{f * 100:g}"] = round(gains[(p, f)], 4)
                details.append(f"{f * 100:g}% of the target data, augmentation {p}: best transfer method {best} "
                               f"({mean[(best, p, f)]:.4f}) vs scratch ({mean[('scratch', p, f)]:.4f}): "
                               f"{gains[(p, f)]:+.4f}.")
        wins = sum(g > 0 for g in gains.values())
        lo, hi = min(gains.values()) * 100, max(gains.values()) * 100
        lines.append(f"Transfer beat training from scratch in {wins} of {len(gains)} (fraction, augmentation) regimes, "
                     f"by {lo:+.1f} to {hi:+.1f} points (best transfer method per regime; mean of n={cfg.seeds}).")
        lines += details
    else:
        lines.append("No answer on transfer: `methods` needs scratch and at least one transfer method.")
    if {"cross-arch", "init"} <= set(cfg.methods):
        diffs = [mean[("cross-arch", p, f)] - mean[("init", p, f)] for p in cfg.policies for f in cfg.fractions]
        lines.append(f"Initialised from the other architecture (resnet-fast, mapped by name), the network scored "
                     f"{sum(diffs) / len(diffs):+.4f} on average against initialisation from the same architecture "
                     f"({sum(d > 0 for d in diffs)} of {len(diffs)} regimes better).")
    if len(cfg.policies) > 1:
        base, other = cfg.policies[0], cfg.policies[1:]
        diffs = [mean[(m, q, f)] - mean[(m, base, f)] for m in cfg.methods for q in other for f in cfg.fractions]
        better = sum(d > 0 for d in diffs)
        lines.append(f"Augmentation ({', '.join(other)}) beat {base} in {better} of {len(diffs)} (method, fraction) "
                     f"cells, by {sum(diffs) / len(diffs):+.4f} on average.")
    return headline, "\n".join(lines)
