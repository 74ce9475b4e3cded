"""Denoising speed: `dlslab denoise`'s block path vs a plain frame-by-frame loop, one process.

Each denoise model at the study's default size (random weights: speed does not depend on
them) denoises the same noisy audio (white noise at 16 kHz, default 60 s) (a) with
`dlslab.audio.denoise.denoise_blocks` (one STFT per block, every frame's context window
gathered by indexing, the model run on 1024 frames at a time) and (b) in the style of a
course notebook: a Python loop over frames, each window sliced and run through the model
alone. Prints the real-time factor of each (audio seconds per wall second), the speed-up,
and checks the two outputs agree.

    python benchmarks/denoise_speed.py [--seconds 60] [--json out.json]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dlslab.audio.stft import magphase, reconstruct, stft
from dlslab.audio.denoise import denoise_blocks
from dlslab.models import build_model
from common import machine, timed, write_json

RATE, N_FFT, HOP = 16000, 1024, 512
FAMILIES = ("denoise_mlp", "denoise_cnn1d", "denoise_cnn2d")


@torch.no_grad()
def plain(model: torch.nn.Module, wave: np.ndarray) -> np.ndarray:
    mag, phase = magphase(stft(torch.from_numpy(wave), N_FFT, HOP))  # (bins, frames)
    padded = torch.cat([torch.zeros(mag.shape[0], model.context), mag], 1)
    est = torch.stack([model(padded[:, t:t + model.context + 1].T[None])[0, 0]
                       for t in range(mag.shape[1])], 1)  # one frame at a time
    return reconstruct(est, phase, N_FFT, HOP, length=len(wave)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of audio to denoise")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    wave = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * RATE))).astype(np.float32)
    result: dict = {"machine": machine(), "audio_seconds": args.seconds}
    for name in FAMILIES:
        torch.manual_seed(0)
        model = build_model(name).eval()
        denoise_blocks(model, wave[: RATE], N_FFT, HOP)  # warm-up
        t_ours, ours = timed(denoise_blocks, model, wave, N_FFT, HOP)
        t_plain, base = timed(plain, model, wave)
        result[name] = {"ours_s": round(t_ours, 3), "plain_s": round(t_plain, 3),
                        "ours_x_realtime": round(args.seconds / t_ours, 1),
                        "plain_x_realtime": round(args.seconds / t_plain, 1),
                        "ratio": round(t_plain / t_ours, 1),
                        "max_abs_diff": float(np.max(np.abs(ours - base)))}
    write_json(args.json, result)
    print(f"machine: {result['machine']}; {args.seconds:.0f} s of 16 kHz audio")
    print(f"{'model':<15} {'ours x RT':>10} {'plain x RT':>11} {'ratio':>7} {'max |diff|':>11}")
    for name in FAMILIES:
        r = result[name]
        print(f"{name:<15} {r['ours_x_realtime']:>10.1f} {r['plain_x_realtime']:>11.1f} "
              f"{r['ratio']:>6.1f}x {r['max_abs_diff']:>11.1e}")


if __name__ == "__main__":
    main()
