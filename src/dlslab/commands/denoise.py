"""`dlslab denoise IN.wav -o OUT.wav --model RUN_DIR|CHECKPOINT`: denoise any audio file.

The file is read at any rate, resampled to the model's rate, denoised in blocks of frames
(each block carries the model's context frames from the one before, so the result equals
denoising the whole file at once, with memory bounded by the block size), and resampled
back to the input's rate.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from dlslab.audio.denoise import BLOCK_FRAMES, PREFERRED, denoise_blocks, find_checkpoint, load_denoiser
from dlslab.audio.io import read_audio, resample, write_audio


def cmd_denoise(args: argparse.Namespace) -> int:
    path = find_checkpoint(args.model, args.family)
    model, spec = load_denoiser(path)
    t0 = time.perf_counter()
    wave, rate = read_audio(args.input)
    work = resample(wave, rate, spec.sample_rate)
    clean = denoise_blocks(model, work, spec.n_fft, spec.hop, args.block_frames)
    out = resample(clean, spec.sample_rate, rate)[: len(wave)]
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
