"""Image datasets as uint8 tensors: MNIST, Fashion-MNIST and CIFAR-10.

`load_images(name)` returns train/test tensors of shape (N, C, H, W), uint8, and int64
labels, plus where they came from (`data.splits` holds out validation sets and subsets).
Converting to float and moving to the device is the caller's choice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from dlslab import atomic
from dlslab.data.cifar import read_cifar10_tar
from dlslab.data.idx import read_bytes, read_idx
from dlslab.data.locate import cache_dir, get_dataset, require, sha256_file
from dlslab.errors import DataError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


@dataclass
class ImageData:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: Path  # folder the files were read from
    note: str = ""  # e.g. "non-canonical rebuild of CIFAR-10 (from JPEG files)"
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


def verify(name: str, data_dir: str | Path | None = None) -> list[dict[str, str]]:
    """Check each file of dataset `name` against the known checksums."""
    ds = get_dataset(name)
    folder = require(name, data_dir, download=False)
    rows = []
    for f in ds.files:
        path = folder / f.name
        digest = sha256_file(path)
        if f.sha256 and digest == f.sha256[0] and not f.content_md5:
            status = "ok (canonical)"
        elif digest in f.sha256:
            status = "ok (known copy)"
        elif digest in ds.rebuild_sha256:
            status = "ok (known rebuild, NOT the canonical file; structure checked)"
        elif f.content_md5 and hashlib.md5(read_bytes(path)).hexdigest() == f.content_md5:
            status = "ok (canonical content)"
        else:
            status = "MISMATCH (unknown file: structure is checked when loaded)"
        rows.append({"file": str(path), "bytes": str(path.stat().st_size), "sha256": digest, "status": status})
    return rows


def _load_idx_set(name: str, folder: Path) -> ImageData:
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        y = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {prefix} images {x.shape} and labels {y.shape} do not match")
        if y.max() > 9:
            raise DataError(f"{folder}: {prefix} labels outside 0..9")
        arrays[split] = (torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    classes = [str(i) for i in range(10)] if name == "mnist" else FASHION_CLASSES
    return ImageData(name, *arrays["train"], *arrays["test"], classes=classes, source=folder)


def _load_cifar(folder: Path) -> ImageData:
    archive = folder / "cifar-10-python.tar.gz"
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / "tensors" / f"cifar10-{key}.npz"
    ds = get_dataset("cifar10")
    arrays = _read_npz(cached)
    if arrays is None:
        parsed = read_cifar10_tar(archive)
        digest = sha256_file(archive)
        arrays = {k: parsed[k] for k in ("train_x", "train_y", "test_x", "test_y")}
        arrays["classes"] = np.array(parsed["classes"])
        arrays["canonical"] = np.array(digest in ds.files[0].sha256)
        try:
            atomic.write_with(cached, lambda f: np.savez(f, **arrays))
        except OSError:
            pass  # the cache is an optimisation only
    canonical = bool(arrays["canonical"])
    note = "" if canonical else ("this copy is not the canonical cifar-10-python.tar.gz (sha256 differs); "
                                 "its structure was checked (a known rebuild from JPEG files, so pixel "
                                 "values differ slightly from the original)")
    if len(arrays["train_x"]) != 50000 or len(arrays["test_x"]) != 10000:
        raise DataError(f"{archive}: expected 50000 train and 10000 test images")
    t = lambda k: torch.from_numpy(np.ascontiguousarray(arrays[k]))  # noqa: E731
    return ImageData("cifar10", t("train_x"), t("train_y"), t("test_x"), t("test_y"),
                     classes=[str(c) for c in arrays["classes"]], source=folder, note=note)


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None if it is missing or unreadable (then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=4)
def _load_cached(name: str, folder: Path) -> ImageData:
    if name in ("mnist", "fashion-mnist"):
        return _load_idx_set(name, folder)
    if name == "cifar10":
        return _load_cifar(folder)
    raise DataError(f"{name!r} is not an image dataset; valid: mnist, fashion-mnist, cifar10")


def load_images(name: str, data_dir: str | Path | None = None) -> ImageData:
    """Dataset `name` (mnist | fashion-mnist | cifar10), found or downloaded. The tensors are
    shared between calls in one process: do not modify them in place."""
    folder = require(name, data_dir)
    return _load_cached(name, folder.resolve())
