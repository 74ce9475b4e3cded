"""Atomic writes: an interrupted write leaves the old file and no temporary files; modes
follow the umask; a full disk is one clear message, torch.save included."""

from __future__ import annotations

import errno
import io
import json
import os

import pytest
import torch

from dlslab import atomic
from dlslab.errors import DiskFullError


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


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_modes_follow_the_umask(tmp_path, umask) -> None:
    old = os.umask(umask)
    try:
        assert atomic.current_umask() == umask
        atomic.write_text(tmp_path / "report.html", "<p>")
        atomic.write_bytes(tmp_path / "a.wav", b"RIFF")
        with open(tmp_path / "plain.txt", "w") as f:  # what open() gives, for comparison
            f.write("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for name in ("report.html", "a.wav", "plain.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


class _FullDisk(io.FileIO):
    """A file on a disk with `room` bytes left: a larger write fails with ENOSPC."""

    room = 1000

    def write(self, b) -> int:
        if len(b) > _FullDisk.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _FullDisk.room -= len(b)
        return super().write(b)


@pytest.fixture
def full_disk(monkeypatch):
    """atomic's files are opened on a disk with 1000 bytes free (buffered as open() does)."""
    def fdopen(fd, mode="r", *args, **kwargs):
        buffered = io.BufferedWriter(_FullDisk(fd, "w"), 256)
        return buffered if "b" in mode else io.TextIOWrapper(buffered)

    monkeypatch.setattr(_FullDisk, "room", 1000)
    monkeypatch.setattr(os, "fdopen", fdopen)


def test_a_torch_checkpoint_on_a_full_disk_is_the_clear_message(tmp_path, full_disk) -> None:
    from dlslab.train.engine import save_state

    ckpt = tmp_path / "checkpoints" / "mlp.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"the previous checkpoint")
    # torch.save swallows the OSError and fails later with "[enforce fail at inline_container.cc]"
    with pytest.raises(DiskFullError) as caught:
        save_state(ckpt, {"model": {"w": torch.zeros(10_000)}, "epoch": 3})
    message = str(caught.value)
    assert f"no space left in {ckpt.parent} (No space left on device)" in message
    assert "writing mlp.pt needed at least" in message and "free there" in message
    assert "nothing written earlier is lost" in message and "the run resumes" in message
    assert ckpt.read_bytes() == b"the previous checkpoint"
    assert [p.name for p in ckpt.parent.iterdir()] == ["mlp.pt"]


def test_every_atomic_write_on_a_full_disk_names_what_it_needed(tmp_path, full_disk) -> None:
    with pytest.raises(DiskFullError, match=r"writing m.json needed at least 5.0 KB"):
        atomic.write_json(tmp_path / "m.json", {"x": "y" * 5000})
    with pytest.raises(DiskFullError, match=r"writing b.bin needed at least 2.0 KB"):
        atomic.write_bytes(tmp_path / "b.bin", bytes(2000))
    assert list(tmp_path.iterdir()) == []
