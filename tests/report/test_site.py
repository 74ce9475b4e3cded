"""The report site: run pages, comparison pages and the index, checked in a real browser."""

from __future__ import annotations

import json
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


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_run_page_opens_with_the_answer_then_headline_against_target(toy_runs) -> None:
    run_dir = sorted(p for p in (toy_runs / "toy").iterdir() if p.is_dir())[0]
    html = (run_dir / "report.html").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    acc = metrics["headline"]["val_acc"]
    assert metrics["answer"].startswith(f"The network reaches {acc:.1%}")
    assert html.index('class="answer"') < html.index("<table"), "the answer comes before any table"
    assert html.index('id="headline"') < html.index('id="key-figure"') < html.index("Per epoch")
    target = metrics["targets"][0]
    assert target["met"] == (acc >= 0.8) and target["goal"] == ">= 0.8"
    assert ("yes" if target["met"] else "no") in _text(html.split('id="headline"')[1].split("</table>")[0])


def test_config_section_lists_changes_from_the_preset_first(toy_runs) -> None:
    runs = sorted(p for p in (toy_runs / "toy").iterdir() if p.is_dir())
    changed = [json.loads((r / "metrics.json").read_text())["config_changes"] for r in runs]
    assert sorted(map(len, changed)) == [0, 1]
    assert {"lr": {"preset": 0.1, "run": 0.3}} in changed


def test_compare_of_chosen_runs_gives_deltas_and_warns_on_other_test_data(toy_runs, capsys) -> None:
    runs = sorted(p for p in (toy_runs / "toy").iterdir() if p.is_dir())
    assert cli.main(["report", "--compare", *map(str, runs)]) == 0
    page = Path(capsys.readouterr().out.split("report: ")[1].strip())
    a, b = (json.loads((r / "metrics.json").read_text())["headline"]["val_acc"] for r in runs)
    text = _text(page.read_text())
    assert f"Δ {b - a:+.4g}" in text and "not directly comparable" not in text
    other = json.loads((runs[1] / "metrics.json").read_text()) | {"test_data_sha256": "0" * 64}
    (runs[1] / "metrics.json").write_text(json.dumps(other))
    assert cli.main(["report", "--compare", *map(str, runs)]) == 0
    assert "not directly comparable" in page.read_text()


def test_compare_refuses_unfinished_runs_and_single_runs(toy_runs, capsys) -> None:
    runs = sorted(p for p in (toy_runs / "toy").iterdir() if p.is_dir())
    assert cli.main(["report", "--compare", str(runs[0])]) == 2
    (runs[1] / "metrics.json").unlink()
    assert cli.main(["report", "--compare", *map(str, runs)]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_index_marks_unfinished_runs_and_shows_the_answer(toy_runs) -> None:
    runs = sorted(p for p in (toy_runs / "toy").iterdir() if p.is_dir())
    (runs[1] / "metrics.json").unlink()
    assert cli.main(["report", str(toy_runs)]) == 0
    row = (toy_runs / "index.html").read_text().split('id="study-toy"')[1].split("</tr>")[0]
    assert "status-unfinished" in row and "status-finished" in row
    assert "The network reaches" in row and 'class="thumb"' in row
