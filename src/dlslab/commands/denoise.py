"""`dlslab denoise IN.wav -o OUT.wav --model RUN_DIR|CHECKPOINT`: denoise any audio file.

The file is read at any rate, resampled to the model's rate, denoised in blocks of frames
(each block carries the model's context frames from the one before, so the result equals
denoising the whole file at once, with memory bounded by the block size), and resampled
back to the input's rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlslab.errors import DataError, UsageError

BLOCK_FRAMES = 2048  # STFT frames per block (about 65 s of audio at 16 kHz, hop 512)
PREFERRED = ("cnn2d", "cnn1d", "mlp")  # the model picked from a run folder when none is named


def find_checkpoint(model: str, family: str | None = None) -> Path:
    """The checkpoint file: `model` itself, or RUN_DIR/models/<family>.pt."""
    path = Path(model)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UsageError(f"--model {model}: no such run folder or checkpoint file")
    folder = path / "models"
    names = [family] if family else [n for n in PREFERRED if (folder / f"{n}.pt").is_file()]
    if not names or not (folder / f"{names[0]}.pt").is_file():
        have = sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []
        raise UsageError(f"{path} holds no denoising model {family or ''}".rstrip() + " (looked in "
                         f"{folder}; found: {', '.join(have) or 'none'}). Give a `dlslab run denoise` folder.")
    return folder / f"{names[0]}.pt"


def load_denoiser(path: Path) -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, its STFT settings) from a checkpoint written by the denoise study."""
    from dlslab.models import build_model
    from dlslab.runs import safe_torch_load

    state = safe_torch_load(path)
    if not isinstance(state, dict) or not {"model", "kwargs", "state_dict"} <= state.keys():
        raise DataError(f"{path} is not a denoising checkpoint written by `dlslab run denoise`")
    model = build_model(state["model"], **state["kwargs"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), {k: int(state[k]) for k in ("sample_rate", "n_fft", "hop")}


@torch.no_grad()
def denoise_blocks(model: Any, wave: np.ndarray, n_fft: int, hop: int, block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """The denoised waveform of `wave`, computed block by block.

    The STFT of one block of samples gives its frames; the block's first frames see the
    previous block's last `context` frames, and overlapping samples are cut so that the
    output equals a single pass over the whole file.
    """
    from dlslab.audio.stft import magphase, reconstruct, stft

    n = len(wave)
    block = block_frames * hop
    margin = -(-n_fft // hop) * hop  # overlap (whole hops) so frames at a block edge see all their input
    ctx = model.context * hop
    out = np.zeros(n, dtype=np.float32)
    for start in range(0, n, block):
        lo = max(0, start - ctx - margin)
        hi = min(n, start + block + margin)
        spec = stft(torch.from_numpy(np.ascontiguousarray(wave[lo:hi])), n_fft, hop)
        mag, phase = magphase(spec)  # (bins, frames)
        est = model.denoise_frames(mag.T)  # (frames, bins)
        piece = reconstruct(est.T, phase, n_fft, hop, length=hi - lo).numpy()
        out[start:min(n, start + block)] = piece[start - lo:start - lo + min(block, n - start)]
    return out


def cmd_denoise(args: argparse.Namespace) -> int:
    from dlslab.audio.io import read_audio, resample, write_audio

    path = find_checkpoint(args.model, args.family)
    model, stft_cfg = load_denoiser(path)
    t0 = time.perf_counter()
    wave, rate = read_audio(args.input)
    work = resample(wave, rate, stft_cfg["sample_rate"])
    clean = denoise_blocks(model, work, stft_cfg["n_fft"], stft_cfg["hop"], args.block_frames)
    out = resample(clean, stft_cfg["sample_rate"], rate)[: len(wave)]
    written = write_audio(args.output, out, rate)
    seconds = time.perf_counter() - t0
    print(f"denoised {len(wave) / rate:.1f} s of audio in {seconds:.2f} s "
          f"({len(wave) / rate / max(seconds, 1e-9):.0f}x real time) with {path}")
    print(f"output: {written}")
    return 0


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("denoise", help="denoise an audio file with a trained denoise model",
                              description="Denoise IN (wav/flac, any rate and length) with a model "
                                          "from `dlslab run denoise`; OUT is written at IN's rate.")
    p.add_argument("input", metavar="IN", help="noisy audio file (wav or flac)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the denoised wav")
    p.add_argument("--model", required=True, metavar="RUN_DIR|CHECKPOINT",
                   help="a denoise run folder (uses its best family: cnn2d, cnn1d, then mlp) or a .pt file")
    p.add_argument("--family", choices=PREFERRED, help="which model of a run folder to use")
    p.add_argument("--block-frames", type=int, default=BLOCK_FRAMES,
                   help=f"STFT frames per block: bounds memory for long files (default {BLOCK_FRAMES})")
    p.set_defaults(func=cmd_denoise)
