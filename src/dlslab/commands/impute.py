"""`dlslab impute IN.csv -o OUT.csv`: fill the missing cells of a user's table.

Missing cells are empty or NA (also N/A, NaN, null, case-insensitive). Numeric columns are
min-max scaled for the imputer and scaled back; non-numeric columns are one-hot encoded and
decoded to their most likely category (or rejected with `--categorical reject`). Observed
cells are written back as the exact text that was read; a column with no value at all is an
error, since nothing could be learnt about it.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlslab.errors import DataError, UsageError

MISSING = {"", "na", "n/a", "nan", "null"}


@dataclass
class Column:
    name: str
    kind: str  # "numeric" or "categorical"
    levels: list[str]  # categories, in order of first appearance (categorical only)
    integer: bool  # numeric with only whole numbers: imputed values are rounded
    lo: float = 0.0
    hi: float = 1.0


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file; every row must have the header's number of cells."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    lines = list(csv.reader(io.StringIO(text)))
    lines = [row for row in lines if row]  # blank lines
    if len(lines) < 2:
        raise DataError(f"{path}: needs a header line and at least one row of data")
    header, rows = lines[0], lines[1:]
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {i}: {len(row)} cells, but the header has {len(header)} columns")
    return header, rows


def describe_columns(header: list[str], rows: list[list[str]], categorical: str, max_levels: int) -> list[Column]:
    columns = []
    for j, name in enumerate(header):
        cells = [row[j].strip() for row in rows if not is_missing(row[j])]
        label = f"column {name!r} (column {j + 1})"
        if not cells:
            raise DataError(f"{label} is entirely missing: there is nothing to impute it from; "
                            "drop the column or fill in some of its values")
        numbers = [_number(c) for c in cells]
        if all(v is not None for v in numbers):
            values = np.asarray(numbers, dtype=np.float64)
            columns.append(Column(name, "numeric", [], bool(np.all(values == np.round(values))) and
                                  all("." not in c and "e" not in c.lower() for c in cells),
                                  float(values.min()), float(values.max())))
            continue
        levels = list(dict.fromkeys(cells))
        if categorical == "reject":
            example = next(c for c, v in zip(cells, numbers) if v is None)
            raise DataError(f"{label} is not numeric (e.g. {example!r}); remove it, or pass "
                            "--categorical onehot to one-hot encode it")
        if len(levels) > max_levels:
            raise DataError(f"{label} has {len(levels)} distinct non-numeric values, more than --max-levels "
                            f"{max_levels}: it looks like free text or an identifier; drop it, or raise --max-levels")
        columns.append(Column(name, "categorical", levels, False))
    return columns


def encode(rows: list[list[str]], columns: list[Column]) -> tuple[np.ndarray, np.ndarray]:
    """(values in [0, 1], observed mask), one matrix column per numeric column and one per
    category of a categorical column."""
    parts, masks = [], []
    for j, col in enumerate(columns):
        cells = [row[j].strip() for row in rows]
        seen = np.array([not is_missing(c) for c in cells], dtype=np.float64)
        if col.kind == "numeric":
            v = np.array([_number(c) if s else col.lo for c, s in zip(cells, seen)], dtype=np.float64)
            span = col.hi - col.lo
            parts.append(((v - col.lo) / span if span > 0 else np.zeros_like(v))[:, None])
            masks.append(seen[:, None])
        else:
            onehot = np.zeros((len(cells), len(col.levels)))
            for i, c in enumerate(cells):
                if seen[i]:
                    onehot[i, col.levels.index(c)] = 1.0
            parts.append(onehot)
            masks.append(np.repeat(seen[:, None], len(col.levels), axis=1))
    return np.concatenate(parts, 1), np.concatenate(masks, 1)


def decode(rows: list[list[str]], columns: list[Column], filled: np.ndarray) -> list[list[str]]:
    """The input rows with each missing cell replaced; observed cells keep their exact text."""
    out = [list(row) for row in rows]
    k = 0
    for j, col in enumerate(columns):
        width = 1 if col.kind == "numeric" else len(col.levels)
        block = filled[:, k:k + width]
        k += width
        for i, row in enumerate(out):
            if not is_missing(row[j]):
                continue
            if col.kind == "categorical":
                row[j] = col.levels[int(block[i].argmax())]
                continue
            value = col.lo + float(np.clip(block[i, 0], 0.0, 1.0)) * (col.hi - col.lo)
            row[j] = str(int(round(value))) if col.integer else f"{value:.6g}"
    return out


def impute_matrix(x: np.ndarray, m: np.ndarray, method: str, iterations: int, seed: int) -> np.ndarray:
    """Fill the unobserved entries of `x` (values in [0, 1]); observed entries are unchanged."""
    from dlslab.impute.compare import ImputerSpec, impute_with
    from dlslab.impute.threads import few_threads

    with few_threads(x.shape[1]):
        filled, _ = impute_with(method, x, m, ImputerSpec(iterations=iterations), seed)
    return np.where(m > 0, x, filled)


def cmd_impute(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    if args.iterations < 1:
        raise UsageError("--iterations must be at least 1")
    header, rows = read_table(src)
    columns = describe_columns(header, rows, args.categorical, args.max_levels)
    x, m = encode(rows, columns)
    holes = [(i, j) for i, row in enumerate(rows) for j, cell in enumerate(row) if is_missing(cell)]
    if holes:
        filled = impute_matrix(x, m, args.method, args.iterations, args.seed)
        rows = decode(rows, columns, filled)
    from dlslab import atomic

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic.write_text(dst, buf.getvalue())
    touched = sorted({header[j] for _, j in holes})
    print(f"imputed {len(holes)} missing cell(s) in {len(touched)} column(s) with {args.method}"
          + (f" ({', '.join(touched[:8])}{', ...' if len(touched) > 8 else ''})" if touched else ""),
          file=sys.stderr)
    print(f"wrote: {dst}")
    return 0


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("impute", help="fill the missing cells of a CSV table (GAIN by default)",
                              description="Impute the empty or NA cells of IN.csv and write OUT.csv; observed "
                                          "cells are written back unchanged.")
    p.add_argument("input", metavar="IN.csv", help="a CSV file with a header line")
    p.add_argument("-o", "--output", metavar="OUT.csv", required=True, help="where to write the completed table")
    p.add_argument("--method", choices=["gain", "mean", "knn", "iterative"], default="gain",
                   help="imputer (default gain)")
    p.add_argument("--iterations", type=int, default=4000, help="GAIN training steps (default 4000)")
    p.add_argument("--categorical", choices=["onehot", "reject"], default="onehot",
                   help="non-numeric columns: one-hot encode them (default) or stop with an error")
    p.add_argument("--max-levels", type=int, default=50,
                   help="most distinct values a non-numeric column may have (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and noise (default 0)")
    p.set_defaults(func=cmd_impute)
