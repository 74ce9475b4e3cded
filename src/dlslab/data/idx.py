"""The IDX format of MNIST and Fashion-MNIST (gzipped or raw), read with full checks.

Memory is bounded before it is spent: the header's dimensions are multiplied as Python
integers (no overflow) and checked against the data actually present and against
MAX_IDX_BYTES, and a gzipped file is inflated a chunk at a time, stopping as soon as it
holds more than its header declares.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dlslab.atomic import read_capped
from dlslab.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IDX_BYTES = 1 << 30  # array data of one file (MNIST's training images hold 47 MB)
_CHUNK = 1 << 20  # inflate this much at a time


def _header(data: bytes, source: str, partial: bool = False) -> tuple[tuple[int, ...], np.dtype, int] | None:
    """(shape, dtype, header length) from the first bytes of IDX data. With `partial`, None
    while the header is not complete yet; otherwise a short header is a DataError."""
    if len(data) < 4:
        if partial:
            return None
        raise DataError(f"{source}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{source}: not an IDX file (bad magic number {bytes(data[:4]).hex()})")
    size = 4 + 4 * ndim
    if len(data) < size:
        if partial:
            return None
        raise DataError(f"{source}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:size])
    dtype = np.dtype(_DTYPES[code])
    # Python integers: no overflow. Zero dimensions aside (NumPy refuses (0, 2**31, 2**31) too).
    declared = math.prod(d for d in shape if d) * dtype.itemsize
    if declared > MAX_IDX_BYTES:
        raise DataError(f"{source}: IDX header says shape {shape} ({declared:,} bytes of data), more than "
                        f"any IDX file this dlslab reads ({MAX_IDX_BYTES:,}); the file is corrupt")
    return shape, dtype, size


def _inflate(raw: bytes, source: str, limit: Callable[[bytes], int]) -> bytes:
    """Gunzip a chunk at a time; a DataError as soon as the output passes `limit(output)`."""
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            while chunk := f.read(_CHUNK):
                out += chunk
                if len(out) > limit(out):
                    raise DataError(f"{source}: the gzip file inflates to more than the "
                                    f"{limit(out):,} bytes its IDX header declares; the file is corrupt")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: corrupt or truncated gzip file ({exc}); delete it and fetch "
                        "it again (`dlslab data fetch`)") from None
    return bytes(out)


def read_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed if it is gzip (at most MAX_IDX_BYTES and a header);
    DataError if truncated or corrupt."""
    path = Path(path)
    cap = MAX_IDX_BYTES + 20
    raw = read_capped(path, cap, "an IDX file")
    return _inflate(raw, str(path), lambda _: cap) if raw[:2] == b"\x1f\x8b" else raw


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array of the declared type and shape."""
    shape, dtype, size = _header(data, source)
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - size != expected:
        raise DataError(f"{source}: IDX header says shape {shape} ({expected} bytes of data) but the "
                        f"file holds {len(data) - size}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=size).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    path, source = Path(path), str(path)
    raw = read_capped(path, MAX_IDX_BYTES + 20, "an IDX file")
    if raw[:2] == b"\x1f\x8b":

        def declared(out: bytes) -> int:  # header + data once the header is in, else the cap
            head = _header(out, source, partial=True)
            return MAX_IDX_BYTES + 20 if head is None else head[2] + math.prod(head[0]) * head[1].itemsize

        raw = _inflate(raw, source, declared)
    return parse_idx(raw, source)


def write_idx(path: str | Path, array: np.ndarray, compress: bool = True) -> None:
    """Write an uint8 array as IDX (for tests and for users' own data in this format)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    Path(path).write_bytes(gzip.compress(data, mtime=0) if compress else data)
