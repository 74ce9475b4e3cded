"""The UCI tables that ship with scikit-learn, min-max scaled to [0, 1] per column.

California housing is not shipped: scikit-learn downloads it the first time. Without network
that is a `DataError` saying so, so a study can report the table as not run and go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dlslab.data.splits import random_subset
from dlslab.errors import DataError, UsageError

TableName = Literal["breast", "wine", "digits", "housing"]
TABLES = ("breast", "wine", "digits", "housing")


@dataclass
class Table:
    name: str
    title: str
    x: np.ndarray  # (n, d) min-max normalised to [0, 1]
    y: np.ndarray | None  # class labels, or None for a regression target

    def subset(self, rows: int, seed: int) -> Table:
        """At most `rows` rows, a seeded random choice (the table itself when it is no larger)."""
        if len(self.x) <= rows:
            return self
        keep = random_subset(len(self.x), rows, seed).numpy()
        return Table(self.name, f"{self.title}, {rows} rows used", self.x[keep], None if self.y is None else self.y[keep])


def minmax(x: np.ndarray) -> np.ndarray:
    """Each column scaled to [0, 1]; a constant column becomes 0."""
    lo, hi = x.min(0), x.max(0)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def load_table(name: str, *, download: bool = True) -> Table:
    """A scikit-learn UCI table, normalised."""
    from sklearn import datasets

    if name == "breast":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        title = "breast cancer Wisconsin (diagnostic)"
    elif name == "wine":
        x, y = datasets.load_wine(return_X_y=True)
        title = "wine"
    elif name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
        title = "digits (8x8)"
    elif name == "housing":
        try:
            x, _ = datasets.fetch_california_housing(return_X_y=True, download_if_missing=download,
                                                      n_retries=1, delay=0.1)
        except OSError as exc:  # URLError is an OSError; no cached copy raises OSError too
            raise DataError(f"California housing is not in scikit-learn's cache and could not be "
                            f"downloaded ({exc}); it needs network once") from None
        y, title = None, "California housing"
    else:
        raise UsageError(f"unknown table {name!r}; valid: {', '.join(TABLES)}")
    return Table(name, f"{title} ({x.shape[0]} x {x.shape[1]})", minmax(x.astype(np.float64)),
                 None if y is None else y.astype(np.int64))
