"""Frame-wise denoisers on STFT magnitudes: their checkpoint format and inference on a wave.

A checkpoint is self-contained: the model's registry name and keyword arguments, its weights,
and the STFT settings it works with (tensors and plain values only, so it loads with
`weights_only=True`). A `denoise` run keeps one per model family as `models/<family>.pt`.
Inference rebuilds the waveform from the estimated magnitude with the noisy phase: on a wave
in memory (`denoise_blocks`, `Denoiser.denoise`) or streamed from file to file in bounded
memory (`denoise_file`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlslab import atomic
from dlslab.audio.io import AudioWriter, LevelCheck, audio_info, read_blocks, resample
from dlslab.audio.masks import phase_sensitive_target
from dlslab.audio.stft import magphase, reconstruct, stft
from dlslab.errors import BadFileError, UsageError
from dlslab.models import all_models, build_model
from dlslab.runs import expect_checkpoint, safe_torch_load

BLOCK_FRAMES = 2048  # STFT frames per block (about 65 s of audio at 16 kHz, hop 512)
CHECKPOINT_KEYS = ("model", "kwargs", "state_dict", "sample_rate", "n_fft", "hop")
RESAMPLE_PAD = 256  # extra samples each side of a streamed block: covers the resampling filter
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
    """(model in eval mode, its STFT settings) from a checkpoint of `save_denoiser`; a
    checkpoint of another kind is a BadFileError that says what the file is."""
    state = expect_checkpoint(safe_torch_load(Path(path)), path, keys=CHECKPOINT_KEYS,
                              expected="a denoising checkpoint written by `dlslab run denoise` (RUN/models/FAMILY.pt)")
    name, kwargs = state["model"], state["kwargs"]
    if not (isinstance(name, str) and name.startswith("denoise_") and name in all_models()
            and isinstance(kwargs, dict) and isinstance(state["state_dict"], dict)):
        raise BadFileError(f"{path}: this file holds model {name!r}, not one of the denoisers "
                           f"({', '.join(n for n in sorted(all_models()) if n.startswith('denoise_'))})")
    try:
        spec = StftSpec(int(state["sample_rate"]), int(state["n_fft"]), int(state["hop"]))
        if min(spec.sample_rate, spec.n_fft, spec.hop) < 1:
            raise ValueError(f"non-positive STFT settings {spec}")
        model = build_model(name, **kwargs)
        model.load_state_dict(state["state_dict"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise BadFileError(f"{path}: a denoising checkpoint whose settings or weights do not fit "
                           f"{name} ({str(exc).splitlines()[0][:200]})") from None
    return model.eval(), spec


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


def denoise_file(model: Any, spec: StftSpec, src: str | Path, dst: str | Path, *,
                 block_frames: int = BLOCK_FRAMES, strict: bool = False) -> tuple[int, int]:
    """Denoise the wav/flac `src` into the 16-bit wav `dst` at `src`'s rate, streaming: each
    block of samples is read with enough of its neighbours for the STFT, the model's
    context and resampling, denoised at the model's rate and written; memory is one block,
    whatever the file's length. At the model's rate the result equals `denoise_blocks` on
    the whole file. `dst` appears only when every block is written. Returns (frames, rate)."""
    info = audio_info(src)
    rate = info.samplerate
    # Blocks start on a grid of U input samples that map to whole hops at the model's rate,
    # so every block's resampled samples and STFT frames fall on the whole file's own.
    ratio = Fraction(spec.sample_rate, rate)
    unit = ratio.denominator * spec.hop // math.gcd(ratio.numerator, spec.hop)
    margin = (-(-spec.n_fft // spec.hop) + model.context) * spec.hop / ratio  # input samples each side
    pad = -(-math.ceil(margin + (RESAMPLE_PAD if ratio != 1 else 0)) // unit) * unit
    block = max(1, round(block_frames * spec.hop / ratio / unit)) * unit
    level = LevelCheck()
    with AudioWriter(dst, rate) as out:
        for start, span in read_blocks(src, block, pad):
            lo = max(0, start - pad)
            own = slice(start - lo, start - lo + min(block, info.frames - start))
            level.add(span[own])
            work = resample(span, rate, spec.sample_rate)
            clean = resample(denoise_wave(model, work, spec.n_fft, spec.hop), spec.sample_rate, rate)
            out.write(np.pad(clean, (0, max(0, len(span) - len(clean))))[own])
        level.finish(f"audio file {src}", strict=strict)
    return info.frames, rate


class Denoiser:
    """A trained denoiser, for use from Python:

        den = dlslab.Denoiser.from_run("runs/denoise/...")   # or a models/FAMILY.pt file
        clean = den.denoise(noisy_wave, 44100)               # same length and rate as the input
        den.denoise_file("long.flac", "clean.wav")           # streamed, bounded memory
    """

    def __init__(self, model: Any, spec: StftSpec, path: Path):
        self.model, self.spec, self.path = model, spec, path

    @classmethod
    def from_run(cls, path: str | Path, family: str | None = None) -> Denoiser:
        """The model of a `dlslab run denoise` folder (its best family, or `family`), or a checkpoint file."""
        ckpt = find_checkpoint(path, family)
        return cls(*load_denoiser(ckpt), ckpt)

    @property
    def sample_rate(self) -> int:
        """The rate the model works at; any other rate is resampled to it and back."""
        return self.spec.sample_rate

    def denoise(self, wave: np.ndarray, rate: int) -> np.ndarray:
        """The denoised `wave` (T,) mono at `rate` Hz, as float32 of the same length."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise UsageError(f"denoise takes a mono wave of shape (T,), got shape {wave.shape}; mix it down first")
        work = resample(wave, rate, self.spec.sample_rate)
        clean = denoise_blocks(self.model, work, self.spec.n_fft, self.spec.hop)
        out = resample(clean, self.spec.sample_rate, rate)[: len(wave)]
        return np.pad(out, (0, len(wave) - len(out)))

    def denoise_file(self, src: str | Path, dst: str | Path, *, strict: bool = False) -> Path:
        """Stream `src` (wav/flac) through the model into the wav `dst`; see `denoise_file`."""
        denoise_file(self.model, self.spec, src, dst, strict=strict)
        return Path(dst)


def oracle_wave(noisy: np.ndarray, clean: np.ndarray, n_fft: int, hop: int, phase_sensitive: bool = False) -> np.ndarray:
    """Clean magnitude with the noisy phase, or (`phase_sensitive`) the clean spectrum's
    projection on the noisy phase, floored at 0: the best any magnitude-only model can do
    with the noisy phase, and what the phase-sensitive target trains for."""
    s, x = stft(_as_tensor(clean), n_fft, hop), stft(_as_tensor(noisy), n_fft, hop)
    _, phase = magphase(x)
    est = phase_sensitive_target(s, x).clamp_min(0) if phase_sensitive else s.abs()
    return reconstruct(est, phase, n_fft, hop, length=len(noisy)).numpy()
