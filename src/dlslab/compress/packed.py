"""The packed on-disk format: a model's tensors, stored as compactly as their values allow,
with a versioned header and checksums, read back by our own parser (never pickle).

Layout (all integers little-endian):

    offset  size  field
    0       4     magic b"DLSZ"
    4       1     format version (1)
    5       4     H: length of the header
    9       H     header: zlib-deflated UTF-8 JSON (model name, its arguments, structural
                  changes such as low-rank factors, and one record per tensor)
    9+H     4     CRC-32 of the header bytes
    13+H    P     payload: every tensor's streams, back to back, in header order
    13+H+P  4     CRC-32 of the payload

Packing is lossless with respect to the model's current weights: quantisation and pruning
happen in the model (see prune.py, share.py, quant.py), and the packer finds the structure
in the values. A floating tensor with at most `max_codebook` distinct non-zero values is
stored as a codebook (float16 when every entry is exactly a float16, else float32) plus
one code per value; otherwise the values are stored raw. Zeros are stored either as a
codebook entry (dense layout) or as the gaps between non-zero positions (sparse layout),
whichever is smaller. Each integer stream (codes, gaps) is Huffman coded or bit packed at a
fixed width, whichever is smaller (or always fixed width with `entropy="fixed"`). A gap
longer than the largest gap symbol M is written as escape symbols (M zeros each).
Signed zeros are stored as +0.0.

Reading trusts nothing in the file. The header is inflated in one bounded step (at most
MAX_HEADER_BYTES) and checked against a schema (every field present, of its type, and no
others) before any of it is used; every stream's length is checked against what its record
says it holds, and the tensors' total decoded size against a budget that grows with the
file's size (DECODED_FLOOR + MAX_EXPANSION bytes per file byte, never over
MAX_DECODED_BYTES), all before anything is decoded. So a file takes memory in proportion
to its own size, and a bad file is a BadFileError that names the file and what is wrong.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dlslab import atomic
from dlslab.compress.huffman import huffman_decode, huffman_encode, huffman_size, pack_bits, unpack_bits
from dlslab.errors import BadFileError, DataError, UsageError

MAGIC = b"DLSZ"
VERSION = 1
GAP_SYMBOLS = (15, 31, 63, 127, 255)  # candidate largest gap symbols M (the escape)
Entropy = Literal["huffman", "fixed"]

# What a reader accepts (see the module docstring): bounds fixed before anything is allocated.
MAX_FILE_BYTES = 4 << 30  # a packed file larger than this is not read
MAX_HEADER_BYTES = 4 << 20  # inflated header JSON (about 150 bytes per tensor)
MAX_TENSORS = 1 << 15
MAX_DIMS = 8  # dimensions of one tensor
MAX_DECODED_BYTES = 4 << 30  # all decoded tensors of one file, whatever its size
DECODED_FLOOR = 64 << 20  # decoded bytes any file may hold (a small model of all-zero layers)
MAX_EXPANSION = 4096  # decoded bytes per file byte beyond the floor (sparse zeros cost no bits)
MAX_ALPHABET = (1 << 16) - 1  # largest codebook or gap alphabet a Huffman stream can describe
NORMALISATION_KEY = "input_normalisation"  # meta key of the input's (mean, std)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
           "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}
_NAMES = {v: k for k, v in _DTYPES.items()}
_STORAGE = {"bfloat16": np.int16}  # NumPy has no bfloat16: keep its bits


@dataclass
class TensorReport:
    """How one tensor was stored: layout, bits and bytes."""

    name: str
    shape: tuple[int, ...]
    layout: str  # raw | dense | sparse
    nnz: int  # non-zero values
    codebook: int  # codebook entries (0 when values are stored raw)
    code_bits: float  # average bits per stored value (codes or raw values)
    index_bits: float  # average bits per non-zero position (sparse layout), else 0
    nbytes: int  # bytes of this tensor's streams in the payload

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def density(self) -> float:
        return self.nnz / max(self.numel, 1)


@dataclass
class PackReport:
    """What `pack_model` wrote: the file's size and how each tensor was stored."""

    path: Path | None
    file_bytes: int
    dense_bytes: int  # the uncompressed model as plain float32 (what the ratio divides)
    header_bytes: int
    tensors: list[TensorReport] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.dense_bytes / self.file_bytes


