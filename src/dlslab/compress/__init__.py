"""Network compression: pruning (prune.py, structured.py), weight sharing (share.py),
uniform quantisation (quant.py), low rank (lowrank.py), entropy coding (huffman.py) and the
packed on-disk format that stores the result (packed.py).

    model, header = dlslab.compress.load_packed("lenet300.dlz")   # the model, ready to evaluate
    dlslab.compress.input_normalisation(header)                   # (mean, std) of its input, or None

The names below are loaded on first use, so `import dlslab.compress` imports no torch.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"load_packed": "dlslab.compress.packed", "read_packed": "dlslab.compress.packed",
         "pack_model": "dlslab.compress.packed", "input_normalisation": "dlslab.compress.packed"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlslab.compress' has no attribute {name!r}")
