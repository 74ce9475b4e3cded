"""A sweep's trial results summarised per configuration: mean ± std over seeds, and, for a
configuration that failed to learn, why (from what was measured during its trials)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from dlslab.report.stats import mean_std
from dlslab.train.sweep import FACTORS

LEARNED_SHARE = 0.5  # "failed to learn": less than this share of the best configuration's gain over chance


def finite_mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample std) of the finite values (a diverged seed's NaN is left out); NaNs when none is."""
    finite = [v for v in values if math.isfinite(v)]
    return mean_std(finite) if finite else (math.nan, math.nan)


def diagnose(row: dict[str, Any], classes: int) -> str:
    """Why a configuration failed to learn, from what was measured during its trials."""
    if row["diverged"] == row["n"]:
        return "diverged: the loss became non-finite (learning rate too high)"
    if row["units_identical"]:
        return "symmetry never broken: every first-layer unit has identical weights, so the layer acts as one unit"
    if row["grad_ratio"] < 1e-2:
        return (f"vanishing gradients: at initialisation the first layer's gradient is {row['grad_ratio']:.1e} "
                "times the last layer's")
    chance_loss = math.log(classes)
    if row["final_train_loss"] > 1.1 * chance_loss:
        return (f"unstable: final training loss {row['final_train_loss']:.3g} is above the chance level "
                f"ln({classes}) = {chance_loss:.2f} (steps too large)")
    if row["final_train_loss"] > 0.9 * chance_loss:
        return f"stuck: the training loss stayed near the chance level ln({classes}) = {chance_loss:.2f}"
    return "learned slowly: the loss fell but accuracy stayed low within the epochs given"


def aggregate(results: list[dict[str, Any]], classes: int) -> dict[tuple[str, str], dict[str, Any]]:
    """One row per (dataset, configuration): mean ± std over seeds, and a failure diagnosis.
    A configuration failed to learn when its validation accuracy gained over chance less than
    LEARNED_SHARE of the best configuration's gain on that dataset."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[(r["dataset"], r["config"])].append(r)
    rows = {}
    for key, rs in groups.items():
        test, test_std = finite_mean_std([r["test_acc"] for r in rs])
        val, val_std = finite_mean_std([r["val_acc"] for r in rs])
        loss, _ = finite_mean_std([r["final_train_loss"] for r in rs])
        curves = [r["val_curve"] for r in rs]
        length = min(len(c) for c in curves)
        row = {"dataset": key[0], "config": key[1], **{f: rs[0][f] for f in FACTORS}, "n": len(rs),
               "test_acc": test, "test_std": test_std, "val_acc": val, "val_std": val_std,
               "final_train_loss": loss, "train_s": statistics.fmean(r["train_s"] for r in rs),
               "best_epoch": statistics.median(r["best_epoch"] for r in rs),
               "diverged": sum(r["diverged"] for r in rs),
               "units_identical": all(r["units_identical"] for r in rs),
               "grad_ratio": statistics.median(r["grad_ratio"] for r in rs),
               "val_curve": [statistics.fmean(c[i] for c in curves) for i in range(length)],
               "stopped": sum(r["stopped_epoch"] is not None for r in rs),
               "epochs_trained": statistics.fmean(r["epochs_trained"] for r in rs),
               "trials": [{"seed": r["seed"], "group": r["group"], "member": r["member"]} for r in rs]}
        rows[key] = row
    best = {d: max(r["val_acc"] for (dd, _), r in rows.items() if dd == d) for d, _ in rows}
    for (d, _), row in rows.items():
        chance = 1.0 / classes
        row["failed"] = row["val_acc"] - chance < LEARNED_SHARE * (best[d] - chance)
        row["why"] = diagnose(row, classes) if row["failed"] else ""
    return rows


def halving_rows(results: list[dict[str, Any]], datasets: list[str], rungs: list[int],
                 epochs: int) -> list[dict[str, Any]]:
    """Per dataset and rung: how many trials reached it and how many successive halving stopped there."""
    table: list[dict[str, Any]] = []
    for d in datasets:
        mine = [r for r in results if r["dataset"] == d]
        table += [{"dataset": d, "rung (epoch)": e, "trials reaching it": sum(r["epochs_trained"] >= e for r in mine),
                   "stopped there": sum(r["stopped_epoch"] == e for r in mine)} for e in rungs]
        table.append({"dataset": d, "rung (epoch)": f"{epochs} (end)",
                      "trials reaching it": sum(r["stopped_epoch"] is None for r in mine), "stopped there": 0})
    return table


def halving_savings(results: list[dict[str, Any]], rungs: list[int], epochs: int) -> dict[str, Any]:
    """Trial-epochs trained against a sweep without stopping, and the trials stopped at each rung."""
    trained, full = sum(r["epochs_trained"] for r in results), len(results) * epochs
    return {"epochs_trained": trained, "epochs_full": full, "saved": 1 - trained / full if full else 0.0,
            "stopped": {str(e): sum(r["stopped_epoch"] == e for r in results) for e in rungs}}