# --- integer streams ------------------------------------------------------------------------


def _width(alphabet: int) -> int:
    return max(1, int(alphabet - 1).bit_length())


def _coding(values: np.ndarray, alphabet: int, entropy: Entropy) -> tuple[str, int]:
    """The coding of an integer stream (Huffman or fixed width, whichever is smaller, or
    fixed width when asked) and its size in bytes, computed without encoding."""
    fixed = (len(values) * _width(alphabet) + 7) // 8
    if entropy == "fixed":
        return "fixed", fixed
    huff = huffman_size(np.bincount(values, minlength=alphabet))
    return ("huffman", huff) if huff < fixed else ("fixed", fixed)


def _encode_ints(values: np.ndarray, alphabet: int, kind: str) -> bytes:
    return huffman_encode(values, alphabet) if kind == "huffman" else pack_bits(values, _width(alphabet))


def _decode_ints(kind: str, data: bytes, alphabet: int, count: int) -> np.ndarray:
    if count > 8 * len(data):  # every symbol takes at least one bit, in either coding
        raise DataError(f"a stream of {len(data)} bytes cannot hold {count} symbols: the file is corrupt")
    if kind == "huffman":
        out = huffman_decode(data, count)
    elif kind == "fixed":
        out = unpack_bits(data, _width(alphabet), count)
    else:
        raise DataError(f"unknown stream coding {kind!r}")
    if out.size and (out.min() < 0 or out.max() >= alphabet):
        raise DataError("a symbol lies outside its alphabet: the file is corrupt")
    return out


def gaps_to_symbols(positions: np.ndarray, escape: int) -> np.ndarray:
    """Sorted non-zero positions -> gap symbols in [0, escape]; `escape` means `escape` zeros
    and no value, so a gap g becomes g // escape escapes followed by g % escape."""
    gaps = np.diff(positions, prepend=-1) - 1
    n_escape = gaps // escape
    out = np.full(len(gaps) + int(n_escape.sum()), escape, dtype=np.int64)
    ends = np.cumsum(n_escape + 1) - 1
    out[ends] = gaps % escape
    return out


def symbols_to_positions(symbols: np.ndarray, escape: int) -> np.ndarray:
    """Inverse of `gaps_to_symbols`."""
    is_value = symbols != escape
    advance = np.where(is_value, symbols + 1, escape)
    return (np.cumsum(advance) - 1)[is_value]


# --- one tensor -------------------------------------------------------------------------------


