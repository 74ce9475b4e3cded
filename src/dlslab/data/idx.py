"""The IDX format of MNIST and Fashion-MNIST (gzipped or raw), read with full checks."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from dlslab.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed if it is gzip; DataError if truncated or corrupt."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip file ({exc}); delete it and fetch "
                            "it again (`dlslab data fetch`)") from None
    return raw


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array of the declared type and shape."""
    if len(data) < 4:
        raise DataError(f"{source}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{source}: not an IDX file (bad magic number {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{source}: IDX header says shape {shape} ({expected} bytes of data) but the "
                        f"file holds {len(data) - header}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    return parse_idx(read_bytes(path), str(path))


def write_idx(path: str | Path, array: np.ndarray, compress: bool = True) -> None:
    """Write an uint8 array as IDX (for tests and for users' own data in this format)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    Path(path).write_bytes(gzip.compress(data, mtime=0) if compress else data)
