"""CIFAR-10 pickles: the restricted unpickler refuses code, and archives are checked."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlslab.data.cifar import read_cifar10_tar, safe_unpickle
from dlslab.errors import DataError, UnsafeFileError


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/dlslab-pwned",))


def test_malicious_pickle_is_refused_without_running(tmp_path) -> None:
    marker = "/tmp/dlslab-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    with pytest.raises(UnsafeFileError, match="refused to unpickle"):
        safe_unpickle(pickle.dumps({b"data": _Exploit()}), "evil.pkl")
    assert not os.path.exists(marker)


def _batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in rng.integers(0, 10, n)], b"batch_label": b"x"}, protocol=2)


def make_archive(path, n: int = 4) -> None:
    with tarfile.open(path, "w:gz") as tar:
        members = {f"data_batch_{i}": _batch(n, i) for i in range(1, 6)}
        members["test_batch"] = _batch(n, 9)
        members["batches.meta"] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_generated_archive_reads_back(tmp_path) -> None:
    make_archive(tmp_path / "c.tar.gz")
    out = read_cifar10_tar(tmp_path / "c.tar.gz")
    assert out["train_x"].shape == (20, 3, 32, 32) and out["test_x"].shape == (4, 3, 32, 32)
    assert out["classes"][3] == "c3"
    first = pickle.loads(_batch(4, 1))
    np.testing.assert_array_equal(out["train_x"][:4].reshape(4, -1), first[b"data"])


def test_truncated_archive_and_missing_batches(tmp_path) -> None:
    make_archive(tmp_path / "c.tar.gz")
    data = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated archive"):
        read_cifar10_tar(tmp_path / "cut.tar.gz")
    with tarfile.open(tmp_path / "one.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("data_batch_1")
        payload = _batch(2, 0)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match="missing data_batch_2"):
        read_cifar10_tar(tmp_path / "one.tar.gz")


def test_wrong_structure_is_clear() -> None:
    bad = pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    from dlslab.data.cifar import _batch as check

    with pytest.raises(DataError, match=r"shape \(N, 3072\)"):
        check(safe_unpickle(bad), "b")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_unpickle_or_raise_our_error(data: bytes) -> None:
    try:
        safe_unpickle(data)
    except DataError:  # UnsafeFileError is a DataError
        pass
