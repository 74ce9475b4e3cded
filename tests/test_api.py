"""The Python API: `dlslab.run`, `dlslab.load_run`, and a cheap `import dlslab`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dlslab
import toy_cli
from dlslab.catalog import STUDIES
from dlslab.errors import ConfigError, UsageError


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlslab.studies.toy", toy_cli.toy_study)
    monkeypatch.setitem(STUDIES, "toy", toy_cli.StudyInfo(99, "toy", "toy", "toy"))


def test_run_returns_the_headline_and_load_run_reads_it_back(toy, tmp_path) -> None:
    result = dlslab.run("toy", preset="smoke", set={"lr": 0.2}, out=tmp_path)
    metrics = json.loads((result.dir / "metrics.json").read_text())
    assert result.status == "finished" and result.headline == metrics["headline"]
    assert result.config["lr"] == 0.2 and result.report.is_file()
    assert result.answer.startswith("The network reaches")
    again = dlslab.load_run(result.dir)
    assert again.headline == result.headline and again.study == "toy"
    assert dlslab.run("toy", preset="smoke", set={"lr": 0.2}, out=tmp_path).status == "reused"


def test_bad_input_raises_the_cli_errors(toy, tmp_path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        dlslab.run("toy", preset="smoke", set={"epoch": 2}, out=tmp_path)
    with pytest.raises(UsageError, match="unknown study"):
        dlslab.run("nosuch", out=tmp_path)
    with pytest.raises(UsageError, match="not a finished run folder"):
        dlslab.load_run(tmp_path)


def test_import_dlslab_does_not_import_torch() -> None:
    code = "import sys, dlslab; dlslab.__version__; print('torch' in sys.modules, sorted(dir(dlslab)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False") and "load_run" in out
