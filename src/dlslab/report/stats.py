"""Summaries of repeated measurements, stated one way in every table.

"mean ± std" means the mean and the *sample* standard deviation (n - 1 in the denominator)
over n repeats (seeds, folds, splits); a table that shows it says n in its caption
(`STD_NOTE`). With n = 1 there is no spread to show: `format_mean_std` prints the value alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

STD_NOTE = "± is the sample standard deviation over n runs"


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample std) of `values`; the std is 0.0 for a single value."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std of no values")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def format_mean_std(values: Iterable[float], digits: int = 2, scale: float = 1.0) -> str:
    """"m ± s" over the values (scaled), or just "m" when there is one value or a non-finite one."""
    vals = [float(v) * scale for v in values]
    mean, std = mean_std(vals)
    if len(vals) == 1 or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
