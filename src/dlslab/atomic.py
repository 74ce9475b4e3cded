"""Atomic file writes: write a temporary file beside the target, fsync, then rename. And
reads of untrusted files capped in size before anything is read (`read_capped`). And an
exclusive lock between processes (`exclusive`), for work that two runs must not do twice.

A reader (or a run killed half-way) sees either the old file or the new one, never half of
one. A new file gets the mode the umask gives (0644 under the usual umask 022), as `open`
would give it, so reports, tables and audio can be shared. A full disk raises
DiskFullError, which names the folder and how much was needed, removes the temporary file
and leaves the old file; that holds for writers that swallow the OSError of a failed
write and fail later with an error of their own (torch.save does).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from dlslab.errors import BadFileError, DataError, DiskFullError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (other threads' files may see 0 briefly)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


class _CountingWriter:
    """A file that remembers how much was written and the OSError of a failed write, for
    writers that turn that error into one of their own."""

    def __init__(self, file: IO[Any]):
        self._file = file
        self.written = 0
        self.attempted = 0
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.attempted = self.written + size
        try:
            n = self._file.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.written += size if n is None else n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def _human(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"  # unreachable


def disk_full_error(path: Path, exc: OSError, needed: int | None = None) -> DiskFullError:
    """The one message for a full disk (or a quota or file-size limit): which folder, how
    much the write needed and how much is free, and that the command resumes."""
    folder = path.parent
    try:
        st = os.statvfs(folder)
        free = f"; {_human(st.f_bavail * st.f_frsize)} free there"
    except OSError:
        free = ""
    need = f"writing {path.name} needed at least {_human(needed)}" if needed else f"writing {path.name} failed"
    return DiskFullError(
        f"no space left in {folder} ({exc.strerror}): {need}{free}. The earlier version of "
        "this file, if any, is unchanged, and nothing written earlier is lost. Free some space "
        "(or pass --out to a disk with room) and run the same command again: the run resumes."
    )


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, size: int | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces `path` atomically.
    `size`, when known, is what the write needs (for the disk-full message)."""
    path = Path(path)
    tmp: str | None = None
    guard: _CountingWriter | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            guard = _CountingWriter(f)
            yield guard  # type: ignore[misc]
            if guard.error is not None:  # the writer swallowed a failed write: the data is not whole
                raise guard.error
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        failed = exc if isinstance(exc, OSError) else guard.error if guard is not None else None
        if failed is not None and failed.errno in _NO_SPACE:
            done = max(guard.attempted, guard.written) if guard is not None else 0
            raise disk_full_error(path, failed, size or done or None) from None
        raise


@contextlib.contextmanager
def exclusive(path: str | Path, waiting: str) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (made if missing) for the block. A second
    process (or thread) waits until the first leaves, after printing `waiting` to stderr."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"dlslab: {waiting}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb", size=len(data)) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", size=len(text.encode())) as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_with(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever `writer(file)` writes (e.g. fig.savefig, np.savez)."""
    with atomic_open(path, "wb") as f:
        writer(f)


def torch_save(path: str | Path, obj: Any) -> None:
    """torch.save, atomically: a checkpoint is whole or absent, and a full disk is
    DiskFullError (torch would report it as an internal RuntimeError)."""
    import torch

    write_with(path, lambda f: torch.save(obj, f))


def append_text(path: str | Path, text: str) -> None:
    """Append to a log file (not atomic: a line is added or, on a full disk, DiskFullError)."""
    path = Path(path)
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise disk_full_error(path, exc, len(text.encode())) from None
        raise


def checked_size(path: str | Path, limit: int, what: str) -> int:
    """The size of `path`, a regular file of at most `limit` bytes holding `what` ("a packed
    file"); otherwise BadFileError (DataError when it cannot be read at all)."""
    path = Path(path)
    try:
        if not path.is_file() and path.exists():
            raise BadFileError(f"{path}: not {what} (not a regular file)")
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if size > limit:
        raise BadFileError(f"{path}: {size:,} bytes is larger than {what} may be ({limit:,} bytes at most)")
    return size


def read_capped(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of `path` after `checked_size`: a file larger than `limit` is not read."""
    checked_size(path, limit, what)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
