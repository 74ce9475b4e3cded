"""Fuzzing the readers of untrusted files: the packed format, IDX, run configs and
checkpoints. Random bytes and mutated valid files may only raise dlslab's own errors
(DlsError), and every read runs under an address-space cap, so a reader that tried to
allocate what a crafted header claims would fail here instead of passing."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import resource
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlslab import runner
from dlslab.catalog import STUDIES, StudyInfo
from dlslab.compress.packed import pack_state, unpack_state
from dlslab.data.idx import parse_idx, read_idx
from dlslab.errors import DlsError
from dlslab.runs import safe_torch_load

TESTS = Path(__file__).parent
CAP = 512 << 20  # address space a read may add (the honest files here need a few MB)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def address_space_cap(extra: int = CAP) -> Iterator[None]:
    """Lower RLIMIT_AS to the process's current size + `extra` for the duration: a larger
    allocation fails (MemoryError, or a torch/numpy error saying it cannot allocate)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    limit = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def read_bounded(read: Callable[[], Any]) -> Any:
    """`read()` under the cap: returns its value, or None when it raised a DlsError. Any
    other exception fails the test, and so does a DlsError that hides a failed allocation."""
    with address_space_cap():
        try:
            return read()
        except DlsError as exc:
            assert "allocate" not in str(exc) and "memory" not in str(exc).lower(), str(exc)
            return None


def mutate_bytes(blob: bytes, data: st.DataObject) -> bytes:
    """Flip, overwrite, cut or insert bytes at drawn positions."""
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "overwrite", "truncate", "insert"]))
        pos = data.draw(st.integers(0, max(len(out) - 1, 0)))
        if action == "flip" and out:
            out[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "overwrite":
            chunk = data.draw(st.binary(min_size=1, max_size=8))
            out[pos:pos + len(chunk)] = chunk
        elif action == "truncate":
            del out[pos:]
        else:
            out[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(out)


# --- the packed format ------------------------------------------------------------------


def _valid_packed() -> bytes:
    """A small file with every layout: sparse + codebook, dense + codebook, raw values, raw ints."""
    g = torch.Generator().manual_seed(0)
    sparse = torch.zeros(40, 30)
    sparse.view(-1)[torch.randperm(1200, generator=g)[:60]] = torch.tensor([0.5, -0.25, 1.0]).repeat(20)
    state = {"sparse": sparse, "dense": torch.tensor([0.5, -0.5, 0.25]).repeat(50).reshape(10, 15),
             "raw": torch.randn(7, 3, generator=g), "count": torch.tensor(12),
             "half": torch.randn(9, generator=g).half()}
    blob, _ = pack_state(state, model="lenet300", kwargs={"hidden": [300, 100]})
    return blob


VALID_PACKED = _valid_packed()
# no subnormal floats: importing dlslab.train turns on flush-to-zero
JSON_LEAVES = (st.none() | st.booleans() | st.floats(allow_subnormal=False) | st.text(max_size=6)
               | st.integers(-(2**70), 2**70)
               | st.sampled_from([0, 1, -1, 255, 256, 65535, 65536, 2**31, 2**32, 2**63, 32768, 10**12]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=8)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    out = []
    for key, child in items:
        out.append((node, key))
        out += _slots(child)
    return out


def _forge(header: Any, payload: bytes) -> bytes:
    head = zlib.compress(json.dumps(header).encode())
    return (b"DLSZ" + struct.pack("<BI", 1, len(head)) + head + struct.pack("<I", zlib.crc32(head))
            + payload + struct.pack("<I", zlib.crc32(payload)))


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    hlen = struct.unpack_from("<I", blob, 5)[0]
    return json.loads(zlib.decompress(blob[9:9 + hlen])), blob[13 + hlen:-4]


def test_the_fuzzed_valid_file_reads() -> None:
    state, header = unpack_state(VALID_PACKED)
    layouts = {r["layout"] for r in header["tensors"]}
    assert layouts == {"raw", "dense", "sparse"} and len(state) == 5


@FUZZ
@given(st.binary(max_size=400))
def test_packed_reader_on_random_bytes(blob: bytes) -> None:
    read_bounded(lambda: unpack_state(b"DLSZ\x01" + blob))
    read_bounded(lambda: unpack_state(blob))


@FUZZ
@given(st.data())
def test_packed_reader_on_mutated_files(data: st.DataObject) -> None:
    read_bounded(lambda: unpack_state(mutate_bytes(VALID_PACKED, data)))


@FUZZ
@given(st.data())
def test_packed_reader_on_mutated_headers_with_valid_checksums(data: st.DataObject) -> None:
    header, payload = _split(VALID_PACKED)
    for _ in range(data.draw(st.integers(1, 3))):
        container, key = data.draw(st.sampled_from(_slots(header)))
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            container[key] = data.draw(JSON_VALUES)
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[data.draw(st.text(max_size=6))] = data.draw(JSON_VALUES)
    read_bounded(lambda: unpack_state(_forge(header, payload)))


# --- IDX ----------------------------------------------------------------------------------


VALID_IDX = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 4, 5, 6) + bytes(range(120))


@FUZZ
@given(st.binary(max_size=64), st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4))
def test_idx_reader_on_random_bytes_and_headers(blob: bytes, dims: list[int]) -> None:
    read_bounded(lambda: parse_idx(blob))
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    out = read_bounded(lambda: parse_idx(header + blob))
    assert out is None or out.nbytes == len(blob)


@FUZZ
@given(st.data(), st.booleans())
def test_idx_reader_on_mutated_files(tmp_path: Path, data: st.DataObject, gzipped: bool) -> None:
    blob = mutate_bytes(VALID_IDX, data)
    if gzipped:
        blob = mutate_bytes(gzip.compress(blob, mtime=0), data) if data.draw(st.booleans()) else gzip.compress(blob)
    path = tmp_path / "x.idx"
    path.write_bytes(blob)
    read_bounded(lambda: read_idx(path))


# --- run configs ----------------------------------------------------------------------------


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(TESTS))
    import toy_study

    monkeypatch.setitem(sys.modules, "dlslab.studies.toy", toy_study)
    monkeypatch.setitem(STUDIES, "toy", StudyInfo(99, "toy", "toy", "toy"))


