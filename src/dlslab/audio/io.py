"""Reading and writing audio: wav/flac via soundfile, mono float32, checked.

`read_audio` mixes stereo down to mono, resamples with a polyphase filter to the rate the
caller asks for, and refuses input a model should not see (unreadable, empty, all-silent,
NaN/inf) with an `AudioError` that names the file and what to do. A clipped recording is
common (phones clip a few samples) and is processed with an `AudioWarning`; `strict=True`
refuses it instead. Tools that hold a whole file in memory pass `max_seconds` (e.g.
MAX_IN_MEMORY_SECONDS): the duration is checked from the header before anything is read.

`read_blocks` and `AudioWriter` are the streaming pair: overlapping blocks of a long file in
bounded memory, and a wav written block by block that replaces its target atomically.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from dlslab import atomic
from dlslab.errors import DataError

CLIP_LEVEL = 0.999  # |x| at or above this counts as a clipped sample (full scale is 1.0)
CLIP_FRACTION = 0.001  # more than this fraction of clipped samples makes a file "clipped"
SILENCE_PEAK = 1e-5  # a file whose peak is below this is "all silent"
MAX_IN_MEMORY_SECONDS = 30 * 60  # longest file a tool reads whole (30 min at 48 kHz stereo: 690 MB)


class AudioError(DataError):
    """An audio file that cannot be used: unreadable, empty, silent, non-finite, clipped
    (with strict=True), too long to read whole, or at a sample rate the caller did not expect."""


class AudioWarning(UserWarning):
    """Audio that is processed but may give a worse result (clipped samples)."""


def resample(wave: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    """`wave` (..., T) resampled from `rate_from` to `rate_to` Hz (polyphase, anti-aliased)."""
    if rate_from <= 0 or rate_to <= 0:
        raise AudioError(f"sample rates must be positive, got {rate_from} -> {rate_to}")
    if rate_from == rate_to:
        return np.asarray(wave, dtype=np.float32)
    ratio = Fraction(rate_to, rate_from)
    out = resample_poly(np.asarray(wave, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


def check_level(n: int, peak: float, clipped: int, what: str, *, strict: bool = False) -> None:
    """The verdict on audio of `n` samples, peak |x| `peak` and `clipped` samples at full
    scale: AudioError if empty or silent, clipping an AudioWarning (an AudioError if strict)."""
    if n == 0:
        raise AudioError(f"{what} is empty (no samples); give a file with sound in it")
    if peak < SILENCE_PEAK:
        raise AudioError(f"{what} is all silent (peak {peak:.2e}); nothing to process")
    if clipped / n > CLIP_FRACTION:
        if strict:
            raise AudioError(f"{what} is clipped ({clipped / n:.2%} of samples at full scale); "
                             "record or export it at a lower level")
        warnings.warn(f"{what} is clipped ({clipped / n:.2%} of samples at full scale); processed anyway, "
                      "but the clipped samples cannot be restored", AudioWarning, stacklevel=3)


def check_wave(wave: np.ndarray, what: str = "audio", *, strict: bool = False) -> np.ndarray:
    """`wave` if it is usable audio, else an AudioError saying why (see check_level)."""
    if wave.size and not np.all(np.isfinite(wave)):
        raise AudioError(f"{what} contains NaN or infinite samples; the file is corrupt, "
                         "re-export it as 16-bit or float wav/flac")
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    check_level(wave.size, peak, int(np.count_nonzero(np.abs(wave) >= CLIP_LEVEL)), what, strict=strict)
    return wave


def audio_info(path: str | Path) -> Any:
    """soundfile's header info (frames, samplerate, channels) of the wav/flac at `path`."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}. Give a wav or flac file") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"audio file {path}: its header claims {info.samplerate} Hz and {info.channels} channels")
    return info


def read_audio(path: str | Path, *, sample_rate: int | None = None, expect_rate: int | None = None,
               max_seconds: float | None = None, strict: bool = False) -> tuple[np.ndarray, int]:
    """(float32 mono waveform, rate) of the wav/flac at `path`.

    With `sample_rate` the wave is resampled to it (and that rate is returned); with
    `expect_rate` a file at any other rate is an error instead. A file longer than
    `max_seconds` is an error before any sample is read; clipping warns (`strict`: refused).
    """
    path = Path(path)
    info = audio_info(path)
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        raise AudioError(f"audio file {path} is {info.frames / info.samplerate:.0f} s long; this tool reads "
                         f"at most {max_seconds:.0f} s into memory: split the file (e.g. `sox IN OUT trim 0 "
                         f"{max_seconds:.0f} : newfile : restart`)")
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}. Give a wav or flac file") from None
    if expect_rate is not None and rate != expect_rate:
        raise AudioError(f"{path} is sampled at {rate} Hz, but {expect_rate} Hz was expected; "
                         f"resample it (e.g. `sox IN -r {expect_rate} OUT`) or pass a file at that rate")
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    check_wave(wave, f"audio file {path}", strict=strict)
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


# --- streaming: long files in bounded memory ------------------------------------------------------


def read_blocks(path: str | Path, block: int, pad: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, samples) of the mono file at `path`: samples [start - pad, start + block + pad)
    clipped to the file, for start = 0, block, 2 block, ...; memory is one such span.
    NaN/inf samples are an AudioError; the caller checks level and clipping (`LevelCheck`)."""
    path = Path(path)
    info = audio_info(path)
    try:
        with sf.SoundFile(str(path)) as f:
            for start in range(0, info.frames, block):
                lo = max(0, start - pad)
                f.seek(lo)
                span = f.read(min(info.frames, start + block + pad) - lo, dtype="float32", always_2d=True)
                span = span.mean(axis=1) if span.shape[1] > 1 else span[:, 0]
                if not np.all(np.isfinite(span)):
                    raise AudioError(f"audio file {path} contains NaN or infinite samples; the file is "
                                     "corrupt, re-export it as 16-bit or float wav/flac")
                yield start, span
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}. Give a wav or flac file") from None


class LevelCheck:
    """check_level over a file read in blocks: `add` each block's own samples once, then
    `finish` gives the verdict check_wave would give on the whole file."""

    def __init__(self) -> None:
        self.n = self.clipped = 0
        self.peak = 0.0

    def add(self, samples: np.ndarray) -> None:
        self.n += samples.size
        if samples.size:
            self.peak = max(self.peak, float(np.max(np.abs(samples))))
            self.clipped += int(np.count_nonzero(np.abs(samples) >= CLIP_LEVEL))

    def finish(self, what: str, *, strict: bool = False) -> None:
        check_level(self.n, self.peak, self.clipped, what, strict=strict)


class AudioWriter:
    """A 16-bit PCM wav written block by block into a temporary file beside `path`, which
    replaces `path` when the `with` block ends without an error (atomic.atomic_open)."""

    def __init__(self, path: str | Path, sample_rate: int):
        self.path, self.sample_rate = Path(path), int(sample_rate)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> AudioWriter:
        f = self._stack.enter_context(atomic.atomic_open(self.path, "w+b"))
        self._sf = self._stack.enter_context(sf.SoundFile(f, "w", self.sample_rate, 1, "PCM_16", format="WAV"))
        return self

    def write(self, wave: np.ndarray) -> None:
        """Append samples (values are clipped to [-1, 1])."""
        self._sf.write(np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0))

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)
