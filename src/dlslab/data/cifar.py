"""CIFAR-10's python-pickle batches, read with a restricted unpickler (no code can run)."""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dlslab.errors import DataError, UnsafeFileError

# The only globals the CIFAR pickles need: numpy's array reconstruction.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Loads plain containers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafeFileError(f"refused to unpickle {module}.{name}: a dataset pickle may only hold "
                              "numbers, strings, lists, dicts and numpy arrays")


def safe_unpickle(data: bytes, source: str = "<bytes>") -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafeFileError as exc:
        raise UnsafeFileError(f"{source}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is one clear error
        raise DataError(f"{source}: not a valid pickle ({type(exc).__name__}: {exc})") from None


def _batch(obj: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise DataError(f"{source}: not a CIFAR-10 batch (expected keys b'data' and b'labels')")
    data, labels = obj[b"data"], np.asarray(obj[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{source}: CIFAR-10 data must be uint8 of shape (N, 3072), got "
                        f"{getattr(data, 'dtype', type(data))} {getattr(data, 'shape', '')}")
    if labels.shape != (len(data),) or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{source}: CIFAR-10 labels must be N integers in 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar10_tar(path: str | Path) -> dict[str, Any]:
    """{train_x (50000,3,32,32) uint8, train_y, test_x, test_y, classes} from the .tar.gz."""
    path = Path(path)
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar.getmembers():
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and (base.startswith(("data_batch_", "test_batch")) or base == "batches.meta"):
                    members[base] = tar.extractfile(m).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({exc}); delete it and fetch it again") from None
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    missing = [n for n in names if n not in members]
    if missing:
        raise DataError(f"{path}: not a CIFAR-10 archive (missing {', '.join(missing)})")
    train = [_batch(safe_unpickle(members[f"data_batch_{i}"], f"{path}:data_batch_{i}"), f"data_batch_{i}")
             for i in range(1, 6)]
    test = _batch(safe_unpickle(members["test_batch"], f"{path}:test_batch"), "test_batch")
    meta = safe_unpickle(members["batches.meta"], f"{path}:batches.meta")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(b"label_names", [])]
    if len(classes) != 10:
        raise DataError(f"{path}: batches.meta has no 10 label_names")
    return {"train_x": np.concatenate([b[0] for b in train]), "train_y": np.concatenate([b[1] for b in train]),
            "test_x": test[0], "test_y": test[1], "classes": classes}
