"""The report site over a runs folder: every run's page, one comparison page per study
with two or more finished runs (headline numbers, config differences, figures and audio side
by side), and the index of the twelve studies. Everything links relatively, so the site
works from file:// with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dlslab import atomic
from dlslab.errors import UsageError
from dlslab.report.html import _TEMPLATES, _env, _read_json, flatten_headline, render_index, render_run


def _run_summary(run_dir: Path) -> dict[str, Any]:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    metrics = _read_json(run_dir / "metrics.json", {})
    items = _read_json(run_dir / "report.json", {"items": []})["items"]
    return {"name": run_dir.name, "config": cfg.get("config", {}), "status": metrics.get("status"),
            "headline": flatten_headline(metrics.get("headline", {})),
            "media": {i["key"]: i for i in items if i["kind"] in ("image", "audio")},
            "titles": [(i["key"], i["title"]) for i in items if i["kind"] in ("image", "audio")]}


def render_compare(study_dir: Path) -> Path | None:
    """`STUDY/compare.html` over the finished runs of one study (None if fewer than two)."""
    from dlslab.catalog import STUDIES

    runs = [_run_summary(p.parent) for p in sorted(study_dir.glob("*/config.yaml"))]
    runs = [r for r in runs if r["status"] == "finished"]
    if len(runs) < 2:
        return None
    headline_keys = list(dict.fromkeys(k for r in runs for k in r["headline"]))
    all_keys = list(dict.fromkeys(k for r in runs for k in r["config"]))
    config_keys = [k for k in all_keys if len({repr(r["config"].get(k)) for r in runs}) > 1]
    media = list(dict.fromkeys(t for r in runs for t in r["titles"]))
    info = STUDIES.get(study_dir.name)
    html = _env().get_template("compare.html").render(
        study=study_dir.name, number=info.number if info else "", question=info.question if info else "",
        runs=runs, headline_keys=headline_keys, config_keys=config_keys, media=media,
        css=(_TEMPLATES / "style.css").read_text())
    out = study_dir / "compare.html"
    atomic.write_text(out, html)
    return out


def build_site(runs_dir: Path) -> Path:
    if not runs_dir.is_dir():
        raise UsageError(f"runs folder not found: {runs_dir} (run a study first, or pass the folder)")
    for config in sorted(runs_dir.glob("*/*/config.yaml")):
        render_run(config.parent)
    for study_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        render_compare(study_dir)
    return render_index(runs_dir)
