"""What every benchmark shares: the machine line, the measured matmul peak, timing and --json."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch


def machine() -> str:
    """'x86_64, 2 cores, 2 torch threads': what the figures were measured on."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads")


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """float32 GFLOP/s of an n x n matmul on this machine, measured now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """Write the figures to `path` (the --json argument) when one was given."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
