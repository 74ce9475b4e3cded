"""Study 4: how much data augmentation buys on CIFAR-10 as the training set shrinks.

Scientific variables: the augmentation policy and the training-set fraction.
Nuisance: none tuned per cell; every cell uses the same recipe (`train.cifar`), and small
fractions train for at least `min_steps` optimizer steps so they are not starved of updates.
The recipe's settings were chosen on a validation split (`holdout`), never on the test set.
Fixed: the test set; within a repeat, every policy starts from the same weights and sees the
same subset and batch order (a paired comparison).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from dlslab.config import StudyConfig
from dlslab.data.images import load_images
from dlslab.data.splits import subset_fraction
from dlslab.errors import ConfigError
from dlslab.report.plots import line_plot
from dlslab.report.stats import STD_NOTE, format_mean_std, mean_std
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.augment import POLICIES, Augmenter, Policy, to_unit
from dlslab.train.cifar import CifarRecipe, build_model, check_recipe, study_tensors, train_cifar, trained_cell


@dataclass
class Config(StudyConfig, CifarRecipe):
    policies: list[Policy] = field(default_factory=lambda: list(POLICIES))  # augmentation policies compared
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.25, 0.5, 1.0])  # training-set fractions (stratified, seeded)
    seeds: int = 3  # repeats per (policy, fraction), each with its own subset and weights: the n of mean ± std
    grid_images: int = 8  # training images shown per policy in the samples grid
    eval_size: int = 0  # test images scored after every epoch (0: none; the report shows no curves)


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"policies": ["none", "flip-crop"], "fractions": [0.02], "seeds": 1, "widths": [16, 32, 32],
              "epochs": 4, "min_steps": 40, "test_size": 1000, "tta": 0},
    "quick": {"policies": ["none", "flip-crop"], "fractions": [0.01, 0.05], "seeds": 2, "widths": [32, 64, 64],
              "epochs": 16, "min_steps": 200, "test_size": 2000, "tta": 1},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return ["cifar10"]


def check(cfg: Config) -> None:
    """Refuse out-of-range values before anything runs."""
    check_recipe(cfg)
    if not cfg.policies:
        raise ConfigError(f"policies={cfg.policies!r}: give one or more of {', '.join(POLICIES)}")
    if not cfg.fractions or not all(0 < f <= 1 for f in cfg.fractions):
        raise ConfigError(f"fractions={cfg.fractions!r}: give one or more fractions in (0, 1]")
    for key in ("seeds", "grid_images"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: must be >= 1")


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}"


# --- the study ----------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    data = load_images("cifar10", run.data_dir)
    if data.note:
        run.info(f"cifar10: {data.note}")
    train_all, test, scored_on = study_tensors(data, cfg, run.device)
    t0 = time.perf_counter()
    acc, rows = _train_cells(cfg, run, train_all, test)
    seconds = time.perf_counter() - t0
    _record(cfg, run, acc, rows, scored_on, data)
    _sample_grid(cfg, run, train_all)
    headline, text = _conclusions(cfg, acc)
    run.answer(text.split("\n", 1)[0])  # _conclusions puts the answer first
    run.add_text("What augmentation buys", text)
    return {"headline": headline, "cells": rows, "seconds": round(seconds, 1), "scored_on": scored_on,
            "data": {"source": str(data.source.name), "note": data.note}}


def _train_cells(cfg: Config, run: Run, train_all: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor]) -> tuple[dict[tuple[str, float], list[float]], list[dict]]:
    """Every (fraction, repeat, policy) cell: its accuracy, and one row per cell."""
    device = train_all[0].device
    acc: dict[tuple[str, float], list[float]] = {}
    rows = []
    for fraction in cfg.fractions:
        for repeat in range(cfg.seeds):
            x, y = subset_fraction(train_all[0].cpu(), train_all[1].cpu(), fraction,
                                   derive(cfg.seed, "subset", fraction, repeat))
            x, y = x.to(device), y.to(device)
            seed = derive(cfg.seed, "cell", fraction, repeat)  # the same for every policy: paired cells
            for policy in cfg.policies:
                name = f"{policy}-f{_pct(fraction)}-r{repeat}"

                def train(policy: str = policy, name: str = name):
                    torch.manual_seed(seed)
                    model = build_model(cfg, 10, device, whiten=x)
                    return train_cifar(cfg, model, (x, y), test, policy=policy, seed=seed, run=run, name=name,
                                       num_classes=10)

                out = trained_cell(run, name, train)
                acc.setdefault((policy, fraction), []).append(out["test_acc"])
                rows.append({"policy": policy, "fraction": fraction, "repeat": repeat, "train_images": len(x),
                             "steps": out["steps"], "test_acc": out["test_acc"], "train_s": round(out["seconds"], 1)})
                run.log(stage="cell", **rows[-1])
    return acc, rows


def _record(cfg: Config, run: Run, acc: dict[tuple[str, float], list[float]], rows: list[dict],
            scored_on: str, data: Any) -> None:
    summary = [{"policy": p, **{f"{_pct(f)}%": format_mean_std(acc[(p, f)], 4) for f in cfg.fractions}}
               for p in cfg.policies]
    run.add_table("Test accuracy by policy and training-set fraction", summary,
                  caption=f"mean ± std over n={cfg.seeds} repeats ({STD_NOTE}); scored on {scored_on}; "
                          f"TTA level {cfg.tta}; data: cifar10 from {data.source.name}"
                          + (f" ({data.note})" if data.note else ""))
    run.add_table("Every training", rows)
    xs = [f * 100 for f in cfg.fractions]
    series = {p: (xs, [mean_std(acc[(p, f)])[0] for f in cfg.fractions]) for p in cfg.policies}
    bands = {p: [mean_std(acc[(p, f)])[1] for f in cfg.fractions] for p in cfg.policies}
    run.add_figure(line_plot(series, title="CIFAR-10: test accuracy vs training-set size", xlabel="% of training set",
                             ylabel="test accuracy", logx=len(xs) > 1, bands=bands if cfg.seeds > 1 else None),
                   "acc_vs_fraction", title="Test accuracy vs training-set fraction, one line per policy")


def _sample_grid(cfg: Config, run: Run, train: tuple[torch.Tensor, torch.Tensor]) -> None:
    """One row per policy: the same training images as that policy sees them."""
    x, y = train[0][:cfg.grid_images], train[1][:cfg.grid_images]
    torch.manual_seed(derive(cfg.seed, "grid"))
    rows = [to_unit(x)] + [Augmenter(p).augment(x, y)[0] for p in cfg.policies]
    run.add_image_grid(torch.cat(rows).cpu(), "augmented_samples", nrow=cfg.grid_images, scale=3,
                       title="Augmented training images",
                       caption="top row: originals; then one row per policy, in order: " + ", ".join(cfg.policies))


def _conclusions(cfg: Config, acc: dict[tuple[str, float], list[float]]) -> tuple[dict[str, Any], str]:
    """The headline numbers and the report's text, the answer in its first sentence."""
    mean = {k: mean_std(v)[0] for k, v in acc.items()}
    headline: dict[str, Any] = {"test_acc": {p: {f"f{_pct(f)}": round(mean[(p, f)], 4) for f in cfg.fractions}
                                             for p in cfg.policies}}
    best_key = max(mean, key=mean.get)
    headline["best_test_acc"] = round(mean[best_key], 4)
    augmented = [p for p in cfg.policies if p != "none"]
    if "none" not in cfg.policies or not augmented:
        return headline, (f"Best: {best_key[0]} on {_pct(best_key[1])}% of the training set, test accuracy "
                          f"{mean[best_key]:.4f} (no comparison with `none`: it was not among the policies).")
    best = {f: max(augmented, key=lambda p: mean[(p, f)]) for f in cfg.fractions}
    gains = {f: mean[(best[f], f)] - mean[("none", f)] for f in cfg.fractions}
    helped = [f for f in cfg.fractions if gains[f] > 0]
    lo, hi = min(gains.values()) * 100, max(gains.values()) * 100
    answer = (f"Augmentation beat no augmentation at {len(helped)} of {len(cfg.fractions)} training-set fractions "
              + ("" if len(helped) == len(cfg.fractions) else
                 f"(not at {', '.join(_pct(f) + '%' for f in cfg.fractions if f not in helped)}) ")
              + f"by {lo:+.1f} to {hi:+.1f} points (best policy per fraction; mean of n={cfg.seeds}).")
    lines = [answer, f"Best cell: {best_key[0]} on {_pct(best_key[1])}% of the training set, test accuracy "
                     f"{mean[best_key]:.4f}."]
    headline["aug_gain"] = {f"f{_pct(f)}": round(g, 4) for f, g in gains.items()}
    for f in cfg.fractions:
        spread = max(mean_std(acc[(best[f], f)])[1], mean_std(acc[("none", f)])[1])
        beyond = f", {'more' if gains[f] > spread else 'not more'} than the seed std ({spread:.4f})" \
            if cfg.seeds > 1 else ""
        lines.append(f"{_pct(f)}%: best policy {best[f]} ({mean[(best[f], f)]:.4f}) vs none "
                     f"({mean[('none', f)]:.4f}): {gains[f]:+.4f}{beyond}.")
    small = [f for f in cfg.fractions if f <= 0.25]
    if small:
        headline["aug_gain"]["min_le25"] = round(min(gains[f] for f in small), 4)
    return headline, "\n".join(lines)
