"""The usual figures of a report, arrays in and a matplotlib figure out.

Each function takes plain arrays (numpy, or anything `np.asarray` reads) and labels, and
returns the figure for `Run.add_figure`; none knows about studies or run folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dlslab.report.plots import pyplot

MARKERS = "os^Dvx*P"


def spectrograms(panels: dict[str, Any], *, extent: tuple[float, float, float, float] | None = None,
                 xlabel: str = "frame", ylabel: str = "bin", range_db: float | None = None,
                 colorbar_label: str = "", title: str | None = None) -> Any:
    """One image per panel (rows: frequency, columns: time), stacked with a shared time axis,
    each with its colour bar. `range_db` shows each panel's top `range_db` only (dB images);
    `extent` = (x0, x1, y0, y1) in the axes' units (default: frames and bins)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.0 * len(panels)), sharex=True, squeeze=False)
    for ax, (name, image) in zip(axes[:, 0], panels.items(), strict=True):
        image = np.asarray(image, dtype=np.float32)
        top = float(image.max())
        limits = {"vmin": top - range_db, "vmax": top} if range_db is not None else {}
        shown = ax.imshow(image, origin="lower", aspect="auto", cmap="magma", extent=extent, **limits)
        fig.colorbar(shown, ax=ax, pad=0.01, label=colorbar_label)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[-1, 0].set_xlabel(xlabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(truth: Any, predicted: Any, names: Sequence[str], *, xlabel: str = "predicted",
                     ylabel: str = "true") -> Any:
    """Row-normalised confusion matrix of integer labels (indices into `names`), with a colour bar."""
    plt = pyplot()
    n = len(names)
    m = np.zeros((n, n))
    np.add.at(m, (np.asarray(truth), np.asarray(predicted)), 1)
    m /= m.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(0.3 * n + 3, 0.3 * n + 2.5))
    shown = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), list(names), rotation=90, fontsize=6)
    ax.set_yticks(range(n), list(names), fontsize=6)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(shown, ax=ax, fraction=0.046)
    return fig


def histogram(values: Any, *, bins: int = 20, title: str = "", xlabel: str = "", ylabel: str = "count") -> Any:
    """A histogram of one set of values."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(np.asarray(values, dtype=np.float64), bins=bins)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def overlaid_histograms(panels: dict[str, dict[str, Any]], *, bins: int = 40, xlabel: str = "",
                        lines: dict[str, float] | None = None, line_label: str = "") -> Any:
    """One panel per name, each overlaying density histograms of its named value sets (on
    shared bins), with an optional vertical line per panel (`lines`)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), sharey=True, squeeze=False)
    for ax, (title, sets) in zip(axes[0], panels.items(), strict=True):
        everything = np.concatenate([np.asarray(v, dtype=np.float64) for v in sets.values()])
        edges = np.linspace(everything.min(), everything.max(), bins + 1)
        for label, values in sets.items():
            ax.hist(np.asarray(values, dtype=np.float64), edges, alpha=0.6, density=True, label=label)
        if lines and title in lines:
            ax.axvline(lines[title], color="k", ls="--", lw=1, label=line_label)
        ax.set(title=title, xlabel=xlabel)
    axes[0, 0].legend(fontsize=7)
    return fig


def scatter_2d(xy: Any, colour: Any, *, marker: Any = None, names: Sequence[str] | None = None,
               title: str = "") -> Any:
    """Points (N, 2) coloured by integer label `colour` (and shaped by integer label `marker`),
    e.g. a t-SNE map; a legend of `names` (one per colour) when there are at most 20."""
    plt = pyplot()
    xy, colour = np.asarray(xy), np.asarray(colour)
    marker = np.zeros(len(xy), dtype=int) if marker is None else np.asarray(marker)
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    legend = names is not None and len(names) <= 20
    for c in np.unique(colour):
        for m in np.unique(marker[colour == c]):
            pts = xy[(colour == c) & (marker == m)]
            ax.scatter(pts[:, 0], pts[:, 1], s=14, color=cmap(int(c) % 20), marker=MARKERS[int(m) % len(MARKERS)],
                       label=names[int(c)] if legend else None)
    ax.set(title=title, xticks=[], yticks=[])
    if legend:
        ax.legend(fontsize=6, ncol=2, loc="best")
    return fig
