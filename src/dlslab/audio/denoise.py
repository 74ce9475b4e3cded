"""Frame-wise denoisers on STFT magnitudes: their checkpoint format and inference on a wave.

A checkpoint is self-contained: the model's registry name and keyword arguments, its weights,
and the STFT settings it works with (tensors and plain values only, so it loads with
`weights_only=True`). A `denoise` run keeps one per model family as `models/<family>.pt`.
Inference rebuilds the waveform from the estimated magnitude with the noisy phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlslab import atomic
from dlslab.audio.masks import phase_sensitive_target
from dlslab.audio.stft import magphase, reconstruct, stft
from dlslab.errors import DataError, UsageError
from dlslab.models import build_model
from dlslab.runs import safe_torch_load

BLOCK_FRAMES = 2048  # STFT frames per block (about 65 s of audio at 16 kHz, hop 512)
PREFERRED = ("cnn2d", "cnn1d", "mlp")  # the family picked from a run folder when none is named


@dataclass(frozen=True)
class StftSpec:
    """The rate and STFT a denoiser works with."""

    sample_rate: int = 16000  # Hz
    n_fft: int = 1024  # window length (bins = n_fft // 2 + 1)
    hop: int = 512  # hop in samples


# --- the checkpoint format -----------------------------------------------------------------------


def save_denoiser(path: str | Path, model: torch.nn.Module, registry_name: str, kwargs: dict[str, Any],
                  spec: StftSpec) -> None:
    """Write `model` (built as `build_model(registry_name, **kwargs)`) with its STFT settings."""
    state = {"model": registry_name, "kwargs": kwargs, "state_dict": model.state_dict(),
             "sample_rate": spec.sample_rate, "n_fft": spec.n_fft, "hop": spec.hop}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(Path(path), lambda f: torch.save(state, f))


def load_denoiser(path: str | Path) -> tuple[Any, StftSpec]:
    """(model in eval mode, its STFT settings) from a checkpoint of `save_denoiser`."""
    state = safe_torch_load(Path(path))
    if not isinstance(state, dict) or not {"model", "kwargs", "state_dict"} <= state.keys():
        raise DataError(f"{path} is not a denoising checkpoint written by `dlslab run denoise`")
    model = build_model(state["model"], **state["kwargs"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), StftSpec(int(state["sample_rate"]), int(state["n_fft"]), int(state["hop"]))


def checkpoint_path(run_dir: str | Path, family: str) -> Path:
    """Where a `denoise` run keeps the model of `family`."""
    return Path(run_dir) / "models" / f"{family}.pt"


def find_checkpoint(model: str | Path, family: str | None = None) -> Path:
    """The checkpoint file: `model` itself, or the run folder's model of `family` (default:
    the first of PREFERRED it holds)."""
    path = Path(model)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UsageError(f"--model {model}: no such run folder or checkpoint file")
    names = [family] if family else [n for n in PREFERRED if checkpoint_path(path, n).is_file()]
    if not names or not checkpoint_path(path, names[0]).is_file():
        folder = checkpoint_path(path, "x").parent
        have = sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []
        raise UsageError(f"{path} holds no denoising model {family or ''}".rstrip() + " (looked in "
                         f"{folder}; found: {', '.join(have) or 'none'}). Give a `dlslab run denoise` folder.")
    return checkpoint_path(path, names[0])


# --- inference on a wave -------------------------------------------------------------------------


def _as_tensor(wave: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


@torch.no_grad()
def denoise_wave(model: Any, noisy: np.ndarray, n_fft: int, hop: int,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """The model's estimate of the clean waveform of `noisy` (same length, same rate), in one pass."""
    mag, phase = magphase(stft(_as_tensor(noisy).to(device), n_fft, hop))  # (bins, frames)
    est = model.denoise_frames(mag.T)  # (frames, bins)
    return reconstruct(est.T, phase, n_fft, hop, length=len(noisy)).cpu().numpy()


@torch.no_grad()
def denoise_blocks(model: Any, wave: np.ndarray, n_fft: int, hop: int, block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """`denoise_wave` block by block, with memory bounded by the block size.

    The STFT of one block of samples gives its frames; the block's first frames see the
    previous block's last `context` frames, and overlapping samples are cut so that the
    output equals a single pass over the whole file.
    """
    n = len(wave)
    block = block_frames * hop
    margin = -(-n_fft // hop) * hop  # overlap (whole hops) so frames at a block edge see all their input
    ctx = model.context * hop
    out = np.zeros(n, dtype=np.float32)
    for start in range(0, n, block):
        lo, hi = max(0, start - ctx - margin), min(n, start + block + margin)
        piece = denoise_wave(model, wave[lo:hi], n_fft, hop)
        out[start:min(n, start + block)] = piece[start - lo:start - lo + min(block, n - start)]
    return out


def oracle_wave(noisy: np.ndarray, clean: np.ndarray, n_fft: int, hop: int, phase_sensitive: bool = False) -> np.ndarray:
    """Clean magnitude with the noisy phase, or (`phase_sensitive`) the clean spectrum's
    projection on the noisy phase, floored at 0: the best any magnitude-only model can do
    with the noisy phase, and what the phase-sensitive target trains for."""
    s, x = stft(_as_tensor(clean), n_fft, hop), stft(_as_tensor(noisy), n_fft, hop)
    _, phase = magphase(x)
    est = phase_sensitive_target(s, x).clamp_min(0) if phase_sensitive else s.abs()
    return reconstruct(est, phase, n_fft, hop, length=len(noisy)).numpy()
