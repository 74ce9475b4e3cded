"""The Python API: run a study and read a run folder from a notebook or a script.

    import dlslab
    result = dlslab.run("denoise", preset="smoke", set={"epochs": 2}, out="runs")
    result.headline["snr_db"]          # the study's key numbers
    result.report                      # the run's report.html
    dlslab.load_run(result.dir)        # the same, read back from the folder

`run` is `dlslab run STUDY` without the command line: the same config checks, the same run
folders (a finished run with the same config is reused), the same report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlslab.errors import DlsError, UsageError


@dataclass
class RunResult:
    """A finished run folder and what it measured."""

    dir: Path
    study: str
    status: str  # finished, or reused (an earlier finished run with the same config)
    metrics: dict[str, Any] = field(repr=False)

    @property
    def headline(self) -> dict[str, Any]:
        """The study's key numbers (nested dicts, as in metrics.json)."""
        return self.metrics.get("headline", {})

    @property
    def answer(self) -> str:
        """The study's answer to its question, computed from the numbers ('' if none)."""
        return self.metrics.get("answer", "")

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the run used."""
        import yaml

        return yaml.safe_load((self.dir / "config.yaml").read_text())["config"]

    @property
    def report(self) -> Path:
        return self.dir / "report.html"


def run(study: str, preset: str | None = "quick", set: dict[str, Any] | None = None,  # noqa: A002
        out: str | Path = "runs", *, seed: int | None = None, device: str = "auto", force: bool = False,
        data_dir: str | Path | None = None, quiet: bool = True) -> RunResult:
    """Run `study` (its `preset`, then the `set` overrides) into `out` and return the result.
    Raises the CLI's errors: UsageError/ConfigError for a bad study, key or value, DataError
    for missing data, DlsError when the run fails."""
    from dlslab import runner

    plan = runner.plan_study(study, preset, dict(set or {}), seed)
    outcome = runner.execute(plan, out=out, device=device, force=force, data_dir=data_dir, quiet=quiet)
    if outcome.status not in ("finished", "reused"):
        raise DlsError(f"{study}: {outcome.status}: {outcome.message}")
    return RunResult(outcome.dir, study, outcome.status, outcome.metrics)


def load_run(path: str | Path) -> RunResult:
    """A finished run folder (RUN_DIR, or its metrics.json / config.yaml) read back."""
    path = Path(path)
    run_dir = path.parent if path.is_file() else path
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not a finished run folder (no metrics.json)") from None
    except ValueError as exc:
        raise UsageError(f"{run_dir}/metrics.json is not valid JSON ({exc})") from None
    if not isinstance(metrics, dict) or metrics.get("status") != "finished":
        raise UsageError(f"{run_dir} has not finished")
    return RunResult(run_dir, str(metrics.get("study", run_dir.parent.name)), "finished", metrics)
