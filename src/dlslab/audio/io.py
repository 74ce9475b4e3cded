"""Reading and writing audio: wav/flac via soundfile, mono float32, checked.

`read_audio` mixes stereo down to mono, resamples with a polyphase filter to the rate the
caller asks for, and refuses input a model should not see (unreadable, empty, all-silent,
NaN/inf or clipped) with an `AudioError` that names the file and what to do.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from dlslab import atomic
from dlslab.errors import DataError

CLIP_LEVEL = 0.999  # |x| at or above this counts as a clipped sample (full scale is 1.0)
CLIP_FRACTION = 0.001  # more than this fraction of clipped samples makes a file "clipped"
SILENCE_PEAK = 1e-5  # a file whose peak is below this is "all silent"


class AudioError(DataError):
    """An audio file that cannot be used: unreadable, empty, silent, non-finite, clipped,
    or at a sample rate the caller did not expect."""


def resample(wave: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    """`wave` (..., T) resampled from `rate_from` to `rate_to` Hz (polyphase, anti-aliased)."""
    if rate_from <= 0 or rate_to <= 0:
        raise AudioError(f"sample rates must be positive, got {rate_from} -> {rate_to}")
    if rate_from == rate_to:
        return np.asarray(wave, dtype=np.float32)
    ratio = Fraction(rate_to, rate_from)
    out = resample_poly(np.asarray(wave, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


def check_wave(wave: np.ndarray, what: str = "audio") -> np.ndarray:
    """`wave` if it is usable audio, else an AudioError saying why."""
    if wave.size == 0:
        raise AudioError(f"{what} is empty (no samples); give a file with sound in it")
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"{what} contains NaN or infinite samples; the file is corrupt, "
                         "re-export it as 16-bit or float wav/flac")
    peak = float(np.max(np.abs(wave)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{what} is all silent (peak {peak:.2e}); nothing to process")
    clipped = float(np.mean(np.abs(wave) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        raise AudioError(f"{what} is clipped ({clipped:.2%} of samples at full scale); "
                         "record or export it at a lower level")
    return wave


def read_audio(path: str | Path, *, sample_rate: int | None = None,
               expect_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(float32 mono waveform, rate) of the wav/flac at `path`.

    With `sample_rate` the wave is resampled to it (and that rate is returned); with
    `expect_rate` a file at any other rate is an error instead.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}. Give a wav or flac file") from None
    if expect_rate is not None and rate != expect_rate:
        raise AudioError(f"{path} is sampled at {rate} Hz, but {expect_rate} Hz was expected; "
                         f"resample it (e.g. `sox IN -r {expect_rate} OUT`) or pass a file at that rate")
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    check_wave(wave, f"audio file {path}")
    if sample_rate is not None and sample_rate != rate:
        wave, rate = resample(wave, rate, sample_rate), sample_rate
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int) -> Path:
    """Write `wave` (T,) as a 16-bit PCM wav, atomically; values are clipped to [-1, 1]."""
    path = Path(path)
    data = np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, data, int(sample_rate), format="WAV", subtype="PCM_16")
    atomic.write_bytes(path, buf.getvalue())
    return path
