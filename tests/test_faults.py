"""Bad input gets our own clear error and loses nothing: crafted checkpoints, NaN data,
wrong shapes, empty and corrupt files (property-based for the wav reader)."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlslab.audio.io import AudioError, read_audio
from dlslab.errors import BadFileError, DataError, UnsafeFileError, UsageError
from dlslab.runs import expect_checkpoint, safe_torch_load
from dlslab.train.engine import fit

MARKER = "/tmp/dlslab-checkpoint-pwned"


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def test_crafted_checkpoint_is_refused_without_running(tmp_path) -> None:
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Exploit()}, path)
    with pytest.raises(UnsafeFileError, match="refused to load"):
        safe_torch_load(path)
    assert not os.path.exists(MARKER)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(DataError):
        safe_torch_load(raw)
    assert not os.path.exists(MARKER)


def test_the_refusal_does_not_invite_loading_the_file_anyway(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Exploit()}, path)
    with pytest.raises(UnsafeFileError) as caught:
        safe_torch_load(path)
    message = str(caught.value)
    assert "names the Python object posix.system" in message and "only load those" in message
    assert "weights_only" not in message and "can still be loaded" not in message
    assert "will likely succeed" not in message and "\n" not in message


def test_a_compressed_archive_is_refused_unread(tmp_path) -> None:
    """torch.save never compresses; a deflated entry could inflate far beyond the file."""
    import zipfile

    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item))
    with pytest.raises(BadFileError, match="bomb.pt: not a checkpoint written by torch.save.*compressed"):
        safe_torch_load(bomb)
    assert torch.equal(safe_torch_load(good)["w"], torch.zeros(1000))


@pytest.mark.parametrize("content, described", [
    ({}, "an empty dict"),
    ({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, r"a plain state dict of 2 tensors \('fc.weight', 'fc.bias'\)"),
    ({"model": {}, "history": {}}, "a dict with keys 'model', 'history'"),
    (torch.zeros(3, 4), r"a single tensor of shape \(3, 4\)"),
    ([1, 2, 3], "a list of 3 items"),
])
def test_a_wrong_kind_of_checkpoint_says_what_it_is(tmp_path, content, described) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(BadFileError, match=f"other.pt: this file is {described}, not a denoiser saved by "
                                           r"`dlslab denoise train` \(a dict with 'model', 'kwargs'\)"):
        expect_checkpoint(safe_torch_load(path), path, expected="a denoiser saved by `dlslab denoise train`",
                          keys=("model", "kwargs"))
    right = {"model": {"w": torch.zeros(1)}, "kwargs": {}}
    assert expect_checkpoint(right, path, expected="a denoiser", keys=("model", "kwargs")) is right


def test_truncated_checkpoint_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.randn(100, 100)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="truncated or corrupt"):
        safe_torch_load(path)


def _loss(m, xb, yb):
    return nn.functional.cross_entropy(m(xb), yb)


def test_nan_and_wrong_shapes_are_refused_before_training() -> None:
    model = nn.Linear(4, 2)
    x, y = torch.randn(10, 4), torch.zeros(10, dtype=torch.long)
    x[3, 1] = float("nan")
    x[7, 0] = float("inf")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    with pytest.raises(UsageError, match=r"NaN or infinite values in 2 rows \(first: \[3, 7\]\)"):
        fit(model, (x, y), _loss, optimizer=opt, epochs=1, batch_size=4, verbose=False)
    assert torch.equal(model.weight, before)
    with pytest.raises(UsageError, match="equal length"):
        fit(model, (torch.randn(10, 4), y[:9]), _loss, optimizer=opt, epochs=1, batch_size=4, verbose=False)


def _wav(data: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("data, subtype, message", [
    (np.zeros(0, np.float32), "FLOAT", "empty"),
    (np.zeros(1600, np.float32), "FLOAT", "silent"),
    (np.full(1600, np.nan, np.float32), "FLOAT", "NaN"),
])
def test_bad_wavs_are_clear_errors(tmp_path, data, subtype, message) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(_wav(data, subtype=subtype))
    with pytest.raises(AudioError, match=message):
        read_audio(path)


def test_clipped_wav_warns_and_is_read_unless_strict(tmp_path) -> None:
    from dlslab.audio.io import AudioWarning

    path = tmp_path / "x.wav"
    path.write_bytes(_wav(np.ones(1600, np.float32), subtype="FLOAT"))
    with pytest.warns(AudioWarning, match="clipped"):
        wave, rate = read_audio(path)
    assert rate == 16000 and len(wave) == 1600
    with pytest.raises(AudioError, match="clipped"):
        read_audio(path, strict=True)


def test_wrong_rate_and_truncated_wav(tmp_path) -> None:
    tone = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    path = tmp_path / "tone.wav"
    path.write_bytes(_wav(tone, 8000))
    with pytest.raises(AudioError, match="8000"):
        read_audio(path, expect_rate=16000)
    wave, rate = read_audio(path, sample_rate=16000)
    assert rate == 16000 and abs(len(wave) - 16000) <= 1
    path.write_bytes(_wav(tone, 8000)[:30])
    with pytest.raises(AudioError):
        read_audio(path)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_read_as_audio_or_raise_audio_error(data: bytes) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(data)
        f.flush()
        try:
            wave, rate = read_audio(f.name)
        except AudioError:
            return
        assert wave.ndim == 1 and np.isfinite(wave).all() and rate > 0


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=44, max_size=400))
def test_wav_header_with_garbage_body(body: bytes) -> None:
    header = _wav(np.zeros(1, np.int16).astype(np.float32))[:44]
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(header + body)
        f.flush()
        try:
            read_audio(f.name)
        except AudioError:
            pass