def _raw_bytes(t: torch.Tensor) -> bytes:
    name = _NAMES[t.dtype]
    if name in _STORAGE:
        return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
    arr = t.contiguous().numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def _from_raw(data: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    numel = math.prod(shape)
    if len(data) != numel * _DTYPES[dtype].itemsize:
        raise DataError(f"raw tensor data has {len(data)} bytes, expected {numel * _DTYPES[dtype].itemsize}")
    if dtype in _STORAGE:
        arr = np.frombuffer(data, dtype="<i2", count=numel)
        return torch.from_numpy(arr.copy()).view(torch.bfloat16).reshape(shape)
    np_dtype = torch.empty(0, dtype=_DTYPES[dtype]).numpy().dtype.newbyteorder("<")
    return torch.from_numpy(np.frombuffer(data, dtype=np_dtype).astype(np_dtype.newbyteorder("=")).copy()
                            ).reshape(shape)


def _values_dtype(values: torch.Tensor) -> str:
    """float16 when every value is exactly a float16 (so storing it loses nothing)."""
    if values.dtype == torch.float32 and torch.equal(values.half().float(), values):
        return "float16"
    return _NAMES[values.dtype]


def _encode_tensor(name: str, t: torch.Tensor, entropy: Entropy, max_codebook: int
                   ) -> tuple[dict[str, Any], list[bytes]]:
    """The header record and payload streams of one tensor (the smallest lossless layout).
    Sizes are computed for every candidate layout first; only the smallest is encoded."""
    t = t.detach().cpu()
    record: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": _NAMES.get(t.dtype)}
    if record["dtype"] is None:
        raise UsageError(f"{name}: tensors of dtype {t.dtype} cannot be packed")
    raw_size = t.numel() * t.element_size()
    if not t.is_floating_point() or t.numel() == 0 or not torch.isfinite(t).all():
        return record | {"layout": "raw"}, [_raw_bytes(t)]
    flat = t.flatten() + 0.0  # -0.0 -> +0.0
    nz = torch.nonzero(flat).flatten()
    plans = []  # (size, record, thunks that make the streams)
    for layout in ("dense", "sparse"):
        vals = flat if layout == "dense" else flat[nz]
        rec: dict[str, Any] = {"layout": layout, "nnz": len(nz)}
        size, makers = 0, []
        if layout == "sparse":
            positions = nz.numpy()
            options = []
            for escape in GAP_SYMBOLS:
                symbols = gaps_to_symbols(positions, escape)
                kind, nbytes = _coding(symbols, escape + 1, entropy)
                options.append((nbytes, escape, kind, symbols))
            nbytes, escape, kind, symbols = min(options, key=lambda o: o[0])
            rec["gaps"] = {"escape": escape, "coding": kind, "count": len(symbols), "bytes": nbytes}
            size += nbytes
            makers.append(lambda s=symbols, a=escape + 1, k=kind: _encode_ints(s, a, k))
        uniq = torch.unique(vals) if len(vals) else vals
        if 0 < len(uniq) <= max_codebook:
            book = uniq.to(_DTYPES[_values_dtype(uniq)])
            codes = torch.searchsorted(uniq, vals).numpy()
            kind, nbytes = _coding(codes, len(uniq), entropy)
            rec["codebook"] = {"dtype": _NAMES[book.dtype], "size": len(uniq), "coding": kind, "bytes": nbytes}
            size += nbytes + book.numel() * book.element_size()
            makers += [lambda b=book: _raw_bytes(b), lambda c=codes, a=len(uniq), k=kind: _encode_ints(c, a, k)]
        else:
            stored = vals.to(_DTYPES[_values_dtype(vals)])
            rec["values"] = {"dtype": _NAMES[stored.dtype]}
            size += stored.numel() * stored.element_size()
            makers.append(lambda v=stored: _raw_bytes(v))
        plans.append((size, rec, makers))
    plans.append((raw_size, {"layout": "raw"}, [lambda: _raw_bytes(t)]))
    _, rec, makers = min(plans, key=lambda p: p[0])
    return record | rec, [make() for make in makers]


def _decode_tensor(rec: dict[str, Any], streams: list[bytes]) -> torch.Tensor:
    shape, dtype, layout = rec["shape"], rec["dtype"], rec["layout"]
    if layout == "raw":
        return _from_raw(streams[0], dtype, shape)
    numel = math.prod(shape)
    if layout == "sparse":
        g = rec["gaps"]
        symbols = _decode_ints(g["coding"], streams[0], g["escape"] + 1, g["count"])
        positions = symbols_to_positions(symbols, g["escape"])
        if len(positions) != rec["nnz"] or (len(positions) and positions[-1] >= numel):
            raise DataError(f"{rec['name']}: sparse positions do not fit the tensor: the file is corrupt")
        streams = streams[1:]
        count = rec["nnz"]
    else:
        count = numel
    if "codebook" in rec:
        cb = rec["codebook"]
        book = _from_raw(streams[0], cb["dtype"], [cb["size"]]).to(_DTYPES[dtype])
        codes = _decode_ints(cb["coding"], streams[1], cb["size"], count)
        vals = book[torch.from_numpy(codes)]
    else:
        vals = _from_raw(streams[0], rec["values"]["dtype"], [count]).to(_DTYPES[dtype])
    if layout == "dense":
        return vals.reshape(shape)
    out = torch.zeros(numel, dtype=_DTYPES[dtype])
    out[torch.from_numpy(positions)] = vals
    return out.reshape(shape)


# --- whole files ------------------------------------------------------------------------------


def pack_state(state: dict[str, torch.Tensor], *, model: str | None = None,
               kwargs: dict[str, Any] | None = None, structure: dict[str, Any] | None = None,
               meta: dict[str, Any] | None = None, entropy: Entropy = "huffman",
               max_codebook: int = 256) -> tuple[bytes, list[TensorReport]]:
    """Serialise tensors (a state dict) with the model's name and arguments."""
    records, payload, reports = [], [], []
    for name, t in state.items():
        rec, streams = _encode_tensor(name, t, entropy, max_codebook)
        rec["streams"] = [len(s) for s in streams]
        records.append(rec)
        payload += streams
        reports.append(_report(rec, sum(map(len, streams)), t))
    body = b"".join(payload)
    header = {"format": "dlslab-packed", "model": model, "kwargs": kwargs or {},
              "structure": structure or {}, "meta": meta or {}, "payload_bytes": len(body),
              "tensors": records}
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    blob = (MAGIC + struct.pack("<BI", VERSION, len(head)) + head + struct.pack("<I", zlib.crc32(head))
            + body + struct.pack("<I", zlib.crc32(body)))
    return blob, reports


def _report(rec: dict[str, Any], nbytes: int, t: torch.Tensor) -> TensorReport:
    numel = t.numel()
    nnz = int(rec.get("nnz", torch.count_nonzero(t).item() if t.numel() else 0))
    stored = nnz if rec["layout"] == "sparse" else numel
    gap_bytes = rec.get("gaps", {}).get("bytes", 0)
    return TensorReport(rec["name"], tuple(t.shape), rec["layout"], nnz,
                        rec.get("codebook", {}).get("size", 0),
                        8 * (nbytes - gap_bytes) / max(stored, 1),
                        8 * gap_bytes / max(nnz, 1) if rec["layout"] == "sparse" else 0.0, nbytes)


def unpack_state(blob: bytes, source: str = "packed data") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Parse a packed file's bytes: (state dict, header). Raises BadFileError when the bytes
    are not a packed file, are truncated, fail a checksum or the header's schema, or would
    decode to more than their size allows (see the module docstring)."""
    if len(blob) < 9 or blob[:4] != MAGIC:
        raise BadFileError(f"{source}: not a dlslab packed file (it does not start with {MAGIC!r})")
    version, hlen = struct.unpack_from("<BI", blob, 4)
    if version != VERSION:
        raise BadFileError(f"{source}: packed format version {version} is not supported (this dlslab "
                           f"reads version {VERSION}); repack the model with this version")
    if len(blob) < 13 + hlen:
        raise BadFileError(f"{source}: truncated: the header needs {13 + hlen} bytes, the file has "
                           f"{len(blob)}")
    head = blob[9:9 + hlen]
    if zlib.crc32(head) != struct.unpack_from("<I", blob, 9 + hlen)[0]:
        raise BadFileError(f"{source}: corrupt: the header checksum does not match")
    header = _read_header(head, source)
    records = _check_header(header, source)
    start, pbytes = 13 + hlen, header["payload_bytes"]
    if len(blob) != start + pbytes + 4:
        raise BadFileError(f"{source}: truncated or padded: expected {start + pbytes + 4} bytes, "
                           f"found {len(blob)}")
    body = blob[start:start + pbytes]
    if zlib.crc32(body) != struct.unpack_from("<I", blob, start + pbytes)[0]:
        raise BadFileError(f"{source}: corrupt: the payload checksum does not match")
    allowed = min(MAX_DECODED_BYTES, DECODED_FLOOR + MAX_EXPANSION * len(blob))
    decoded = sum(r.numel * _DTYPES[r.rec["dtype"]].itemsize for r in records)
    if decoded > allowed:
        largest = max(records, key=lambda r: r.numel)
        raise BadFileError(
            f"{source}: the header describes {decoded:,} bytes of tensors (largest: "
            f"{largest.rec['name']!r}, shape {largest.rec['shape']}), more than a file of "
            f"{len(blob):,} bytes may hold ({allowed:,}); the file is corrupt or crafted")
    state, offset = {}, 0
    for r in records:
        streams = []
        for n in r.rec["streams"]:
            streams.append(body[offset:offset + n])
            offset += n
        r.check_streams(streams, source)
        try:
            state[r.rec["name"]] = _decode_tensor(r.rec, streams)
        except (DataError, ValueError, IndexError) as exc:
            raise BadFileError(f"{source}: tensor {r.rec['name']!r} cannot be decoded ({exc})") from None
    return state, header


# --- the header's schema ---------------------------------------------------------------------


def _read_header(head: bytes, source: str) -> dict[str, Any]:
    """Inflate (at most MAX_HEADER_BYTES: a zlib bomb is refused, not expanded) and parse."""
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(head, MAX_HEADER_BYTES + 1)
    except zlib.error as exc:
        raise BadFileError(f"{source}: corrupt header ({exc})") from None
    if len(text) > MAX_HEADER_BYTES:
        raise BadFileError(f"{source}: the header inflates to more than {MAX_HEADER_BYTES:,} bytes "
                           f"(from {len(head):,}); refused as a decompression bomb")
    if not inflate.eof or inflate.unused_data:
        raise BadFileError(f"{source}: corrupt header (its compressed stream is cut short or followed by junk)")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadFileError(f"{source}: corrupt header (not JSON: {str(exc)[:100]})") from None
    return header


def _is_int(v: Any, low: int = 0, high: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)


def _is_name(v: Any, names: Any) -> bool:
    return isinstance(v, str) and v in names


def _show(v: Any) -> str:
    text = json.dumps(v, default=str)  # the header is at most MAX_HEADER_BYTES
    return text if len(text) <= 40 else text[:37] + "..."


def _object(obj: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:
    """`obj` must be a JSON object with all of `required`, and nothing outside `optional`."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object, not {_show(obj)}")
    missing, unknown = required - obj.keys(), obj.keys() - required - optional
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(sorted(map(str, unknown)))[:100]}")
    return obj


