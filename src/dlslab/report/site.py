"""The report site over a runs folder: every run's page, refreshed, and the index."""

from __future__ import annotations

from pathlib import Path

from dlslab.errors import UsageError
from dlslab.report.html import render_index, render_run


def build_site(runs_dir: Path) -> Path:
    if not runs_dir.is_dir():
        raise UsageError(f"runs folder not found: {runs_dir} (run a study first, or pass the folder)")
    for config in sorted(runs_dir.glob("*/*/config.yaml")):
        render_run(config.parent)
    return render_index(runs_dir)
