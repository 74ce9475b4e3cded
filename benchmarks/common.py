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


def matmul_peak_gflops(n: int = 1024, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of an n x n matmul in `dtype` (default float32) on this machine, measured now."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def conv_peak_gflops(channels: int = 256, size: int = 16, batch: int = 256, repeats: int = 5,
                     device: str = "cpu") -> float:
    """GFLOP/s of a bf16, channels-last 3x3 convolution (channels -> channels on size x size
    images, forward), measured now: the arithmetic a CNN's training mostly is."""
    x = torch.randn(batch, channels, size, size, device=device, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, torch.bfloat16)
    conv = conv.to(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(2):
            conv(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            conv(x)
        sync(device)
    return 2 * channels * channels * 9 * size * size * batch * repeats / (time.perf_counter() - t0) / 1e9


def sync(device: str | torch.device) -> None:
    """Wait for queued GPU work (a no-op on the CPU), so a timer reads the real end."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


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