def _need(ok: bool, where: str, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {key} must be {expected}, not {_show(value)}")


@dataclass
class _Record:
    """One tensor record that passed the schema, with what its streams must hold."""

    rec: dict[str, Any]
    numel: int
    count: int  # values stored: numel (raw, dense) or nnz (sparse)

    def check_streams(self, streams: list[bytes], source: str) -> None:
        """Stream lengths against what the record says they hold (before decoding them)."""
        rec, name = self.rec, self.rec["name"]
        sizes = [len(x) for x in streams]
        if rec["layout"] == "raw":
            expected = [("raw values", self.numel * _DTYPES[rec["dtype"]].itemsize)]
        else:
            expected = [("gap", None)] if rec["layout"] == "sparse" else []
            if "codebook" in rec:
                cb = rec["codebook"]
                expected += [("codebook", cb["size"] * _DTYPES[cb["dtype"]].itemsize), ("code", None)]
            else:
                expected += [("values", self.count * _DTYPES[rec["values"]["dtype"]].itemsize)]
        for (what, want), got in zip(expected, sizes):
            if want is not None and got != want:
                raise BadFileError(f"{source}: tensor {name!r}: its {what} stream has {got} bytes, "
                                   f"its record says {want}; the file is corrupt")


def _check_record(rec: Any, where: str) -> _Record:
    rec = _object(rec, where, {"name", "shape", "dtype", "layout", "streams"},
                  {"nnz", "gaps", "codebook", "values"})
    _need(isinstance(rec["name"], str), where, "name", rec["name"], "a string")
    where = f"tensor {rec['name']!r}"
    shape = rec["shape"]
    _need(isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_is_int(d) for d in shape),
          where, "shape", shape, f"a list of at most {MAX_DIMS} non-negative integers")
    numel = math.prod(shape)  # Python integers: no overflow
    _need(_is_name(rec["dtype"], _DTYPES), where, "dtype", rec["dtype"], f"one of {', '.join(_DTYPES)}")
    layout = rec["layout"]
    _need(layout in ("raw", "dense", "sparse"), where, "layout", layout, "raw, dense or sparse")
    dtype_names = f"one of {', '.join(_DTYPES)}"
    if layout == "raw":
        _object(rec, where, {"name", "shape", "dtype", "layout", "streams"})
        n_streams, count = 1, numel
    else:
        _object(rec, where, {"name", "shape", "dtype", "layout", "streams", "nnz"}, {"gaps", "codebook", "values"})
        _need(_is_int(rec["nnz"], 0, numel), where, "nnz", rec["nnz"], f"an integer in 0..{numel}")
        if ("codebook" in rec) == ("values" in rec):
            raise ValueError(f"{where}: a {layout} tensor has exactly one of codebook and values")
        count, n_streams = (numel, 0) if layout == "dense" else (rec["nnz"], 1)
        if layout == "sparse":
            g = _object(rec.get("gaps"), f"{where}: gaps", {"escape", "coding", "count", "bytes"})
            _need(_is_int(g["escape"], 1, MAX_ALPHABET - 1), where, "gaps.escape", g["escape"],
                  f"an integer in 1..{MAX_ALPHABET - 1}")
            _need(g["coding"] in ("huffman", "fixed"), where, "gaps.coding", g["coding"], "huffman or fixed")
            _need(_is_int(g["count"]), where, "gaps.count", g["count"], "a non-negative integer")
            _need(_is_int(g["bytes"]), where, "gaps.bytes", g["bytes"], "a non-negative integer")
        elif "gaps" in rec:
            raise ValueError(f"{where}: a dense tensor has no gaps")
        if "codebook" in rec:
            cb = _object(rec["codebook"], f"{where}: codebook", {"dtype", "size", "coding", "bytes"})
            _need(_is_name(cb["dtype"], _DTYPES), where, "codebook.dtype", cb["dtype"], dtype_names)
            _need(_is_int(cb["size"], 1, MAX_ALPHABET), where, "codebook.size", cb["size"],
                  f"an integer in 1..{MAX_ALPHABET}")
            _need(cb["coding"] in ("huffman", "fixed"), where, "codebook.coding", cb["coding"], "huffman or fixed")
            _need(_is_int(cb["bytes"]), where, "codebook.bytes", cb["bytes"], "a non-negative integer")
            n_streams += 2
        else:
            v = _object(rec["values"], f"{where}: values", {"dtype"})
            _need(_is_name(v["dtype"], _DTYPES), where, "values.dtype", v["dtype"], dtype_names)
            n_streams += 1
    streams = rec["streams"]
    _need(isinstance(streams, list) and len(streams) == n_streams and all(_is_int(n) for n in streams),
          where, "streams", streams, f"a list of {n_streams} stream lengths for its layout")
    return _Record(rec, numel, count)


