"""The report site over a runs folder: every run's page, one comparison page per study
with two or more finished runs (headline numbers with their deltas, config differences,
figures and audio side by side), comparison pages of runs the user picks
(`dlslab report --compare RUN RUN ...`), and the index of the twelve studies. Everything
links relatively, so the site works from file:// with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hashlib
import os

import yaml

from dlslab import atomic
from dlslab.errors import UsageError
from dlslab.report.html import _TEMPLATES, _env, _read_json, flatten_headline, render_index, render_run


def _run_summary(run_dir: Path, page_dir: Path) -> dict[str, Any]:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    metrics = _read_json(run_dir / "metrics.json", {})
    items = _read_json(run_dir / "report.json", {"items": []})["items"]
    return {"name": run_dir.name, "study": cfg.get("study") or run_dir.parent.name,
            "href": os.path.relpath(run_dir, page_dir), "config": cfg.get("config", {}),
            "status": metrics.get("status"), "seed": cfg.get("config", {}).get("seed"),
            "test_data": metrics.get("test_data_sha256"),
            "headline": flatten_headline(metrics.get("headline", {})),
            "media": {i["key"]: i for i in items if i["kind"] in ("image", "audio")},
            "titles": [(i["key"], i["title"]) for i in items if i["kind"] in ("image", "audio")]}


def _delta(value: Any, base: Any) -> float | None:
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(base, numbers) and not isinstance(value, bool):
        return float(value) - float(base)
    return None


def compare_page(run_dirs: list[Path], out: Path) -> Path:
    """A page comparing `run_dirs` (runs of one study): each headline number per run with its
    delta from the first run, the config fields that differ, figures and audio side by side,
    and a warning when the runs were scored on different test data."""
    from dlslab.catalog import STUDIES

    runs = [_run_summary(d, out.parent) for d in run_dirs]
    studies = {r["study"] for r in runs}
    if len(studies) > 1:
        raise UsageError(f"--compare takes runs of one study; these are of {', '.join(sorted(studies))}")
    study = runs[0]["study"]
    headline_keys = list(dict.fromkeys(k for r in runs for k in r["headline"]))
    for r in runs:
        r["delta"] = {k: _delta(r["headline"].get(k), runs[0]["headline"].get(k)) for k in headline_keys}
    all_keys = list(dict.fromkeys(k for r in runs for k in r["config"]))
    config_keys = [k for k in all_keys if len({repr(r["config"].get(k)) for r in runs}) > 1]
    media = list(dict.fromkeys(t for r in runs for t in r["titles"]))
    fingerprints = {r["test_data"] for r in runs}
    if len(fingerprints) > 1:
        warning = ("These runs were scored on different test data"
                   + (" (or some recorded none)" if None in fingerprints else "")
                   + ": their numbers are not directly comparable.")
    else:
        warning = ""
    info = STUDIES.get(study)
    html = _env().get_template("compare.html").render(
        study=study, number=info.number if info else "", question=info.question if info else "",
        runs=runs, headline_keys=headline_keys, config_keys=config_keys, media=media, warning=warning,
        index_href=os.path.relpath(out.parent.parent / "index.html", out.parent),
        css=(_TEMPLATES / "style.css").read_text())
    atomic.write_text(out, html)
    return out


def render_compare(study_dir: Path) -> Path | None:
    """`STUDY/compare.html` over the finished runs of one study (None if fewer than two)."""
    finished = [p.parent for p in sorted(study_dir.glob("*/config.yaml"))
                if _read_json(p.parent / "metrics.json", {}).get("status") == "finished"]
    if len(finished) < 2:
        return None
    return compare_page(finished, study_dir / "compare.html")


def compare_runs(run_dirs: list[Path]) -> Path:
    """`dlslab report --compare RUN RUN ...`: a comparison page of the chosen runs, written in
    their study's folder as `compare-HASH.html` (HASH names the set of runs)."""
    if len(run_dirs) < 2:
        raise UsageError("--compare needs two or more run folders")
    for d in run_dirs:
        if not (d / "config.yaml").is_file():
            raise UsageError(f"{d} is not a run folder (it has no config.yaml)")
        if _read_json(d / "metrics.json", {}).get("status") != "finished":
            raise UsageError(f"{d} has not finished (no metrics.json): finish or resume it first")
    digest = hashlib.sha256("\n".join(str(d.resolve()) for d in run_dirs).encode()).hexdigest()[:8]
    return compare_page(run_dirs, run_dirs[0].parent / f"compare-{digest}.html")


def build_site(runs_dir: Path) -> Path:
    if not runs_dir.is_dir():
        raise UsageError(f"runs folder not found: {runs_dir} (run a study first, or pass the folder)")
    for config in sorted(runs_dir.glob("*/*/config.yaml")):
        render_run(config.parent)
    for study_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        render_compare(study_dir)
    return render_index(runs_dir)
