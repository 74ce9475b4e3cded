"""report.figures: each figure takes plain arrays and returns a figure with what it should show."""

from __future__ import annotations

import numpy as np

from dlslab.report import figures


def test_spectrograms_one_panel_and_colour_bar_each() -> None:
    rng = np.random.default_rng(0)
    fig = figures.spectrograms({"a": rng.random((9, 20)), "b": rng.random((9, 20))}, range_db=80, title="t")
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2 and len(fig.axes) == 4  # two panels, two colour bars
    lo, hi = images[0].images[0].get_clim()
    assert hi - lo == 80


def test_confusion_matrix_rows_sum_to_one() -> None:
    fig = figures.confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["x", "y", "z"])
    m = fig.axes[0].images[0].get_array()
    assert np.allclose(np.asarray(m).sum(1), 1.0) and m[0, 0] == 0.5


def test_histograms_and_scatter_draw_every_set() -> None:
    fig = figures.histogram(np.arange(10), bins=5)
    assert len(fig.axes[0].patches) == 5
    fig = figures.overlaid_histograms({"p": {"same": [0.8, 0.9], "diff": [0.1, 0.2]}}, bins=4, lines={"p": 0.5})
    assert len(fig.axes[0].patches) == 8 and len(fig.axes[0].lines) == 1
    xy = np.random.default_rng(0).random((6, 2))
    fig = figures.scatter_2d(xy, [0, 0, 1, 1, 2, 2], marker=[0, 0, 0, 0, 1, 1], names=["a", "b", "c"])
    assert len(fig.axes[0].collections) == 3 and fig.axes[0].get_legend() is not None


def test_line_plot_ticks_read_as_plain_numbers_percent_and_whole_epochs() -> None:
    from dlslab.report.plots import line_plot

    fig = line_plot({"a": ([1, 2, 5, 10], [0.31, 0.45, 0.6, 0.72])}, title="t", xlabel="% of training set",
                    ylabel="test accuracy", logx=True)
    fig.canvas.draw()
    ax = fig.axes[0]
    xs = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "10" in xs and not any("times" in x or "^" in x for x in xs), xs
    assert all(t.get_text().endswith("%") for t in ax.get_yticklabels() if t.get_text())
    fig = line_plot({"a": ([1, 2, 3], [2.0, 1.5, 1.2])}, title="t", xlabel="epoch", ylabel="loss")
    fig.canvas.draw()
    assert all(float(t.get_text().replace("−", "-")).is_integer() for t in fig.axes[0].get_xticklabels() if t.get_text())