def _check_header(header: Any, source: str) -> list[_Record]:
    """The header's schema, checked before any of it is used; BadFileError names the field."""
    try:
        _object(header, "the header", {"format", "model", "kwargs", "structure", "meta",
                                       "payload_bytes", "tensors"})
        _need(header["format"] == "dlslab-packed", "the header", "format", header["format"], '"dlslab-packed"')
        _need(header["model"] is None or isinstance(header["model"], str), "the header", "model",
              header["model"], "a model name or null")
        for key in ("kwargs", "structure", "meta"):
            _need(isinstance(header[key], dict), "the header", key, header[key], "an object")
        _need(_is_int(header["payload_bytes"]), "the header", "payload_bytes", header["payload_bytes"],
              "a non-negative integer")
        tensors = header["tensors"]
        _need(isinstance(tensors, list) and len(tensors) <= MAX_TENSORS, "the header", "tensors",
              tensors, f"a list of at most {MAX_TENSORS} records")
        records = [_check_record(rec, f"tensor record {i}") for i, rec in enumerate(tensors)]
        names = [r.rec["name"] for r in records]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"tensor {dup!r} appears twice")
        used = sum(n for r in records for n in r.rec["streams"])
        if used != header["payload_bytes"]:
            raise ValueError(f"the tensors' streams hold {used} bytes, payload_bytes says {header['payload_bytes']}")
    except ValueError as exc:
        raise BadFileError(f"{source}: malformed header: {exc}") from None
    return records


