"""IDX reading: round-trips, and truncated/corrupt/foreign files are clear DataErrors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlslab.data.idx import parse_idx, read_idx, write_idx
from dlslab.errors import DataError


def test_round_trip_gzip_and_raw(tmp_path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for compress in (True, False):
        path = tmp_path / f"x{compress}.idx"
        write_idx(path, a, compress=compress)
        np.testing.assert_array_equal(read_idx(path), a)


def test_truncated_and_corrupt_files(tmp_path) -> None:
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    path = tmp_path / "x.gz"
    write_idx(path, a)
    raw = gzip.decompress(path.read_bytes())
    (tmp_path / "short").write_bytes(raw[:-7])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "short")
    (tmp_path / "cut.gz").write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "text").write_bytes(b"hello world, not idx")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "text")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "missing.gz")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_data_error(data: bytes) -> None:
    try:
        out = parse_idx(data)
    except DataError:
        return
    assert out.size * out.itemsize == len(data) - 4 - 4 * out.ndim
