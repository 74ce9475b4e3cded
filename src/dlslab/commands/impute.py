"""`dlslab impute IN.csv -o OUT.csv`: fill the missing cells of a user's table.

Missing cells are empty or NA (also N/A, NaN, null, case-insensitive). The delimiter is
detected (comma, semicolon, tab or bar) and kept for the output; `-` reads stdin or writes
stdout. Numeric columns are min-max scaled for the imputer and scaled back; non-numeric
columns are one-hot encoded and decoded to their most likely category (or rejected with
`--categorical reject`); `--keep COL` passes a column (an ID) through untouched. The default
method, auto, scores every imputer on a hidden 15% of the observed cells and uses the best.
Observed cells are written back as the exact text that was read; a column with no value at
all, an infinite number, or a table beyond the row and column caps is an error.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlslab.errors import DataError, UsageError, did_you_mean

MISSING = {"", "na", "n/a", "nan", "null"}
DELIMITERS = ",;\t|"  # what the delimiter is detected among
MAX_TABLE_BYTES = 1 << 30  # a larger file is not read
MAX_ROWS = 1_000_000  # rows of data
MAX_COLUMNS = 2_000  # columns of the header
MAX_CELLS = 10_000_000  # rows x encoded columns (one per numeric column, one per category)
AUTO_HOLDOUT = 0.15  # auto hides this fraction of the observed cells to score the methods on


@dataclass
class Column:
    name: str
    kind: str  # "numeric", "categorical" or "kept" (passed through)
    levels: list[str]  # categories, in order of first appearance (categorical only)
    integer: bool  # numeric with only whole numbers: imputed values are rounded
    lo: float = 0.0
    hi: float = 1.0


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def _number(cell: str) -> float | None:
    """The cell's number, None if it is not one; an infinite number is an error."""
    try:
        value = float(cell)
    except ValueError:
        return None
    if not math.isfinite(value):
        raise ValueError(cell)
    return value


def _read_text(source: str) -> str:
    """The text of the file `source`, or of stdin for `-`, at most MAX_TABLE_BYTES."""
    from dlslab import atomic

    if source == "-":
        data = sys.stdin.buffer.read(MAX_TABLE_BYTES + 1)
        if len(data) > MAX_TABLE_BYTES:
            raise DataError(f"stdin: more than {MAX_TABLE_BYTES:,} bytes; split the table")
    else:
        if not Path(source).exists():
            raise UsageError(f"{source}: no such file")
        data = atomic.read_capped(source, MAX_TABLE_BYTES, "a CSV table")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: cannot be read as UTF-8 text ({exc})") from None


def detect_dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect of `text` (its delimiter among DELIMITERS); comma when unclear."""
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


def read_table(source: str) -> tuple[list[str], list[list[str]], str]:
    """Header, rows and delimiter of a CSV file (`-`: stdin); every row must have the
    header's number of cells, and the table must fit the row and column caps."""
    text = _read_text(source)
    dialect = detect_dialect(text)
    header: list[str] | None = None
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text), dialect):
            if not row:
                continue  # blank line
            if header is None:
                header = row
                if len(header) > MAX_COLUMNS:
                    raise DataError(f"{source}: {len(header):,} columns, more than the {MAX_COLUMNS:,} this "
                                    "tool imputes at once; split the table by columns")
                continue
            if len(rows) == MAX_ROWS:
                raise DataError(f"{source}: more than {MAX_ROWS:,} rows, more than this tool imputes at once; "
                                "split the table by rows")
            if len(row) != len(header):
                raise DataError(f"{source}, line {len(rows) + 2}: {len(row)} cells, but the header has "
                                f"{len(header)} columns (delimiter {dialect.delimiter!r})")
            rows.append(row)
    except csv.Error as exc:
        raise DataError(f"{source}: not a readable CSV table ({exc})") from None
    if header is None or not rows:
        raise DataError(f"{source}: needs a header line and at least one row of data")
    return header, rows, dialect.delimiter


def kept_columns(header: list[str], keep: list[str]) -> set[int]:
    """Indices of the `--keep` columns (names, repeated or comma-separated)."""
    names = [n.strip() for k in keep for n in k.split(",") if n.strip()]
    for name in names:
        if name not in header:
            raise UsageError(f"--keep {name}: no such column{did_you_mean(name, header)}; "
                             f"columns: {', '.join(header[:20])}{', ...' if len(header) > 20 else ''}")
    return {header.index(n) for n in names}


def describe_columns(header: list[str], rows: list[list[str]], categorical: str, max_levels: int,
                     keep: set[int] = frozenset()) -> list[Column]:
    """What each column is (kept columns are "kept": passed through)."""
    columns = []
    for j, name in enumerate(header):
        if j in keep:
            columns.append(Column(name, "kept", [], False))
            continue
        cells = [row[j].strip() for row in rows if not is_missing(row[j])]
        label = f"column {name!r} (column {j + 1})"
        if not cells:
            raise DataError(f"{label} is entirely missing: there is nothing to impute it from; "
                            "drop the column, fill in some of its values, or pass it through with --keep")
        try:
            numbers = [_number(c) for c in cells]
        except ValueError as exc:
            raise DataError(f"{label} holds {str(exc)!r}, an infinite number: impute from finite numbers "
                            "only; replace it, or empty the cell to have it imputed") from None
        if all(v is not None for v in numbers):
            whole = all(v == round(v) for v in numbers) and all("." not in c and "e" not in c.lower() for c in cells)
            columns.append(Column(name, "numeric", [], whole, min(numbers), max(numbers)))
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


