"""`dlslab impute IN.csv -o OUT.csv`: observed cells unchanged, every hole filled, clear errors."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

from dlslab.cli import main


def _write(path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _read(path):
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:]


def _table(tmp_path, n: int = 120, seed: int = 0):
    """Two strongly related numeric columns, an integer column and a category, 20% holes."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 10, n)
    rows = [[f"{v:.3f}", f"{2 * v + 1:.3f}", str(int(v)), "low" if v < 5 else "high"] for v in a]
    truth = [list(r) for r in rows]
    for row in rows:
        for j in range(4):
            if rng.random() < 0.2:
                row[j] = rng.choice(["", "NA"])
    path = tmp_path / "in.csv"
    _write(path, ["a", "b", "count", "level"], rows)
    return path, rows, truth


@pytest.mark.parametrize("method", ["gain", "mean"])
def test_observed_cells_are_written_back_unchanged_and_holes_filled(tmp_path, capsys, method) -> None:
    src, rows, truth = _table(tmp_path)
    out = tmp_path / "out.csv"
    assert main(["impute", str(src), "-o", str(out), "--method", method, "--iterations", "400"]) == 0
    header, filled = _read(out)
    assert header == ["a", "b", "count", "level"] and len(filled) == len(rows)
    for before, after in zip(rows, filled):
        for cell, new in zip(before, after):
            if cell not in ("", "NA"):
                assert new == cell  # the exact text
            else:
                assert new not in ("", "NA")
        assert after[3] in ("low", "high")
        assert after[2].lstrip("-").isdigit()  # an integer column gets integers
    assert f"wrote: {out}" in capsys.readouterr().out


def test_gain_uses_the_relation_between_columns(tmp_path) -> None:
    src, rows, truth = _table(tmp_path, n=300, seed=1)
    errors = {}
    for method in ("gain", "mean"):
        out = tmp_path / f"{method}.csv"
        assert main(["impute", str(src), "-o", str(out), "--method", method, "--iterations", "800"]) == 0
        _, filled = _read(out)
        holes = [(i, 1) for i, r in enumerate(rows) if r[1] in ("", "NA") and r[0] not in ("", "NA")]
        errors[method] = np.mean([abs(float(filled[i][j]) - float(truth[i][j])) for i, j in holes])
    assert errors["gain"] < 0.7 * errors["mean"]


def test_entirely_missing_column_is_a_clear_error(tmp_path, capsys) -> None:
    path = tmp_path / "bad.csv"
    _write(path, ["x", "empty"], [["1", ""], ["2", "NA"], ["", ""]])
    assert main(["impute", str(path), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "column 'empty' (column 2) is entirely missing" in err
    assert not (tmp_path / "o.csv").exists()


def test_non_numeric_column_rejected_when_asked(tmp_path, capsys) -> None:
    path = tmp_path / "cat.csv"
    _write(path, ["x", "colour"], [["1", "red"], ["", "blue"], ["3", ""]])
    assert main(["impute", str(path), "-o", str(tmp_path / "o.csv"), "--categorical", "reject"]) == 2
    assert "column 'colour' (column 2) is not numeric" in capsys.readouterr().err


def test_identifier_like_column_and_ragged_rows_are_rejected(tmp_path, capsys) -> None:
    path = tmp_path / "ids.csv"
    _write(path, ["x", "name"], [[str(i), f"person{i}"] for i in range(60)] + [["", "x"]])
    assert main(["impute", str(path), "-o", str(tmp_path / "o.csv")]) == 2
    assert "looks like free text or an identifier" in capsys.readouterr().err
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    assert main(["impute", str(ragged), "-o", str(tmp_path / "o.csv")]) == 2
    assert "line 3: 1 cells, but the header has 2 columns" in capsys.readouterr().err


def test_auto_is_the_default_and_prints_each_methods_score(tmp_path, capsys) -> None:
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((300, 2)) @ rng.standard_normal((2, 6)) + 0.05 * rng.standard_normal((300, 6))
    rows = [[f"{v:.4f}" if rng.random() >= 0.15 else "" for v in r] for r in truth]
    _write(tmp_path / "in.csv", [f"x{j}" for j in range(6)], rows)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        assert main(["impute", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"), "--iterations", "200"]) == 0
    err = capsys.readouterr().err
    assert "method auto: chose iterative" in err, err
    for method in ("mean", "knn", "iterative", "gain"):
        assert f"{method} 0." in err
    # scikit-learn's convergence warning is caught where it arises and shown as one note
    assert "note: iterative: [IterativeImputer] Early stopping criterion not reached." in err
    assert not leaked, [str(w.message) for w in leaked]


def test_semicolons_stdin_stdout_and_kept_id_column(tmp_path, capsys, monkeypatch) -> None:
    import io
    import sys

    text = "id;a;b\nr1;1;2\nr2;;4\n;3;6\nr4;4;\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["impute", "-", "-o", "-", "--method", "mean", "--keep", "id"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "id;a;b" and lines[1] == "r1;1;2" and lines[3].startswith(";3;6")  # id passed through
    assert lines[2].split(";")[1] != "" and lines[4].split(";")[2] != ""
    assert "imputed 2 missing cell(s) in 2 column(s) with mean" in err and "wrote: -" in err


@pytest.mark.parametrize("content, args, needle", [
    ("a,b\n1,inf\n2,\n3,4\n", [], "holds 'inf', an infinite number"),
    ("a,b\n1,-Infinity\n2,\n3,4\n", [], "holds '-Infinity'"),
    ("a,b\n1,2\n", ["--keep", "c"], "--keep c: no such column"),
    ("a,b\n", [], "needs a header line and at least one row"),
    ("a,b\n1,2\n3,4,5\n", [], "line 3: 3 cells"),
    (b"a,b\n\xff\xfe,1\n", [], "cannot be read as UTF-8"),
])
def test_bad_tables_are_exit_2_with_one_line(tmp_path, capsys, content, args, needle, one_line_error) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["impute", str(path), "-o", str(tmp_path / "o.csv"), "--method", "mean", *args]) == 2
    one_line_error(needle)
    assert not (tmp_path / "o.csv").exists()


def test_row_and_column_caps_and_bad_paths(tmp_path, capsys, monkeypatch, one_line_error) -> None:
    from dlslab.commands import impute

    path = tmp_path / "in.csv"
    _write(path, ["a", "b", "c"], [["1", "", "3"]] * 6)
    monkeypatch.setattr(impute, "MAX_ROWS", 5)
    assert main(["impute", str(path), "-o", str(tmp_path / "o.csv")]) == 2
    one_line_error("more than 5 rows")
    monkeypatch.setattr(impute, "MAX_ROWS", 100)
    monkeypatch.setattr(impute, "MAX_COLUMNS", 2)
    assert main(["impute", str(path), "-o", str(tmp_path / "o.csv")]) == 2
    one_line_error("3 columns, more than the 2")
    assert main(["impute", str(tmp_path / "none.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    one_line_error("no such file")
    assert main(["impute", str(path), "-o", str(tmp_path / "nodir" / "o.csv")]) == 2
    one_line_error("does not exist; create it first")
    assert main(["impute", str(path), "-o", str(tmp_path / "o.csv"), "--iterations", "0"]) == 2
    one_line_error("iterations=0")
