"""dlslab: twelve classic deep-learning studies, end to end.

The Python API (imported on first use, so `import dlslab` stays cheap):

- `dlslab.run(study, preset=..., set={...}, out=...) -> RunResult` and `dlslab.load_run(path)`;
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; loaded on first attribute access (PEP 562)
_API = {
    "run": "dlslab.api",
    "load_run": "dlslab.api",
    "RunResult": "dlslab.api",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'dlslab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