def encode(rows: list[list[str]], columns: list[Column]) -> tuple[Any, Any, Any]:
    """(values in [0, 1], observed mask, table column of each matrix column): one matrix
    column per numeric column and one per category of a categorical column."""
    import numpy as np

    parts, masks, groups = [], [], []
    for j, col in enumerate(columns):
        if col.kind == "kept":
            continue
        groups += [j] * (1 if col.kind == "numeric" else len(col.levels))
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
    return np.concatenate(parts, 1), np.concatenate(masks, 1), np.asarray(groups)


def decode(rows: list[list[str]], columns: list[Column], filled: Any) -> list[list[str]]:
    """The input rows with each missing cell replaced; observed cells keep their exact text."""
    import numpy as np

    out = [list(row) for row in rows]
    k = 0
    for j, col in enumerate(columns):
        if col.kind == "kept":
            continue
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


def _write_table(dst: str, header: list[str], rows: list[list[str]], delimiter: str) -> None:
    from dlslab import atomic

    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if dst == "-":
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
    else:
        atomic.write_text(dst, buf.getvalue())


def cmd_impute(args: argparse.Namespace) -> int:
    from dlslab.commands import writable_output
    from dlslab.impute.imputer import Imputer

    if args.output != "-":
        writable_output(args.output)
    imputer = Imputer(args.method, iterations=args.iterations, holdout=AUTO_HOLDOUT, seed=args.seed)
    if args.max_levels < 1:
        raise UsageError(f"--max-levels {args.max_levels}: must be >= 1")
    header, rows, delimiter = read_table(args.input)
    columns = describe_columns(header, rows, args.categorical, args.max_levels, kept_columns(header, args.keep or []))
    width = sum(1 if c.kind == "numeric" else len(c.levels) for c in columns if c.kind != "kept")
    if len(rows) * width > MAX_CELLS:
        raise DataError(f"{args.input}: {len(rows):,} rows x {width:,} encoded columns (one per number column, one "
                        f"per category) is more than the {MAX_CELLS:,} cells this tool imputes at once; split the table")
    holes = [(i, j) for i, row in enumerate(rows) for j, cell in enumerate(row)
             if columns[j].kind != "kept" and is_missing(cell)]
    if holes and width:
        x, m, groups = encode(rows, columns)
        rows = decode(rows, columns, imputer.fill(x, m, groups))
        if imputer.scores_:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(imputer.scores_.items(), key=lambda kv: kv[1]))
            print(f"method auto: chose {imputer.method_} (RMSE on {AUTO_HOLDOUT:.0%} of the observed cells, hidden "
                  f"and imputed, columns scaled to [0, 1]: {scores})", file=sys.stderr)
        for note in dict.fromkeys(imputer.notes_):
            print(f"note: {note}", file=sys.stderr)
    _write_table(args.output, header, rows, delimiter)
    touched = sorted({header[j] for _, j in holes})
    print(f"imputed {len(holes)} missing cell(s) in {len(touched)} column(s) with {imputer.method_ or args.method}"
          + (f" ({', '.join(touched[:8])}{', ...' if len(touched) > 8 else ''})" if touched else ""),
          file=sys.stderr)
    print(f"wrote: {args.output}", file=sys.stderr if args.output == "-" else sys.stdout)
    return 0


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("impute", help="fill the missing cells of a CSV table (best imputer chosen)",
                              description="Impute the empty or NA cells of IN.csv and write OUT.csv; observed "
                                          "cells are written back unchanged.")
    p.add_argument("input", metavar="IN.csv", help="a CSV file with a header line (delimiter detected; - for stdin)")
    p.add_argument("-o", "--output", metavar="OUT.csv", required=True,
                   help="where to write the completed table (- for stdout)")
    p.add_argument("--method", choices=["auto", "gain", "mean", "knn", "iterative"], default="auto",
                   help="imputer (default auto: the one with the lowest RMSE on hidden observed cells)")
    p.add_argument("--keep", action="append", metavar="COL",
                   help="pass this column (e.g. an ID) through unchanged; repeatable or comma-separated")
    p.add_argument("--iterations", type=int, default=4000, help="GAIN training steps (default 4000)")
    p.add_argument("--categorical", choices=["onehot", "reject"], default="onehot",
                   help="non-numeric columns: one-hot encode them (default) or stop with an error")
    p.add_argument("--max-levels", type=int, default=50,
                   help="most distinct values a non-numeric column may have (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and noise (default 0)")
    p.set_defaults(func=cmd_impute)
