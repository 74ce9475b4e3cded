"""Thread limits for imputing small tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def few_threads(dim: int) -> Iterator[None]:
    """One torch thread for tables of at most 128 columns: splitting a 128 x 30 matmul over
    threads costs more than it saves, and far more on a busy machine."""
    before = torch.get_num_threads()
    if dim <= 128:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