def dense_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of the tensors stored plainly: floats as float32, others at their own width."""
    return sum(t.numel() * (4 if t.is_floating_point() else t.element_size()) for t in state.values())


def pack_model(model: nn.Module, path: str | Path | None, *, name: str | None = None,
               kwargs: dict[str, Any] | None = None, structure: dict[str, Any] | None = None,
               meta: dict[str, Any] | None = None, entropy: Entropy = "huffman",
               max_codebook: int = 256, reference_bytes: int | None = None,
               normalisation: tuple[float, float] | None = None) -> PackReport:
    """Write `model`'s state dict as a packed file (atomically) and report what it holds.
    With `path=None` nothing is written and `file_bytes` is the size it would have.
    `reference_bytes` is the uncompressed model's float32 size, when `model` has a
    different shape (low rank, structured pruning); by default, `model`'s own.
    `normalisation` (mean, std): the model's input is (pixels/255 - mean) / std; stored in
    the header's meta, read back with `input_normalisation`."""
    if normalisation is not None:
        mean, std = (float(v) for v in normalisation)
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise UsageError(f"input normalisation mean={mean}, std={std}: both finite, std > 0")
        meta = {**(meta or {}), NORMALISATION_KEY: {"mean": mean, "std": std}}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob, reports = pack_state(state, model=name, kwargs=kwargs, structure=structure, meta=meta,
                               entropy=entropy, max_codebook=max_codebook)
    if path is not None:
        path = Path(path)
        atomic.write_bytes(path, blob)
        size = path.stat().st_size
    else:
        size = len(blob)
    hlen = struct.unpack_from("<I", blob, 5)[0]
    return PackReport(path, size, reference_bytes or dense_bytes(state), 13 + hlen + 4, reports)


