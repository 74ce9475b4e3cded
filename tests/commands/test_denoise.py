"""`dlslab denoise`: streamed output equals denoising in memory; bad input is exit 2 and one line."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from dlslab.audio.denoise import Denoiser
from dlslab.cli import main
from study_runs import run_smoke


@pytest.fixture(scope="module")
def run_dir():
    return run_smoke("denoise").dir


def _noise(path, seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    wave = (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)
    sf.write(str(path), wave, rate, subtype="FLOAT")
    return wave


@pytest.mark.parametrize("rate", [16000, 44100])
def test_streaming_in_small_blocks_equals_denoising_in_memory(run_dir, tmp_path, capsys, rate) -> None:
    wave = _noise(tmp_path / "in.wav", 6.0, rate)
    out = tmp_path / "out.wav"
    assert main(["denoise", str(tmp_path / "in.wav"), "-o", str(out), "--model", str(run_dir),
                 "--block-frames", "20"]) == 0
    assert f"output: {out}" in capsys.readouterr().out
    streamed, back_rate = sf.read(str(out), dtype="float32")
    expected = Denoiser.from_run(run_dir).denoise(wave, rate)
    assert back_rate == rate and len(streamed) == len(wave)
    assert np.max(np.abs(streamed - np.clip(expected, -1, 1))) < 1e-4  # 16-bit rounding only


def test_clipped_recording_warns_and_strict_refuses(run_dir, tmp_path, capsys, one_line_error) -> None:
    wave = 0.3 * np.sin(np.arange(16000 * 2) / 5)
    wave[:100] = 1.0  # 0.3% clipped
    sf.write(str(tmp_path / "clip.wav"), wave.astype(np.float32), 16000)
    args = ["denoise", str(tmp_path / "clip.wav"), "-o", str(tmp_path / "o.wav"), "--model", str(run_dir)]
    assert main(args) == 0
    assert "dlslab: warning: audio file" in capsys.readouterr().err
    (tmp_path / "o.wav").unlink()
    assert main(args + ["--strict"]) == 2
    one_line_error("clipped (0.31% of samples")
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("content, says", [
    ({}, "an empty dict"),
    ({"fc.weight": torch.zeros(2, 2)}, "a plain state dict of 1 tensors"),
    ({"model": "lenet300", "kwargs": {}, "state_dict": {}}, "a dict with keys 'model', 'kwargs', 'state_dict'"),
    ({"model": {"w": torch.zeros(1)}, "history": []}, "a dict with keys 'model', 'history'"),
    ({"model": "lenet300", "kwargs": {}, "state_dict": {}, "sample_rate": 16000, "n_fft": 512, "hop": 256},
     "holds model 'lenet300', not one of the denoisers"),
])
def test_wrong_kind_checkpoint_says_what_the_file_is(tmp_path, capsys, content, says, one_line_error) -> None:
    torch.save(content, tmp_path / "x.pt")
    _noise(tmp_path / "in.wav", 1.0, 16000)
    assert main(["denoise", str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"),
                 "--model", str(tmp_path / "x.pt")]) == 2
    one_line_error(says)


def test_bad_outputs_and_inputs_are_exit_2(run_dir, tmp_path, capsys, monkeypatch, one_line_error) -> None:
    _noise(tmp_path / "in.wav", 1.0, 16000)
    base = ["denoise", str(tmp_path / "in.wav"), "--model", str(run_dir), "-o"]
    assert main(base + [str(tmp_path / "missing" / "o.wav")]) == 2
    one_line_error("does not exist; create it first")
    assert main(base + [str(tmp_path)]) == 2
    one_line_error("is a folder")
    monkeypatch.setattr("os.access", lambda *a, **k: False)  # a read-only folder, even for root
    assert main(base + [str(tmp_path / "o.wav")]) == 2
    one_line_error("is not writable")
    monkeypatch.undo()
    assert main(["denoise", str(tmp_path / "none.wav"), "-o", str(tmp_path / "o.wav"), "--model", str(run_dir)]) == 2
    one_line_error("does not exist")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    assert main(["denoise", str(tmp_path / "bad.wav"), "-o", str(tmp_path / "o.wav"), "--model", str(run_dir)]) == 2
    one_line_error("cannot read audio file")
    assert main(base + [str(tmp_path / "o.wav"), "--block-frames", "0"]) == 2
    one_line_error("--block-frames 0")
    assert main(["denoise", str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"), "--model", str(tmp_path)]) == 2
    one_line_error("holds no denoising model")
