"""`dlslab denoise IN.wav -o OUT.wav --model RUN_DIR|CHECKPOINT`: denoise any audio file.

The file is streamed: read block by block (each block with the neighbouring samples its STFT
frames, the model's context and the resampling need), resampled to the model's rate,
denoised, resampled back and written to a temporary wav that replaces OUT at the end. Memory
is one block whatever the file's length. A clipped recording is processed with a warning
(`--strict` refuses it).
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def cmd_denoise(args: argparse.Namespace) -> int:
    from dlslab.audio.denoise import BLOCK_FRAMES, Denoiser, denoise_file
    from dlslab.audio.io import AudioWarning
    from dlslab.commands import warnings_to_stderr, writable_output
    from dlslab.errors import UsageError

    block_frames = BLOCK_FRAMES if args.block_frames is None else args.block_frames
    if block_frames < 1:
        raise UsageError(f"--block-frames {block_frames}: must be >= 1")
    output = writable_output(args.output)
    den = Denoiser.from_run(args.model, args.family)
    t0 = time.perf_counter()
    with warnings_to_stderr(AudioWarning):
        frames, rate = denoise_file(den.model, den.spec, args.input, output, block_frames=block_frames,
                                    strict=args.strict)
    seconds = time.perf_counter() - t0
    print(f"denoised {frames / rate:.1f} s of audio in {seconds:.2f} s "
          f"({frames / rate / max(seconds, 1e-9):.0f}x real time) with {den.path}")
    print(f"output: {output}")
    return 0


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("denoise", help="denoise an audio file with a trained denoise model",
                              description="Denoise IN (wav/flac, any rate and length, streamed) with a model "
                                          "from `dlslab run denoise`; OUT is a 16-bit wav at IN's rate.")
    p.add_argument("input", metavar="IN", help="noisy audio file (wav or flac)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the denoised wav")
    p.add_argument("--model", required=True, metavar="RUN_DIR|CHECKPOINT",
                   help="a denoise run folder (uses its best family: cnn2d, cnn1d, then mlp) or a .pt file")
    p.add_argument("--family", metavar="FAMILY", help="which model of a run folder to use: cnn2d, cnn1d or mlp")
    p.add_argument("--block-frames", type=int, default=None,
                   help="STFT frames per streamed block: bounds memory (default 2048, about 65 s at 16 kHz)")
    p.add_argument("--strict", action="store_true", help="refuse a clipped recording instead of warning")
    p.set_defaults(func=cmd_denoise)
