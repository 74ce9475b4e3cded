"""`dlslab data speech`: bad arguments are exit 2 with one line, before anything is synthesised."""

from __future__ import annotations

import pytest

from dlslab.cli import main


@pytest.mark.parametrize("args, needle", [
    (["--train", "-1"], "must not be negative"),
    (["--rate", "0"], "--rate 0"),
    (["--noise", "nosuch"], "noise type 'nosuch'"),
    (["--seconds", "0,0"], "0 < min_seconds <= max_seconds"),
])
def test_bad_arguments_are_exit_2(tmp_path, args, needle, one_line_error) -> None:
    assert main(["data", "speech", str(tmp_path / "corpus"), "--train", "1", "--test", "1", *args]) == 2
    one_line_error(needle)
    assert not (tmp_path / "corpus").exists() or not any((tmp_path / "corpus").iterdir())


def test_a_folder_with_files_is_refused(tmp_path, one_line_error) -> None:
    (tmp_path / "x.txt").write_text("mine")
    assert main(["data", "speech", str(tmp_path), "--train", "1", "--test", "1"]) == 2
    one_line_error("is not empty")


@pytest.mark.parametrize("value", ["nan,1", "1", "a,b", "5,1"])
def test_a_bad_range_is_an_argparse_error(tmp_path, capsys, value) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["data", "speech", str(tmp_path / "c"), "--snr", value])
    assert exit_.value.code == 2 and "error: argument --snr" in capsys.readouterr().err
