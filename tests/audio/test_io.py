"""Audio I/O: round trips, mono mix-down, resampling, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dlslab.audio.io import AudioError, read_audio, resample, write_audio
from dlslab.errors import DataError

RATE = 16000


def _tone(seconds: float = 0.5, rate: int = RATE, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_write_read_round_trip_is_16bit_exact(tmp_path):
    wave = _tone()
    path = write_audio(tmp_path / "a.wav", wave, RATE)
    back, rate = read_audio(path)
    assert rate == RATE and back.dtype == np.float32 and back.shape == wave.shape
    assert np.max(np.abs(back - wave)) < 1.0 / 32768 + 1e-6
    assert sf.info(str(path)).subtype == "PCM_16"


def test_stereo_is_mixed_down_and_flac_is_read(tmp_path):
    left, right = _tone(freq=300), _tone(freq=500)
    sf.write(str(tmp_path / "s.flac"), np.stack([left, right], 1), RATE)
    back, _ = read_audio(tmp_path / "s.flac")
    assert back.ndim == 1
    np.testing.assert_allclose(back, (left + right) / 2, atol=2e-4)


def test_resampling_keeps_the_tone(tmp_path):
    path = write_audio(tmp_path / "a.wav", _tone(1.0, rate=44100), 44100)
    back, rate = read_audio(path, sample_rate=RATE)
    assert rate == RATE and abs(len(back) - RATE) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(back))) * RATE / len(back)
    assert abs(peak_hz - 440) < 2
    assert len(resample(np.ones(300, np.float32), 48000, 16000)) == 100


def test_wrong_rate_is_a_clear_error(tmp_path):
    path = write_audio(tmp_path / "a.wav", _tone(rate=8000), 8000)
    with pytest.raises(AudioError, match="8000 Hz.*16000 Hz was expected"):
        read_audio(path, expect_rate=RATE)


@pytest.mark.parametrize("kind, message", [
    ("corrupt", "cannot read"), ("empty", "empty"), ("silent", "silent"),
    ("nan", "NaN"), ("clipped", "clipped"), ("missing", "does not exist"),
])
def test_bad_files_give_clear_errors(tmp_path, kind, message):
    path = tmp_path / f"{kind}.wav"
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file")
    elif kind == "empty":
        sf.write(str(path), np.zeros(0, np.float32), RATE)
    elif kind == "silent":
        sf.write(str(path), np.zeros(RATE, np.float32), RATE)
    elif kind == "nan":
        wave = _tone()
        wave[100] = np.nan
        sf.write(str(path), wave, RATE, subtype="FLOAT")
    elif kind == "clipped":
        sf.write(str(path), np.clip(_tone() * 10, -1, 1), RATE)
    with pytest.raises(AudioError, match=message) as info:
        read_audio(path)
    assert isinstance(info.value, DataError) and str(path) in str(info.value)
