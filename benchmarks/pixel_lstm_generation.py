"""Autoregressive completion with the row LSTM: one batched pass vs a per-image loop.

The pixel-lstm study writes the lower 14 rows of every test digit. `RowLSTM.complete` does it
for a whole batch at once: one LSTM step per written row, for every image together. The plain
baseline calls the same method one image at a time (what a per-sample loop does). Both use the
deterministic (mean) variant, so their outputs must agree; the check is printed.

    python benchmarks/pixel_lstm_generation.py [--images 500] [--hidden 256] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import time

import torch

from dlslab.models.pixel_lstm import RowLSTM
from common import machine, write_json


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """The fastest of `repeats` runs (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images to complete")
    parser.add_argument("--hidden", type=int, default=256, help="LSTM hidden units per layer")
    parser.add_argument("--layers", type=int, default=2, help="LSTM layers")
    parser.add_argument("--batch", type=int, default=1000, help="images per batched call")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; the fastest counts")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = RowLSTM(28, args.hidden, args.layers).eval()
    upper = (torch.rand(args.images, 14, 28) < 0.2).float()  # binary upper halves
    model.complete(upper[:8], 14, sample=False)  # warm-up
    t_ours, ours = timed(lambda: torch.cat([model.complete(u, 14, sample=False) for u in upper.split(args.batch)]),
                          args.repeats)
    t_plain, plain = timed(lambda: torch.cat([model.complete(upper[i:i + 1], 14, sample=False)
                                              for i in range(args.images)]), args.repeats)
    result = {
        "machine": machine(),
        "images": args.images, "hidden": args.hidden, "layers": args.layers, "repeats": args.repeats,
        "plain_images_per_s": round(args.images / t_plain, 1), "ours_images_per_s": round(args.images / t_ours, 1),
        "plain_s": round(t_plain, 3), "ours_s": round(t_ours, 3), "ratio": round(t_plain / t_ours, 1),
        "max_abs_difference": float((ours - plain).abs().max()),
    }
    result["outputs_agree"] = result["max_abs_difference"] < 1e-4
    write_json(args.json, result)
    print(f"machine: {result['machine']}; {args.images} images, LSTM {args.layers}x{args.hidden}, 14 rows written")
    print(f"{'path':<22} {'seconds':>8} {'images/s':>10}")
    print(f"{'plain (per image)':<22} {t_plain:>8.3f} {result['plain_images_per_s']:>10,.1f}")
    print(f"{'ours (batched)':<22} {t_ours:>8.3f} {result['ours_images_per_s']:>10,.1f}")
    print(f"ratio ours/plain: {result['ratio']:.1f}x faster; outputs agree (max |diff| "
          f"{result['max_abs_difference']:.1e}): {result['outputs_agree']}")


if __name__ == "__main__":
    main()
