"""An imputer with scikit-learn's interface, and the automatic choice among the imputers.

    imp = dlslab.Imputer()               # method="auto"
    filled = imp.fit_transform(x)       # x: (n, d) floats, NaN where missing
    imp.method_, imp.scores_             # the method chosen, each method's held-out RMSE

`auto` hides a random `holdout` fraction of the observed cells, fills them with every method,
and keeps the method whose RMSE on the hidden cells is lowest (columns min-max scaled, so
every column counts alike); that method then fills the real holes using every observed cell.
Warnings of the underlying imputers (an iterative imputer that stops before converging) are
caught where they arise and kept as `notes_`, not printed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dlslab.errors import DataError, UsageError

METHODS = ("mean", "knn", "iterative", "gain")  # the methods `auto` scores
Choice = Literal["auto", "mean", "knn", "iterative", "gain"]
HOLDOUT = 0.15  # fraction of observed cells `auto` hides to score the methods on (10-20%)


def scale_observed(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x min-max scaled per column by its observed entries (missing ones 0), lo, span): the
    original is `lo + scaled * span`. A column with one observed value gets span 1."""
    obs = m > 0
    lo = np.where(obs, x, np.inf).min(0)
    hi = np.where(obs, x, -np.inf).max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(obs, (x - lo) / span, 0.0), lo, span


def hide_cells(m: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A (n, d) mask, 1 on the observed cells chosen to be hidden: `fraction` of the observed
    cells, at random, where a cell is a row and a group of matrix columns (the one-hot columns
    of one table column move together). Each group keeps at least one observed row."""
    rng = np.random.default_rng(seed)
    hidden = np.zeros_like(m)
    for g in np.unique(groups):
        cols = groups == g
        rows = np.flatnonzero(m[:, cols].all(axis=1))
        k = min(int(round(fraction * len(rows))), len(rows) - 1)
        if k > 0:
            hidden[np.ix_(rng.choice(rows, k, replace=False), np.flatnonzero(cols))] = 1.0
    return hidden


def impute_scaled(method: str, x: np.ndarray, m: np.ndarray, *, iterations: int, seed: int,
                  notes: list[str] | None = None) -> np.ndarray:
    """Fill the entries of `x` (values in [0, 1]) where `m` is 0 with `method`; observed
    entries are unchanged. Warnings raised by the imputer are appended to `notes`."""
    from dlslab.impute.compare import ImputerSpec, impute_with
    from dlslab.impute.threads import few_threads

    with few_threads(x.shape[1]), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filled, _ = impute_with(method, x, m, ImputerSpec(iterations=iterations), seed)
    if notes is not None:
        notes += [f"{method}: {w.message}".splitlines()[0] for w in caught]
    return np.where(m > 0, x, filled)


def score_methods(x: np.ndarray, m: np.ndarray, groups: np.ndarray, methods: tuple[str, ...], *,
                  iterations: int, seed: int, holdout: float = HOLDOUT,
                  notes: list[str] | None = None) -> dict[str, float]:
    """method -> RMSE on a hidden `holdout` fraction of the observed cells of `x` (in [0, 1])."""
    from dlslab.metrics.image import rmse_missing
    import torch

    hidden = hide_cells(m, groups, holdout, seed)
    if not hidden.any():
        raise DataError("too few observed cells to compare the imputers on; choose a method (not auto)")
    shown = m * (1 - hidden)
    truth = torch.from_numpy(x)
    return {method: rmse_missing(torch.from_numpy(impute_scaled(method, x, shown, iterations=iterations,
                                                                seed=seed, notes=notes)),
                                 truth, torch.from_numpy(1 - hidden))
            for method in methods}


@dataclass
class Imputer:
    """Missing-value imputation of a numeric matrix, with scikit-learn's `fit_transform`."""

    method: Choice = "auto"  # an imputer, or auto: the one with the lowest held-out RMSE
    iterations: int = 4000  # GAIN training steps
    holdout: float = HOLDOUT  # auto: fraction of the observed cells hidden to score the methods
    seed: int = 0  # seed of the hidden cells, the weights and the noise
    method_: str | None = field(default=None, init=False)  # the method used (after fitting)
    scores_: dict[str, float] = field(default_factory=dict, init=False)  # auto: held-out RMSE per method
    notes_: list[str] = field(default_factory=list, init=False)  # warnings of the imputers, caught

    def __post_init__(self) -> None:
        if self.method not in ("auto", *METHODS):
            raise UsageError(f"method={self.method!r}: use auto or one of {', '.join(METHODS)}")
        if self.iterations < 1:
            raise UsageError(f"iterations={self.iterations}: must be >= 1")
        if not 0 < self.holdout < 1:
            raise UsageError(f"holdout={self.holdout}: must be a fraction in (0, 1)")

    def fit_transform(self, x: np.ndarray, y: None = None) -> np.ndarray:
        """`x` (n, d) with its NaN entries filled; the other entries are returned unchanged."""
        x = np.array(x, dtype=np.float64)
        if x.ndim != 2 or 0 in x.shape:
            raise UsageError(f"expected a non-empty 2-D array (rows, columns), got shape {x.shape}")
        if np.isinf(x).any():
            i, j = np.argwhere(np.isinf(x))[0]
            raise DataError(f"entry ({i}, {j}) is {x[i, j]}: only finite numbers can be imputed from; "
                            "mark missing entries with NaN")
        m = (~np.isnan(x)).astype(np.float64)
        empty = np.flatnonzero(m.sum(0) == 0)
        if len(empty):
            raise DataError(f"column {empty[0]} has no observed value: there is nothing to impute it from")
        scaled, lo, span = scale_observed(x, m)
        filled = self.fill(scaled, m, np.arange(x.shape[1]))
        return np.where(m > 0, x, lo + np.clip(filled, 0, 1) * span)

    def fill(self, x: np.ndarray, m: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """`fit_transform` on a matrix already scaled to [0, 1] with its observed mask;
        `groups` maps each matrix column to its table column (one-hot columns share one)."""
        self.notes_ = []
        self.method_ = self.method
        if self.method == "auto":
            self.scores_ = score_methods(x, m, groups, METHODS, iterations=self.iterations, seed=self.seed,
                                         holdout=self.holdout, notes=self.notes_)
            self.method_ = min(self.scores_, key=self.scores_.__getitem__)
        if m.all():
            return x
        return impute_scaled(self.method_, x, m, iterations=self.iterations, seed=self.seed, notes=self.notes_)
