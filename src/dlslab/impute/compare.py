"""Every imputer on one (data, missing mask): the RMSE on the missing entries, the accuracy of
a classifier trained on the imputed rows, the seconds taken, and GAIN's per-epoch losses."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from dlslab.impute.autoencoder import dae_impute, train_dae
from dlslab.impute.classical import downstream_accuracy, classical_impute
from dlslab.impute.gain import HintMode, Init, gain_impute, train_gain
from dlslab.impute.imputer import scale_observed
from dlslab.impute.threads import few_threads
from dlslab.metrics.image import rmse_missing
from dlslab.runs import Run

Method = Literal["mean", "knn", "iterative", "dae", "gain"]
Normalize = Literal["table", "observed"]  # the networks see the data as given | rescaled by the observed values


@dataclass(frozen=True)
class ImputerSpec:
    """How the imputers are set up and trained (the same for every method that uses a field)."""

    iterations: int  # GAIN / autoencoder training steps
    hidden: int | None = None  # MLP width (None: the data dimension, as the GAIN paper)
    batch_size: int = 128  # rows per training step
    hint_rate: float = 0.9  # GAIN: fraction of entries the hint reveals
    alpha: float = 100.0  # GAIN: weight of the reconstruction loss
    hint_mode: HintMode = "half"  # GAIN: H = B*M + 0.5(1 - B) (paper) or B*M (authors' code)
    init: Init = "torch"  # GAIN: initial weights (torch's default or the authors' Xavier)
    holdout: float = 0.0  # GAIN: fraction of observed entries held out to pick the best epoch (0 = the last)
    holdout_shape: str = "entries"  # GAIN: "entries" at random | "missing": rows hide another row's missing entries
    lr: float = 1e-3  # Adam learning rate
    dae_drop: float = 0.5  # autoencoder: fraction of observed entries hidden each step
    knn_neighbors: int = 5  # k-NN imputer's neighbours
    iterative_rounds: int = 10  # iterative imputer's rounds
    log_every: int = 500  # training steps per logged epoch
    normalize: Normalize = "table"  # GAIN / autoencoder: train on x as given, or rescaled by its observed values (the authors' code)
    test_fraction: float = 0.3  # rows held out to test the downstream classifier
    bf16: bool = False  # GAIN / autoencoder: train under bf16 autocast (weights stay float32)


def impute_with(method: str, x: np.ndarray, m: np.ndarray, spec: ImputerSpec, seed: int, *,
                device: torch.device | str = "cpu", run: Run | None = None, key: str = "") -> tuple[np.ndarray, dict]:
    """(imputed x, extras) of one method; extras holds GAIN's per-epoch losses as `history`."""
    if method not in ("gain", "dae"):
        return classical_impute(method, x, m, seed=seed, neighbors=spec.knn_neighbors, rounds=spec.iterative_rounds), {}
    if spec.normalize == "observed":
        scaled, lo, span = scale_observed(x, m)
        filled, extra = impute_with(method, scaled, m, replace(spec, normalize="table"), seed, device=device, run=run,
                                    key=key)
        return lo + filled * span, extra
    xt = torch.from_numpy(x).float().to(device)
    mt = torch.from_numpy(m).float().to(device)
    common = {"iterations": spec.iterations, "batch_size": spec.batch_size, "lr": spec.lr, "hidden": spec.hidden,
              "seed": seed, "log_every": spec.log_every, "run": run, "name": f"{method}-{key}", "bf16": spec.bf16}
    if method == "dae":
        model, _ = train_dae(xt, mt, drop=spec.dae_drop, **common)
        return dae_impute(model, xt, mt).double().cpu().numpy(), {}
    model, hist = train_gain(xt, mt, hint_rate=spec.hint_rate, alpha=spec.alpha, hint_mode=spec.hint_mode,
                              init=spec.init, holdout=spec.holdout, holdout_shape=spec.holdout_shape, **common)
    history = [{k[6:]: e[k] for k in e if k.startswith("train_")} for e in hist.epochs]
    return gain_impute(model, xt, mt, seed).double().cpu().numpy(), {"history": history}


def compare_imputers(methods: list[str], x: np.ndarray, y: np.ndarray | None, m: np.ndarray, spec: ImputerSpec,
                     seed: int, *, device: torch.device | str = "cpu", run: Run | None = None, key: str = "",
                     keep: int = 0) -> dict[str, dict[str, Any]]:
    """method -> {rmse, seconds, acc (labelled data), history (GAIN), sample (the first `keep`
    imputed rows), warnings (what the method warned, e.g. scikit-learn's ConvergenceWarning:
    kept with its row instead of leaking to the console)}."""
    out: dict[str, dict[str, Any]] = {}
    truth, mask = torch.from_numpy(x), torch.from_numpy(m)
    with few_threads(x.shape[1]):
        for method in methods:
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                imputed, extra = impute_with(method, x, m, spec, seed, device=device, run=run, key=key)
                row = {"rmse": rmse_missing(torch.from_numpy(imputed), truth, mask),
                       "seconds": time.perf_counter() - t0, **extra}
                if y is not None:
                    row["acc"] = downstream_accuracy(imputed, y, spec.test_fraction, seed)
            row["warnings"] = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught})
            if keep:
                row["sample"] = torch.from_numpy(imputed[:keep]).float()
            out[method] = row
    return out