def input_normalisation(header: dict[str, Any], source: str = "packed file") -> tuple[float, float] | None:
    """(mean, std) of the model's input, (pixels/255 - mean) / std, as stored by `pack_model`;
    None for a file packed without it."""
    stored = header["meta"].get(NORMALISATION_KEY)
    if stored is None:
        return None
    ok = (isinstance(stored, dict) and set(stored) == {"mean", "std"}
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in stored.values())
          and stored["std"] > 0)
    if not ok:
        raise BadFileError(f"{source}: malformed header: meta.{NORMALISATION_KEY} must be "
                           f'{{"mean": number, "std": number > 0}}, got {_show(stored)}')
    return float(stored["mean"]), float(stored["std"])


def read_packed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, header) of a packed file."""
    return unpack_state(atomic.read_capped(path, MAX_FILE_BYTES, "a packed file"), str(path))


@contextmanager
def _registration_budget(limit: int, what: str) -> Iterator[None]:
    """Refuse to build a model that registers more than `limit` modules, parameters and
    buffers: arguments from a file (`layers=10**9`) must not build without end."""
    from torch.nn.modules import module as nn_module

    count = 0

    def hook(*_: Any) -> None:
        nonlocal count
        count += 1
        if count > limit:
            raise BadFileError(f"{what}: the arguments build far more layers than the file has tensors")

    handles = [nn_module.register_module_module_registration_hook(hook),
               nn_module.register_module_parameter_registration_hook(hook),
               nn_module.register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _build_recorded(header: dict[str, Any], state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The model a packed file names, built with its arguments and structure; first on the
    meta device (no memory) to check that the file's tensors fit it, then for real."""
    from dlslab.compress.lowrank import apply_low_rank_structure
    from dlslab.models import build_model

    name, kwargs = header["model"], header["kwargs"]
    lowrank = header["structure"].get("lowrank", {})
    if not (isinstance(lowrank, dict) and all(_is_int(r, 1) for r in lowrank.values())):
        raise BadFileError(f"{source}: malformed header: structure.lowrank must map layer names to ranks >= 1")

    def build() -> nn.Module:
        model = build_model(name, **kwargs)
        apply_low_rank_structure(model, lowrank)
        return model

    try:
        with torch.device("meta"), _registration_budget(16 * len(state) + 256, source):
            shapes = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except DataError:
        raise
    except Exception as exc:  # any failure of a factory given arguments read from a file
        raise BadFileError(f"{source}: cannot build model {name!r} with the file's arguments "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from None
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != stored:
        diff = sorted(set(shapes.items()) ^ set(stored.items()))[:3]
        raise BadFileError(f"{source}: the weights do not fit model {name!r} (first differences, "
                           f"name and shape: {diff})")
    return build()


def load_packed(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model recorded in a packed file (by its registry name and arguments, with
    its structural changes) and load the weights into it."""
    state, header = read_packed(path)
    if not header["model"]:
        raise BadFileError(f"{path}: the file holds tensors but names no model; read it with read_packed")
    model = _build_recorded(header, state, str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), header
