"""`python tests/toy_cli.py ARGS...` = `dlslab ARGS...` with the toy study registered,
so tests can run, kill and resume a real process."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import toy_study  # noqa: E402

from dlslab import cli  # noqa: E402
from dlslab.catalog import STUDIES, StudyInfo  # noqa: E402


def register() -> None:
    sys.modules["dlslab.studies.toy"] = toy_study
    STUDIES["toy"] = StudyInfo(99, "toy", "toy", "a toy problem for the foundation's tests")


if __name__ == "__main__":
    register()
    raise SystemExit(cli.main(sys.argv[1:]))
