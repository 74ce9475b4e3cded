"""Audio I/O: round trips, mono mix-down, resampling, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dlslab.audio.io import (AudioError, AudioWarning, AudioWriter, read_audio, read_blocks, resample,
                             write_audio)
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
    ("nan", "NaN"), ("missing", "does not exist"),
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
    with pytest.raises(AudioError, match=message) as info:
        read_audio(path)
    assert isinstance(info.value, DataError) and str(path) in str(info.value)


def test_clipping_warns_and_is_refused_only_when_strict(tmp_path):
    wave = _tone()
    wave[:40] = 1.0  # 0.5% of the samples at full scale, as a phone recording might have
    sf.write(str(tmp_path / "c.wav"), wave, RATE)
    with pytest.warns(AudioWarning, match=r"clipped \(0.50% of samples"):
        back, _ = read_audio(tmp_path / "c.wav")
    assert len(back) == len(wave)
    with pytest.raises(AudioError, match="clipped"):
        read_audio(tmp_path / "c.wav", strict=True)


def test_duration_cap_is_checked_before_reading(tmp_path):
    path = write_audio(tmp_path / "long.wav", _tone(3.0), RATE)
    with pytest.raises(AudioError, match="is 3 s long; this tool reads at most 2 s"):
        read_audio(path, max_seconds=2)
    assert len(read_audio(path, max_seconds=3)[0]) == 3 * RATE


def test_blocks_cover_the_file_with_padding_and_the_writer_appends(tmp_path):
    wave = _tone(1.0)
    sf.write(str(tmp_path / "a.wav"), np.stack([wave, wave], 1), RATE)
    spans = list(read_blocks(tmp_path / "a.wav", block=3000, pad=500))
    assert [s for s, _ in spans] == list(range(0, RATE, 3000))
    assert max(len(x) for _, x in spans) == 3000 + 2 * 500  # memory: one padded block
    with AudioWriter(tmp_path / "out.wav", RATE) as out:
        for start, span in spans:
            lo = max(0, start - 500)
            out.write(span[start - lo:start - lo + 3000])
    back, _ = read_audio(tmp_path / "out.wav")
    assert np.max(np.abs(back - wave)) < 1e-4


def test_a_failed_streamed_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError), AudioWriter(tmp_path / "out.wav", RATE) as out:
        out.write(_tone())
        raise RuntimeError("stopped half-way")
    assert list(tmp_path.iterdir()) == []
