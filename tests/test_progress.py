"""progress: one study display with an ETA from the last run, steps under it, stderr only."""

from __future__ import annotations

import io
import json
import sys

from dlslab import progress
from dlslab.runner import expected_seconds


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_study_display_shows_steps_under_the_study_on_stderr_only(monkeypatch, capsys) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with progress.StudyDisplay("denoise (smoke)", expected_s=10.0) as display:
        assert progress.StudyDisplay.active is display
        with progress.task("cnn2d", total=40) as update:
            update(20, "loss=0.1")
        list(progress.track(range(3), "speech corpus", 3))
    assert progress.StudyDisplay.active is None
    assert capsys.readouterr().out == ""  # stdout keeps only the run: lines
    shown = term.getvalue()
    assert "denoise (smoke)" in shown and "cnn2d" in shown and "speech corpus" in shown


def test_quiet_or_not_a_terminal_draws_nothing(monkeypatch) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with progress.StudyDisplay("x", enabled=False):
        with progress.task("step", total=5) as update:  # a quiet study keeps its steps quiet
            update(5)
    assert term.getvalue() == ""
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    with progress.task("step", total=5) as update:
        update(5)
    assert plain.getvalue() == ""


def test_expected_seconds_is_the_latest_finished_run_of_the_preset(tmp_path) -> None:
    import os

    for k, (preset, status, seconds) in enumerate([("smoke", "finished", 5.0), ("quick", "finished", 50.0),
                                                     ("smoke", "finished", 7.0), ("smoke", "failed", 1.0)]):
        run = tmp_path / "denoise" / f"run{k}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"status": status, "preset": preset, "seconds": seconds}))
        os.utime(run / "metrics.json", (1000 + k, 1000 + k))
    assert expected_seconds(tmp_path, "denoise", "smoke") == 7.0
    assert expected_seconds(tmp_path, "denoise", "full") is None
