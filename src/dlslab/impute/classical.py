"""The classical imputers (mean and iterative from scikit-learn, k-NN by scikit-learn's rule in
`impute.knn`) and the downstream classifier that scores imputed rows. scikit-learn runs with
one BLAS thread: the matrices are small, extra threads only wait."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from dlslab.errors import UsageError
from dlslab.impute.knn import knn_impute

ClassicalMethod = Literal["mean", "knn", "iterative"]


def classical_impute(method: str, x: np.ndarray, m: np.ndarray, *, seed: int = 0, neighbors: int = 5,
                     rounds: int = 10) -> np.ndarray:
    """Mean, k-NN or iterative (chained regressions) imputation of the entries where `m` is 0."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers IterativeImputer)
    from sklearn.impute import IterativeImputer, SimpleImputer
    from threadpoolctl import threadpool_limits

    if method == "knn":
        return knn_impute(x, m, neighbors)
    holes = np.where(m > 0, x, np.nan)
    if method == "mean":
        imputer: Any = SimpleImputer(strategy="mean", keep_empty_features=True)
    elif method == "iterative":
        imputer = IterativeImputer(max_iter=rounds, random_state=seed, keep_empty_features=True)
    else:
        raise UsageError(f"unknown imputer {method!r}; valid: mean, knn, iterative")
    with threadpool_limits(1, user_api="blas"):
        out = imputer.fit_transform(holes)
    return np.where(m > 0, x, out)


def downstream_accuracy(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> float:
    """Test accuracy of a logistic regression trained on a stratified split of the (imputed) rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    with threadpool_limits(1, user_api="blas"):
        clf = LogisticRegression(max_iter=500).fit(xtr, ytr)
    return float(clf.score(xte, yte))
