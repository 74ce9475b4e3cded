"""`knn_impute` gives scikit-learn's KNNImputer's numbers, including its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.impute import KNNImputer

from dlslab.impute import knn
from dlslab.impute.knn import knn_impute


def _correlated(n: int, d: int, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) @ rng.normal(size=(3, d)) + 0.1 * rng.normal(size=(n, d))
    return x, (rng.random((n, d)) >= rate).astype(np.float64)


def _sklearn(x: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    return KNNImputer(n_neighbors=k, keep_empty_features=True).fit_transform(np.where(m > 0, x, np.nan))


@pytest.mark.parametrize(("n", "d", "rate", "k"), [(300, 12, 0.2, 5), (300, 12, 0.8, 5), (120, 30, 0.5, 3),
                                                   (60, 4, 0.9, 5), (40, 6, 0.5, 50)])
def test_matches_scikit_learn(n: int, d: int, rate: float, k: int) -> None:
    x, m = _correlated(n, d, rate, seed=n + d)
    m[:, 1] = 0  # a column with no observed value: scikit-learn keeps it as 0
    np.testing.assert_allclose(knn_impute(x, m, k), _sklearn(x, m, k), rtol=0, atol=1e-12)


def test_rows_sharing_no_column_are_never_neighbours() -> None:
    x = np.array([[1.0, 0.0], [0.0, 5.0], [3.0, 7.0], [2.0, 9.0]])
    m = np.array([[1, 0], [0, 1], [1, 1], [1, 1]], dtype=np.float64)
    out = knn_impute(x, m, 1)
    assert out[0, 1] == 9.0  # row 3 is nearest on column 0; row 1 shares no column with row 0
    assert out[1, 0] == 3.0
    np.testing.assert_allclose(out, _sklearn(x, m, 1))


def test_small_blocks_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    x, m = _correlated(200, 10, 0.7, seed=3)
    whole = knn_impute(x, m, 5)
    monkeypatch.setattr(knn, "_BLOCK_ELEMENTS", 64)  # one row at a time, candidates widened step by step
    np.testing.assert_array_equal(knn_impute(x, m, 5), whole)


def test_observed_entries_pass_through_and_bad_k_is_refused() -> None:
    x, m = _correlated(50, 5, 0.3, seed=1)
    out = knn_impute(np.where(m > 0, x, np.nan), m, 5)
    assert np.array_equal(out[m > 0], x[m > 0]) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="at least 1"):
        knn_impute(x, m, 0)
