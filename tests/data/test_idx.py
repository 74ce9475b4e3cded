"""IDX reading: round-trips, and truncated/corrupt/foreign files are clear DataErrors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlslab.data.idx import MAX_IDX_BYTES, parse_idx, read_bytes, read_idx, write_idx
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


def test_header_dimensions_that_overflow_are_a_clear_error(tmp_path) -> None:
    # 65536**4 wraps to 0 in 64-bit integers, so 0 bytes of data looked right
    path = tmp_path / "o.idx"
    path.write_bytes(struct.pack(">HBB", 0, 0x08, 4) + struct.pack(">4I", 65536, 65536, 65536, 65536))
    assert path.stat().st_size == 20
    with pytest.raises(DataError, match=r"o.idx: IDX header says shape \(65536, 65536, 65536, 65536\) "
                                        r"\(18,446,744,073,709,551,616 bytes of data\), more than"):
        read_idx(path)
    path.write_bytes(struct.pack(">HBB", 0, 0x0E, 3) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 7))
    with pytest.raises(DataError, match="more than any IDX file"):
        read_idx(path)


def test_gzip_is_inflated_no_further_than_the_header_declares(tmp_path) -> None:
    # a 10-byte array followed by 64 MB of zeros: refused after the first chunk, not inflated whole
    data = struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 10) + bytes(10 + (64 << 20))
    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    with pytest.raises(DataError, match="long.gz: the gzip file inflates to more than the 18 bytes its IDX header"):
        read_idx(path)
    assert len(read_bytes(path)) == len(data) <= MAX_IDX_BYTES  # the lenient read (checksums) still works


def test_a_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="not a regular file"):
        read_idx(tmp_path)
