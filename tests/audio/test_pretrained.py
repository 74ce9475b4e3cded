"""audio.pretrained: the GE2E encoder pretrained on other data (the optional `resemblyzer`
extra): its front end, partial windows, and refusing a missing, corrupt or unsafe weight file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from dlslab import cli
from dlslab.audio import pretrained
from dlslab.errors import BadFileError, UnsafeFileError
from dlslab.models.siamese import GE2EEncoder

needs_extra = pytest.mark.skipif(not pretrained.installed(), reason="pip install dlslab[pretrained]")


def test_slaney_filters_are_equal_area_triangles_linear_below_1khz() -> None:
    fb = pretrained.slaney_filterbank()  # (40, 201)
    assert fb.shape == (40, pretrained.WINDOW // 2 + 1) and (fb >= 0).all()
    bin_hz = pretrained.SAMPLE_RATE / pretrained.WINDOW
    # area normalisation: each filter's weights times its width in Hz sum to 1 (wide filters are lower)
    area = fb.sum(1) * bin_hz
    assert torch.allclose(area[5:], torch.ones(35), atol=0.1)
    assert fb[-1].max() < fb[5].max()
    # below 1 kHz the centres are evenly spaced in Hz (linear), above it they spread out (log)
    centres = pretrained._slaney_hz(np.linspace(0, pretrained._slaney_mel(8000), 42))[1:-1]
    low, high = np.diff(centres[centres < 1000]), np.diff(centres[centres > 1000])
    assert np.allclose(low, low[0]) and (np.diff(high) > 0).all()
    assert pretrained._slaney_mel(1000.0) == pytest.approx(15.0)  # 200/3 Hz per mel up to 1 kHz


def test_mel_power_frames_and_level() -> None:
    t = np.arange(16000) / 16000
    wave = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    levelled = pretrained.levelled(wave)
    assert 20 * np.log10(float(levelled.square().mean().sqrt())) == pytest.approx(pretrained.LEVEL_DBFS, abs=1e-3)
    mel = pretrained.mel_power(levelled[None])  # (1, 40, 101)
    assert mel.shape == (1, pretrained.N_MELS, 16000 // pretrained.HOP + 1) and (mel >= 0).all()
    centres = pretrained._slaney_hz(np.linspace(0, pretrained._slaney_mel(8000), 42))[1:-1]
    assert abs(centres[int(mel[0, :, 50].argmax())] - 440) < 70  # the tone's band is the loudest


def test_partial_windows_follow_the_package_rule() -> None:
    enc = GE2EEncoder()
    assert enc.windows(101) == [0]  # a 1-s clip: one window, zero-padded to 1.6 s
    assert enc.windows(160) == [0]  # a second window would be less than 3/4 full
    assert enc.windows(301) == [0, 77, 154]  # 3 s at 1.3 windows per second
    # embeddings are unit length and ignore what lies beyond each utterance's length
    x, mask = torch.randn(2, 40, 200).abs(), torch.ones(2, 200)
    mask[1, 90:] = 0
    e = enc(x, mask)
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    y = x.clone()
    y[1, :, 90:] = 5.0
    assert torch.allclose(enc(y, mask)[1], e[1], atol=1e-6)


@needs_extra
def test_pretrained_weights_load_and_embed() -> None:
    enc = pretrained.pretrained_encoder()
    assert not enc.training
    state = pretrained.load_state()
    assert torch.equal(enc.state_dict()["linear.weight"], state["linear.weight"])


def test_missing_corrupt_and_unsafe_weight_files_are_refused(tmp_path) -> None:
    with pytest.raises(BadFileError, match="missing"):
        pretrained.load_state(tmp_path / "none.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a torch file" * 10)
    with pytest.raises(BadFileError, match="corrupt|refused"):
        pretrained.load_state(corrupt)
    unsafe = tmp_path / "unsafe.pt"
    unsafe.write_bytes(pickle.dumps(print, protocol=2))  # loading would import and call a Python object
    with pytest.raises(UnsafeFileError):
        pretrained.load_state(unsafe)
    other = tmp_path / "other.pt"
    torch.save({"model_state": {"lstm.weight_ih_l0": torch.zeros(3, 3)}}, other)
    with pytest.raises(BadFileError, match="not the GE2E encoder's weights"):
        pretrained.load_state(other)


def test_a_corrupt_weight_file_is_exit_2_with_a_clear_message(tmp_path, monkeypatch, capsys) -> None:
    corrupt = tmp_path / "pretrained.pt"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(200))
    monkeypatch.setattr(pretrained, "weights_path", lambda: corrupt)
    folder = tmp_path / "speakers" / "a"
    folder.mkdir(parents=True)
    assert cli.main(["speakers", "enrol", str(folder.parent), "--encoder", "pretrained",
                     "--out", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and "reinstall" in err and "Traceback" not in err


def test_not_installed_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "weights_path", lambda: None)
    assert not pretrained.installed()
    with pytest.raises(BadFileError, match="not installed"):
        pretrained.pretrained_encoder()