CONFIG_DOCS = st.fixed_dictionaries(
    {"study": st.sampled_from(["toy", "nope"]) | JSON_VALUES},
    optional={"preset": st.sampled_from(["smoke", "quick", "full", "nosuch", None]) | JSON_VALUES,
              "config": st.dictionaries(st.sampled_from(["epochs", "lr", "seed", "bogus"]), JSON_VALUES, max_size=3)
              | JSON_VALUES,
              "extra": JSON_VALUES})


@FUZZ
@given(st.one_of(CONFIG_DOCS.map(lambda d: yaml.safe_dump(d).encode()), st.binary(max_size=200),
                 st.text(max_size=200).map(str.encode)))
def test_run_config_reader(toy: None, tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    plan = read_bounded(lambda: runner.plan_from_file(path))
    assert plan is None or plan.info.name == "toy"


# --- checkpoints -----------------------------------------------------------------------------


def _valid_checkpoint() -> bytes:
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.randn(4, 3), "b": torch.zeros(3)}, "history": {"epochs": [{"loss": 0.5}]},
                "epoch": 2, "numpy": torch.from_numpy(np.arange(5, dtype=np.uint32))}, buf)
    return buf.getvalue()


VALID_CHECKPOINT = _valid_checkpoint()


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b)))
def test_checkpoint_loader_on_random_bytes(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "c.pt"
    path.write_bytes(blob)
    read_bounded(lambda: safe_torch_load(path))


@FUZZ
@given(st.data())
def test_checkpoint_loader_on_mutated_files(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "c.pt"
    path.write_bytes(mutate_bytes(VALID_CHECKPOINT, data))
    read_bounded(lambda: safe_torch_load(path))


CSV_CELLS = st.sampled_from(["1", "-2.5", "", "NA", "nan", "inf", "-inf", "1e309", "x", "a,b", '"q"', "\x00", "é"])


@FUZZ
@given(st.data())
def test_impute_csv_reader_on_random_and_table_like_text(tmp_path: Path, data: st.DataObject) -> None:
    """The impute tool's reader, column typing and encoding: random bytes, and tables of
    awkward cells with any delimiter and ragged rows."""
    from dlslab.commands.impute import describe_columns, encode, read_table

    delimiter = data.draw(st.sampled_from([",", ";", "\t", "|"]))
    rows = data.draw(st.lists(st.lists(CSV_CELLS, min_size=1, max_size=5), min_size=0, max_size=8))
    text = "\n".join(delimiter.join(r) for r in rows) if data.draw(st.booleans()) else data.draw(st.text(max_size=200))
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if data.draw(st.booleans()) else data.draw(st.binary(max_size=200)))

    def read() -> Any:
        header, body, _ = read_table(str(path))
        columns = describe_columns(header, body, "onehot", 20, set())
        return encode(body, columns)

    read_bounded(read)
