"""The report site: run pages, comparison pages and the index, checked in a real browser."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import browser
import toy_cli
from dlslab import cli
from dlslab.report.html import fmt
from dlslab.runs import Run
from dlslab.catalog import STUDIES

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def toy_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlslab.studies.toy", toy_cli.toy_study)
    monkeypatch.setitem(STUDIES, "toy", toy_cli.StudyInfo(99, "toy", "toy", "toy"))
    out = tmp_path / "runs"
    for extra in ([], ["--set", "lr=0.3"]):
        assert cli.main(["run", "toy", "--preset", "smoke", "--out", str(out), "--device", "cpu", *extra]) == 0
    run_dir = sorted(p for p in (out / "toy").iterdir() if p.is_dir())[0]
    run = Run(run_dir, "toy", None, quiet=True)
    t = np.linspace(0, 1, 8000, dtype=np.float32)
    run.add_audio(0.3 * np.sin(2 * np.pi * 440 * t), 8000, "tone", title="A tone")
    capsys.readouterr()
    return out


def test_pages_link_up_and_show_headlines(toy_runs, capsys) -> None:
    assert cli.main(["report", str(toy_runs)]) == 0
    index = (toy_runs / "index.html").read_text()
    assert "toy/compare.html" in index and "val_acc" in index
    assert all(name in index for name in STUDIES), "every study has a row"
    compare = (toy_runs / "toy" / "compare.html").read_text()
    assert "lr" in compare and compare.count("<th><a href=") == 2
    for page in toy_runs.rglob("*.html"):
        html = page.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), f"{page} reaches outside the site"


def test_site_in_a_real_browser(toy_runs, tmp_path) -> None:
    if not Path(browser.CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium chromium-driver)")
    cli.main(["report", str(toy_runs)])
    check = browser.check_site(toy_runs / "index.html", tmp_path, ARTIFACTS / "toy-report-index.png")
    assert check.problems == []
    assert len(check.pages) >= 4 and check.images >= 2 and check.audio >= 1


def test_browser_check_catches_broken_pages(toy_runs, tmp_path) -> None:
    cli.main(["report", str(toy_runs)])
    run_dir = sorted(p for p in (toy_runs / "toy").iterdir() if p.is_dir())[0]
    (run_dir / "val_acc.png").write_bytes(b"not a png")
    (run_dir / "tone.wav").write_bytes(b"RIFF garbage")
    shutil.copy(run_dir / "report.html", run_dir / "report.bak")
    html = (run_dir / "report.html").read_text().replace("</body>", '<a href="missing.html">x</a></body>')
    (run_dir / "report.html").write_text(html)
    problems = " ".join(browser.check_site(toy_runs / "index.html", tmp_path).problems)
    assert "image not decoded" in problems and "audio not decodable" in problems and "broken link" in problems


def test_number_formatting() -> None:
    assert fmt(0.98765) == "0.9877" and fmt(12345) == "12,345" and fmt(15.25) == "15.2"
    assert fmt(float("nan")) == "nan" and fmt(None) == "" and fmt({"a": 1.5}) == "a: 1.5"
