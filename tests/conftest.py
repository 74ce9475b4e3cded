"""Shared fixtures. Real data is read from $DLSLAB_DATA (CI: ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from study_runs import SMOKE_OUT_ENV

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("DLSLAB_DATA")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "data"]
    return next((p.resolve() for p in candidates if p.is_dir()), None)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder; tests that need it fail loudly (not skip) when it is missing in CI."""
    root = _data_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("DLSLAB_DATA is not set and ../shared/data is missing")
        pytest.skip("real data not available (set DLSLAB_DATA)")
    os.environ["DLSLAB_DATA"] = str(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the user's cache out of tests: one cache for the whole session, set before any
    fixture runs (module-scoped study runs and subprocesses included)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        mp.setenv(SMOKE_OUT_ENV, str(tmp_path_factory.getbasetemp() / "smoke-runs"))
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        yield
