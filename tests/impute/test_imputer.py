"""impute.imputer: scikit-learn's fit_transform, and `auto` choosing by held-out RMSE."""

from __future__ import annotations

import numpy as np
import pytest

from dlslab.errors import DataError, UsageError
from dlslab.impute.imputer import Imputer, hide_cells


def factor_table(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Eight columns driven by two latent factors (linear), 15% of the cells missing: chained
    linear regressions (iterative) recover a cell far better than neighbours or the mean."""
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((n, 2)) @ rng.standard_normal((2, 8)) + 0.05 * rng.standard_normal((n, 8))
    observed = rng.random(truth.shape) >= 0.15
    return truth, observed


def test_auto_picks_the_method_with_the_lowest_error_on_the_real_holes() -> None:
    truth, observed = factor_table()
    x = np.where(observed, truth, np.nan)
    imp = Imputer(iterations=300)
    filled = imp.fit_transform(x)
    assert np.array_equal(filled[observed], truth[observed]) and not np.isnan(filled).any()
    assert set(imp.scores_) == {"mean", "knn", "iterative", "gain"}
    real = {m: np.sqrt(np.mean((Imputer(m, iterations=300).fit_transform(x) - truth)[~observed] ** 2))
            for m in imp.scores_}
    assert imp.method_ == min(real, key=real.get) == "iterative"
    assert np.allclose(filled, Imputer("iterative").fit_transform(x))


def test_hidden_cells_are_observed_and_each_column_keeps_one() -> None:
    m = np.ones((10, 3))
    m[:, 2] = 0
    m[0, 2] = 1
    hidden = hide_cells(m, np.array([0, 1, 1]), 0.5, seed=0)
    assert hidden[:, 0].sum() == 5
    assert not (hidden * (1 - m)).any()  # only observed cells are hidden
    assert hidden[:, 1:].sum() == 0  # columns 1 and 2 move together; only row 0 has both: it is kept


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"entry \(1, 0\) is inf"):
        Imputer("mean").fit_transform([[1.0, 2.0], [np.inf, np.nan]])
    with pytest.raises(DataError, match="column 1 has no observed value"):
        Imputer("mean").fit_transform([[1.0, np.nan], [2.0, np.nan]])
    with pytest.raises(UsageError, match="method='best'"):
        Imputer("best")
    with pytest.raises(UsageError, match="2-D"):
        Imputer("mean").fit_transform([1.0, np.nan])
