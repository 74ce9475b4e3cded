"""The user tools (`dlslab denoise`, `impute`, `speakers`, `compress`, `data speech`), one module
each with `register(subparsers, groups)`. Modules here import only the standard library at the
top, so `dlslab --help` starts fast; the work is imported inside the command functions."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from dlslab.errors import UsageError


def writable_output(path: str | Path) -> Path:
    """`path` if a file can be written there (its folder exists and is writable, and it is
    not itself a folder); else a UsageError, before any work is done."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise UsageError(f"output {path} is a folder; give a file name")
    if not folder.is_dir():
        raise UsageError(f"output {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"output {path}: the folder {folder} is not writable")
    return path


@contextlib.contextmanager
def warnings_to_stderr(*categories: type[Warning]) -> Iterator[None]:
    """Warnings of `categories` raised inside the block, each printed once on stderr as
    `dlslab: warning: ...` (the tools' own warnings, e.g. clipped audio)."""
    with warnings.catch_warnings(record=True) as caught:
        for category in categories:
            warnings.simplefilter("always", category)
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, categories)):
                print(f"dlslab: warning: {message}", file=sys.stderr)
