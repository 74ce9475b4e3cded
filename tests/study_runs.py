"""Running a study's smoke preset from a test, the way `dlslab run STUDY --preset smoke` does.

All smoke runs of a test session share one runs folder (`smoke_out`, set by conftest), and the
runner reuses a finished run with the same config hash: each study's smoke preset trains once
per session, whether the end-to-end test or the study's own test asks for it first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlslab import runner

SMOKE_OUT_ENV = "DLSLAB_TEST_SMOKE_OUT"


def smoke_out() -> Path:
    """The session's shared runs folder for smoke runs."""
    return Path(os.environ[SMOKE_OUT_ENV])


def run_smoke(study: str, overrides: dict[str, Any] | None = None, out: Path | None = None) -> runner.Outcome:
    """`study`'s smoke preset (plus `overrides`) on the CPU, in the shared runs folder unless
    `out` is given; the outcome must be a finished (or reused finished) run."""
    plan = runner.plan_study(study, "smoke", overrides or {})
    outcome = runner.execute(plan, out=out or smoke_out(), device="cpu", quiet=True)
    assert outcome.status in ("finished", "reused"), outcome.message
    return outcome
