"""Running a study's smoke preset from a test, the way `dlslab run STUDY --preset smoke` does."""

from __future__ import annotations

from pathlib import Path

from dlslab import runner


def run_smoke(study: str, out: Path) -> runner.Outcome:
    """Run `study`'s smoke preset on the CPU into `out`; the outcome must be a finished run."""
    outcome = runner.execute(runner.plan_study(study, "smoke"), out=out, device="cpu", quiet=True)
    assert outcome.status == "finished", outcome.message
    return outcome
