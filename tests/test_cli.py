"""The CLI: help everywhere, list/show/data, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dlslab import cli
from dlslab.catalog import STUDIES


def test_help_for_every_command() -> None:
    parser, groups = cli.build_parser()
    commands = list(groups["root"].choices)
    assert {"list", "show", "run", "report", "data"} <= set(commands)
    for name in commands:
        out = subprocess.run([sys.executable, "-m", "dlslab", name, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: dlslab" in out.stdout, name


def test_list_shows_all_twelve(capsys) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[1] for row in rows] == list(STUDIES)
    for row, s in zip(rows, STUDIES.values()):
        assert row[2].rstrip(",") == list(s.load().PRESETS)[0], "each row lists the study's presets"


def test_show_prints_fields_and_presets(capsys) -> None:
    assert cli.main(["show", "denoise"]) == 0
    out = capsys.readouterr().out
    assert "seed" in out and "presets:" in out and "smoke" in out


def test_data_status_names_every_dataset(data_root, capsys) -> None:
    assert cli.main(["data", "status"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "found in" in out and "$DLSLAB_DATA" in out
    assert cli.main(["data", "verify", "mnist"]) == 0
    assert "ok (known copy)" in capsys.readouterr().out


def test_report_of_missing_folder_is_usage_error(tmp_path, capsys) -> None:
    assert cli.main(["report", str(tmp_path / "none")]) == 2
    assert "runs folder not found" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys) -> None:
    from dlslab import __version__

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"dlslab {__version__}"


@pytest.mark.parametrize("argv, suggestion", [
    (["run", "augmnt"], "did you mean 'augment'?"),
    (["show", "compres"], "did you mean 'compress'?"),
    (["run", "vae", "--preset", "quik"], "did you mean 'quick'?"),
    (["run", "vae", "--set", "epoch=3"], "did you mean 'epochs'?"),
])
def test_a_typo_is_exit_2_with_a_suggestion(argv, suggestion, capsys) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert suggestion in err and len(err.strip().splitlines()) == 1


def test_show_all_is_not_offered_as_a_study(capsys) -> None:
    assert cli.main(["show", "all"]) == 2
    assert ", all" not in capsys.readouterr().err
