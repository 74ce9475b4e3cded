"""Atomic writes: an interrupted write leaves the old file and no temporary files."""

from __future__ import annotations

import json

import pytest

from dlslab import atomic


def test_interrupted_write_keeps_the_old_file(tmp_path) -> None:
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"acc": 0.9})

    def half_then_crash(f):
        f.write(b'{"acc": 0.')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.write_with(target, half_then_crash)
    assert json.loads(target.read_text()) == {"acc": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_handles_numpy_and_torch_scalars(tmp_path) -> None:
    import numpy as np
    import torch

    atomic.write_json(tmp_path / "m.json", {"a": np.float32(0.5), "b": torch.tensor(2), "c": np.arange(3)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.5, "b": 2, "c": [0, 1, 2]}
