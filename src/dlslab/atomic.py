"""Atomic file writes: write a temporary file beside the target, fsync, then rename.

A reader (or a run killed half-way) sees either the old file or the new one, never half of
one. A full disk raises DiskFullError, removes the temporary file and leaves the old file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from dlslab.errors import DiskFullError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise DiskFullError(
                f"no space left while writing {path} ({exc.strerror}); the earlier version of "
                "this file, if any, is unchanged. Free some space (or pass --out to a disk with "
                "room) and run the same command again: it resumes."
            ) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_with(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever `writer(file)` writes (e.g. torch.save, fig.savefig)."""
    with atomic_open(path, "wb") as f:
        writer(f)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
