"""End to end: `dlslab run all --preset smoke --jobs 2` (as `make demo` runs the quick preset) runs
all twelve studies, prints the data plan first and a summary last, and the report site it leaves
passes the browser check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import browser
from study_runs import smoke_out
from dlslab.catalog import STUDIES

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = pytest.mark.slow  # deselect locally with -m "not slow"; CI runs everything


@pytest.fixture(scope="module")
def smoke_all(data_root):
    out = smoke_out()  # shared with the studies' own tests: each smoke preset trains once
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dlslab", "run", "all", "--preset", "smoke", "--out", str(out),
                           "--device", "cpu", "--jobs", "2"], capture_output=True, text=True, timeout=900,
                          env=os.environ | {"DLSLAB_DATA": str(data_root)})
    seconds = time.monotonic() - t0
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "smoke-all.log").write_text(proc.stderr + proc.stdout + f"\nwall time: {seconds:.1f} s\n")
    return proc, out


def test_run_all_smoke_finishes_every_study(smoke_all) -> None:
    proc, out = smoke_all
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    first_study = min(err.index(mark) for mark in ("== ", "reused finished run") if mark in err)
    assert err.index("data plan:") < first_study, "the data plan must come before any study runs"
    names = list(STUDIES)
    run_lines = [line[5:] for line in proc.stdout.splitlines() if line.startswith("run: ")]
    assert len(run_lines) == len(names)
    for line, name in zip(run_lines, names):
        metrics = json.loads((Path(line) / "metrics.json").read_text())
        assert metrics["status"] == "finished" and metrics["study"] == name and metrics["headline"]
    assert f"{len(names)} finished, 0 not run, 0 failed" in err


def test_report_site_of_the_smoke_run_in_a_browser(smoke_all, tmp_path) -> None:
    proc, out = smoke_all
    assert subprocess.run([sys.executable, "-m", "dlslab", "report", str(out)], capture_output=True).returncode == 0
    check = browser.check_site(out / "index.html", tmp_path, ARTIFACTS / "report-index.png")
    assert check.problems == [], "\n".join(check.problems[:20])
    assert len(check.pages) >= 1 + len(STUDIES) and check.images >= len(STUDIES)
