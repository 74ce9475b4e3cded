"""`dlslab --help` and the tools' start-up import no torch, numpy, scipy, scikit-learn or
soundfile: building the whole parser loads only the standard library and dlslab's light modules."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "numpy", "scipy", "sklearn", "soundfile", "matplotlib", "yaml")


def test_building_the_parser_imports_nothing_heavy() -> None:
    code = ("import sys; from dlslab.cli import build_parser; build_parser(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_each_tool_help_exits_0() -> None:
    for tool in (["denoise"], ["impute"], ["speakers", "verify"], ["compress", "pack"], ["data", "speech"]):
        done = subprocess.run([sys.executable, "-m", "dlslab", *tool, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "usage: dlslab" in done.stdout, done.stderr
