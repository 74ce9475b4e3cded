"""Speech-quality metrics of an estimate against its clean reference.

Inputs are 1-D numpy arrays or torch tensors; both are cut to the shorter length first.
`snr_db` is 10·log10(Σs² / Σ(s − ŝ)²); `si_sdr` is its scale-invariant form (zero-mean
signals, the reference rescaled by the optimal gain). A perfect estimate has an infinite
ratio, reported as `CAP_DB`. PESQ (wide band, 16 kHz) and STOI use the `pesq` and
`pystoi` packages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlslab.audio.io import resample

CAP_DB = 100.0  # the value reported for a (numerically) perfect estimate
PESQ_RATE = 16000  # wide-band PESQ is defined at 16 kHz


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"speech metrics take 1-D signals, got shape {x.shape}")
    return x


def align(clean: Any, estimate: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 numpy arrays cut to the shorter length."""
    s, e = _as_numpy(clean), _as_numpy(estimate)
    n = min(len(s), len(e))
    return s[:n], e[:n]


def _ratio_db(signal_energy: float, error_energy: float) -> float:
    if error_energy <= signal_energy * 10 ** (-CAP_DB / 10):
        return CAP_DB
    if signal_energy <= 0:
        return -CAP_DB
    return float(10 * np.log10(signal_energy / error_energy))


def snr_db(clean: Any, estimate: Any) -> float:
    """10·log10(Σs² / Σ(s − ŝ)²) in dB, capped at ±CAP_DB."""
    s, e = align(clean, estimate)
    return _ratio_db(float(np.sum(s**2)), float(np.sum((s - e) ** 2)))


def si_sdr(clean: Any, estimate: Any) -> float:
    """Scale-invariant signal-to-distortion ratio in dB, capped at ±CAP_DB."""
    s, e = align(clean, estimate)
    s, e = s - s.mean(), e - e.mean()
    energy = float(np.sum(s**2))
    target = (np.dot(e, s) / energy) * s if energy > 0 else np.zeros_like(s)
    return _ratio_db(float(np.sum(target**2)), float(np.sum((e - target) ** 2)))


def pesq_wb(clean: Any, estimate: Any, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0 to 4.6); NaN when PESQ finds no speech."""
    from pesq import PesqError, pesq

    s, e = align(clean, estimate)
    if sample_rate != PESQ_RATE:
        s, e = resample(s, sample_rate, PESQ_RATE), resample(e, sample_rate, PESQ_RATE)
    score = pesq(PESQ_RATE, s.astype(np.float32), e.astype(np.float32), "wb",
                 on_error=PesqError.RETURN_VALUES)
    return float(score) if score >= 0 else float("nan")


def stoi(clean: Any, estimate: Any, sample_rate: int) -> float:
    """Short-time objective intelligibility, 0 to 1 (pystoi resamples to 10 kHz itself)."""
    from pystoi import stoi as _stoi

    s, e = align(clean, estimate)
    return float(_stoi(s, e, sample_rate, extended=False))


SLOW = ("pesq", "stoi")  # the measures that take a good fraction of a second per utterance


def speech_scores(clean: list[Any], estimates: list[Any], sample_rate: int, *, slow: tuple[str, ...] = SLOW,
                  slow_n: int | None = None) -> dict[str, float]:
    """Mean SNR and SI-SDR over every (clean, estimate) pair, and the `slow` measures (of
    "pesq", "stoi") over the first `slow_n` pairs only (None: all; 0: none). Means skip NaN
    (PESQ finds no speech in some files)."""
    if len(clean) != len(estimates):
        raise ValueError(f"speech_scores: {len(clean)} references but {len(estimates)} estimates")
    measures = {"snr_db": lambda c, e: snr_db(c, e), "si_sdr_db": lambda c, e: si_sdr(c, e),
                "pesq": lambda c, e: pesq_wb(c, e, sample_rate), "stoi": lambda c, e: stoi(c, e, sample_rate)}
    n = len(clean) if slow_n is None else min(slow_n, len(clean))
    out = {}
    for name, measure in measures.items():
        if name in SLOW and (name not in slow or n == 0):
            continue
        count = n if name in SLOW else len(clean)
        out[name] = float(np.nanmean([measure(c, e) for c, e in zip(clean[:count], estimates[:count])]))
    return out
