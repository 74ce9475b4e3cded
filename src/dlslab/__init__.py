"""dlslab: twelve classic deep-learning studies, end to end.

The Python API (imported on first use, so `import dlslab` stays cheap):

- `dlslab.run(study, preset=..., set={...}, out=...) -> RunResult` and `dlslab.load_run(path)`;
- `dlslab.Denoiser.from_run(path).denoise(wave, rate)` (and `.denoise_file(src, dst)`, streamed);
- `dlslab.SpeakerEncoder.from_run(path)`: `.embed(wave, rate)`, `.verify(a, b)`, `.enrol(files)`;
- `dlslab.Imputer(method="auto").fit_transform(x)` (scikit-learn's interface; NaN = missing);
- `dlslab.compress.load_packed(path)` -> (model, header).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; loaded on first attribute access (PEP 562)
_API = {
    "run": "dlslab.api",
    "load_run": "dlslab.api",
    "RunResult": "dlslab.api",
    "Denoiser": "dlslab.audio.denoise",
    "SpeakerEncoder": "dlslab.audio.speaker_encoder",
    "Imputer": "dlslab.impute.imputer",
}
_SUBPACKAGES = ("compress",)  # `dlslab.compress.load_packed` works after `import dlslab` alone

__all__ = ["__version__", *_API, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlslab.{name}")
    raise AttributeError(f"module 'dlslab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
