"""UCI tables: min-max scaled, seeded subsets, and a clear error without network."""

from __future__ import annotations

import numpy as np
import pytest

from dlslab.data.uci import load_table, minmax
from dlslab.errors import DataError


def test_minmax_scales_columns_and_zeroes_constant_ones() -> None:
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [2.0, 5.0, 0.0]])
    out = minmax(x)
    assert np.allclose(out.min(0), [0, 0, 0]) and np.allclose(out.max(0), [1, 0, 1])


def test_table_is_normalised_and_subsets_are_seeded() -> None:
    table = load_table("wine")
    assert table.x.shape == (178, 13) and table.y is not None
    assert table.x.min() == 0.0 and table.x.max() == 1.0
    a, b, c = table.subset(50, 1), table.subset(50, 1), table.subset(50, 2)
    assert a.x.shape == (50, 13) and np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)
    assert table.subset(500, 1) is table


def test_housing_without_network_is_a_clear_data_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path))
    with pytest.raises(DataError, match="needs network"):
        load_table("housing", download=False)
