"""Small plotting helpers shared by the studies: image grids and the usual figures.

matplotlib is imported lazily and always with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlslab import atomic


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: torch.Tensor | np.ndarray, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W), (N, H, W) or (N, H, W, C) into one (H', W', C) float array."""
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.float32)
    if x.size and x.max() > 1.5:  # uint8 range
        x = x / 255.0
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    n, c, h, w = x.shape
    ncol = min(nrow, max(n, 1))
    nrows = (n + ncol - 1) // ncol
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = x[i].transpose(1, 2, 0)
    return np.clip(grid, 0.0, 1.0)


def save_png(path: str | Path, grid: np.ndarray, scale: int = 1) -> None:
    """Write an (H, W, C) array in [0, 1] as PNG, nearest-neighbour upscaled by `scale`."""
    plt = pyplot()
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    img = grid[..., 0] if grid.shape[-1] == 1 else grid
    atomic.write_with(path, lambda f: plt.imsave(f, img, cmap="gray" if img.ndim == 2 else None,
                                                 vmin=0.0, vmax=1.0, format="png"))


def line_plot(series: dict[str, tuple[list[float], list[float]]], *, title: str, xlabel: str,
              ylabel: str, logx: bool = False, bands: dict[str, list[float]] | None = None) -> Any:
    """One line per name: {name: (xs, ys)}; optional ± bands {name: stds}. Returns the figure."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=str(name))
        if bands and name in bands:
            lo = np.asarray(ys) - np.asarray(bands[name])
            hi = np.asarray(ys) + np.asarray(bands[name])
            ax.fill_between(xs, lo, hi, alpha=0.2)
    if logx:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    readable_ticks(ax, xlabel, ylabel, [y for _, ys in series.values() for y in ys])
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return fig


def readable_ticks(ax: Any, xlabel: str, ylabel: str, ys: list[float]) -> None:
    """Ticks a reader takes in at a glance: plain numbers on a log axis (2, 5, 10, not 2x10⁰),
    whole epochs, and percentages on an accuracy or fraction axis whose values lie in [0, 1]."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

    if ax.get_xscale() == "log":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    if "epoch" in xlabel.lower():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    finite = [y for y in ys if np.isfinite(y)]
    if finite and 0 <= min(finite) and max(finite) <= 1 and any(w in ylabel.lower() for w in ("accuracy", "fraction")):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


def bar_chart(values: dict[str, float], *, title: str, ylabel: str,
              errors: dict[str, float] | None = None) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(values)
    ax.bar(names, [values[n] for n in names],
           yerr=[errors.get(n, 0.0) for n in names] if errors else None, capsize=3)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    return fig
