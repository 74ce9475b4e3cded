"""Noise for the speech corpus: real recordings from a folder, and generated types.

Generated types are white, pink (1/f power), brown (1/f² power) and babble (several other
synthetic talkers summed). Real recordings are split in time: training utterances draw
their noise from the first `TRAIN_FRACTION` of each recording and test utterances from the
rest, so a model is never tested on noise it heard while training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlslab.audio.io import read_audio
from dlslab.errors import DataError

GENERATED = ("white", "pink", "brown", "babble")
REAL = "real"  # a noise type meaning "any recording found in the noise folder"
AUDIO_SUFFIXES = (".wav", ".flac")
TRAIN_FRACTION = 0.75  # share of each recording (from its start) that training noise comes from
BABBLE_TALKERS = 4  # voices summed into one babble segment


def find_recordings(noise_dir: str | Path | None) -> dict[str, Path]:
    """{name: path} of the wav/flac recordings in `noise_dir` (name = file stem), sorted."""
    if noise_dir is None:
        return {}
    folder = Path(noise_dir)
    if not folder.is_dir():
        raise DataError(f"noise folder {folder} does not exist; give a folder of wav/flac recordings")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}


def coloured_noise(kind: str, n: int, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """`n` samples of white, pink or brown Gaussian noise with unit RMS."""
    white = rng.standard_normal(n)
    if kind == "white":
        out = white
    elif kind in ("pink", "brown"):
        exponent = 0.5 if kind == "pink" else 1.0  # amplitude ~ f^-exponent, power ~ f^-2·exponent
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        shape = 1 / np.maximum(freqs, 20.0) ** exponent  # flat below 20 Hz: no DC drift
        out = np.fft.irfft(np.fft.rfft(white) * shape, n)
    else:
        raise ValueError(f"unknown coloured noise {kind!r}; valid: white, pink, brown")
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def babble(n: int, rng: np.random.Generator, pool: Sequence[np.ndarray],
           talkers: int = BABBLE_TALKERS) -> np.ndarray:
    """`n` samples of babble: `talkers` utterances from `pool`, each looped from a random
    offset and normalised to unit RMS, summed, and the sum normalised to unit RMS."""
    if not pool:
        raise ValueError("babble needs a non-empty pool of utterances")
    out = np.zeros(n, dtype=np.float64)
    for k in rng.choice(len(pool), size=talkers, replace=len(pool) < talkers):
        voice = pool[k]
        start = int(rng.integers(len(voice)))
        seg = np.take(voice, np.arange(start, start + n), mode="wrap")
        out += seg / (np.sqrt(np.mean(seg**2)) + 1e-12)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, scaled noise) with 10·log10(Σclean² / Σnoise²) = snr_db."""
    gain = np.sqrt(np.sum(clean.astype(np.float64) ** 2)
                   / (np.sum(noise.astype(np.float64) ** 2) * 10 ** (snr_db / 10) + 1e-20))
    scaled = (noise * gain).astype(np.float32)
    return clean + scaled, scaled


@dataclass
class NoiseBank:
    """Where noise segments come from: loaded recordings and a babble pool per split."""

    sample_rate: int
    recordings: dict[str, np.ndarray] = field(default_factory=dict)  # name -> wave at sample_rate
    babble_pools: dict[str, list[np.ndarray]] = field(default_factory=dict)  # split -> utterances

    @classmethod
    def load(cls, paths: dict[str, Path], sample_rate: int) -> NoiseBank:
        return cls(sample_rate, {name: read_audio(p, sample_rate=sample_rate)[0] for name, p in paths.items()})

    def segment(self, kind: str, n: int, rng: np.random.Generator, split: str) -> np.ndarray:
        """`n` samples of noise type `kind` (a generated type or a recording name) for `split`
        ('train', 'test', or 'long': the whole recording)."""
        if kind == "babble":
            return babble(n, rng, self.babble_pools[split])
        if kind in GENERATED:
            return coloured_noise(kind, n, rng, self.sample_rate)
        wave = self.recordings[kind]
        cut = int(len(wave) * TRAIN_FRACTION)
        lo, hi = {"train": (0, cut), "test": (cut, len(wave))}.get(split, (0, len(wave)))
        part = wave[lo:hi]
        start = int(rng.integers(max(1, len(part) - n))) if len(part) > n else 0
        return np.take(part, np.arange(start, start + n), mode="wrap").astype(np.float32)
