"""HTML reports: one self-contained page per run, and an index of the runs folder.

Pages use only relative links to files inside the runs folder and inline CSS, so they work
from file:// with no network.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

from dlslab import atomic

_TEMPLATES = Path(__file__).parent / "templates"


def fmt(value: Any) -> str:
    """Numbers to a readable precision; everything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        return f"{value:.4f}" if abs(value) >= 1e-3 else f"{value:.2e}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html"]))
    env.filters["fmt"] = fmt
    env.filters["slug"] = lambda s: re.sub(r"[^a-zA-Z0-9_-]+", "-", str(s)).strip("-")
    return env


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def flatten_headline(headline: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'snr_db': {'cnn2d': 15}} -> {'snr_db.cnn2d': 15}."""
    out: dict[str, Any] = {}
    for k, v in headline.items():
        if isinstance(v, dict):
            out |= flatten_headline(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def answer_of(metrics: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """The run's answer sentence; for a study that records none, its findings paragraph."""
    if metrics.get("answer"):
        return str(metrics["answer"])
    texts = [i for i in items if i["kind"] in ("answer", "text")]
    answers = [i for i in texts if i["kind"] == "answer"]
    findings = [i for i in texts if "finding" in i["title"].lower()]
    chosen = (answers or findings or [None])[0]
    return chosen["text"] if chosen else ""


def last_log_event(run_dir: Path) -> dict[str, Any]:
    """The last line of log.jsonl (how an unfinished run stopped), or {}."""
    try:
        lines = (run_dir / "log.jsonl").read_text().strip().splitlines()
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


def run_status(run_dir: Path, metrics: dict[str, Any]) -> str:
    """finished, failed, no-data or unfinished (interrupted or still running)."""
    if metrics.get("status") == "finished":
        return "finished"
    event = last_log_event(run_dir).get("event")
    return event if event in ("failed", "no-data") else "unfinished"


def _headline_rows(headline: dict[str, Any], targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_metric = {t["title"]: t for t in targets}
    rows = [{"metric": k, "value": v, "target": by_metric.pop(k, None)} for k, v in headline.items()]
    return [{"metric": t["title"], "value": t["value"], "target": t} for t in by_metric.values()] + rows


def _sections(items: list[dict[str, Any]], answer: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the key figure, the other sections in order); audio players with a row and a column
    become one grid section where the first of them stood."""
    shown = [i for i in items if i["kind"] in ("text", "table", "image", "audio")
             and not (i["kind"] == "text" and i["text"] == answer)]
    key_figure = next((i for i in shown if i["kind"] == "image"), None)
    sections: list[dict[str, Any]] = []
    grid: dict[str, Any] | None = None
    for item in shown:
        if item is key_figure:
            continue
        if item["kind"] == "audio" and item.get("row") and item.get("column"):
            if grid is None:
                grid = {"kind": "audio_grid", "key": "audio-grid", "title": "Listen", "rows": {}, "columns": []}
                sections.append(grid)
            grid["rows"].setdefault(item["row"], {})[item["column"]] = item
            if item["column"] not in grid["columns"]:
                grid["columns"].append(item["column"])
            continue
        sections.append(item)
    return key_figure, sections


def run_context(run_dir: Path) -> dict[str, Any]:
    from dlslab.catalog import STUDIES

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    metrics = _read_json(run_dir / "metrics.json", {})
    items = _read_json(run_dir / "report.json", {"items": []})["items"]
    study = cfg.get("study") or run_dir.parent.name
    info = STUDIES.get(study)
    answer = answer_of(metrics, items)
    key_figure, sections = _sections(items, answer)
    changes = metrics.get("config_changes", {})
    return {
        "study": study, "run_name": run_dir.name, "number": info.number if info else "",
        "question": info.question if info else "", "status": run_status(run_dir, metrics),
        "seconds": metrics.get("seconds"), "preset": cfg.get("preset"), "answer": answer,
        "headline_rows": _headline_rows(flatten_headline(metrics.get("headline", {})), metrics.get("targets", [])),
        "key_figure": key_figure, "sections": sections,
        "env": _read_json(run_dir / "env.json", {}),
        "config_changes": changes,
        "config_text": yaml.safe_dump(cfg.get("config", {}), sort_keys=False),
    }


def render_run(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    ctx = run_context(run_dir) | {"css": (_TEMPLATES / "style.css").read_text(),
                                  "index_href": "../../index.html"}
    html = _env().get_template("run.html").render(**ctx)
    out = run_dir / "report.html"
    atomic.write_text(out, html)
    return out


def render_index(runs_dir: str | Path) -> Path:
    """index.html over a runs folder: each study's latest run and its headline numbers."""
    from dlslab.catalog import STUDIES

    runs_dir = Path(runs_dir)
    studies = []
    for info in STUDIES.values():
        runs = sorted((p for p in (runs_dir / info.name).glob("*-*") if (p / "config.yaml").exists()),
                      key=lambda p: p.name)
        entries = []
        for r in runs:
            metrics = _read_json(r / "metrics.json", {})
            items = _read_json(r / "report.json", {"items": []})["items"]
            key_figure = next((i for i in items if i["kind"] == "image"), None)
            headline = flatten_headline(metrics.get("headline", {}))
            targets = metrics.get("targets", [])
            key_number = (targets[0] if targets else
                          next(({"title": k, "value": v} for k, v in headline.items()), None))
            entries.append({"name": r.name, "href": f"{info.name}/{r.name}/report.html",
                            "status": run_status(r, metrics), "answer": answer_of(metrics, items),
                            "key_number": key_number, "preset": metrics.get("preset"),
                            "thumb": f"{info.name}/{r.name}/{key_figure['src']}" if key_figure else None})
        finished = [e for e in entries if e["status"] == "finished"]
        studies.append({"number": info.number, "name": info.name, "question": info.question,
                        "runs": entries,
                        "latest": (finished or entries or [None])[-1],
                        "compare_href": f"{info.name}/compare.html"
                        if (runs_dir / info.name / "compare.html").exists() else None})
    html = _env().get_template("index.html").render(studies=studies, css=(_TEMPLATES / "style.css").read_text())
    out = runs_dir / "index.html"
    atomic.write_text(out, html)
    return out
