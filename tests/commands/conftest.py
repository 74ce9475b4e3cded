"""Fixtures for the user tools' tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def one_line_error(capsys) -> Callable[..., None]:
    """check(*needles): what the last command wrote to stderr is one line `dlslab: error: ...`,
    without a traceback, holding every needle."""
    def check(*needles: str) -> None:
        err = capsys.readouterr().err.strip()
        assert err.startswith("dlslab: error:") and "\n" not in err and "Traceback" not in err, err
        for needle in needles:
            assert needle in err, err
    return check
