"""LSTM batching of variable-length utterances: 10-frame chunks vs padding to the longest.

The same LSTM mask estimator (513 bins in and out), the same utterances (lengths drawn
uniformly from 1 s to 10 s of 32 ms frames, i.e. 31 to 312 frames), the same number of real
frames per update and the same optimizer, trained through `dlslab.train.engine.fit` with the
batching of `dlslab.train.sequences` (the lstm-denoise study's): (a) the baseline, random batches of whole utterances
padded to the longest in the batch, and (b) ours, the course technique, chunks of 10 frames
(only each utterance's last chunk padded) batched at random. Optionally also tbptt (chunks
in order with the state carried) and packed (length buckets + PackedSequence). Prints the
seconds per epoch and padded-frame fraction of each, the ratio, and a short table last.

    python benchmarks/lstm_batching.py [--utterances 200] [--epochs 2] [--all] [--json out.json]
"""

from __future__ import annotations

import argparse
import time

import torch

from dlslab.audio.frames import Frames
from dlslab.audio.masks import weighted_mask_loss
from dlslab.models.lstm_denoiser import LSTMDenoiser
from dlslab.train.sequences import SequenceSpec, fit_sequences, make_strategy
from common import machine, write_json

FRAMES_PER_SECOND = 16000 / 512  # hop 512 at 16 kHz


def synthetic_utterances(n: int, bins: int, seed: int) -> Frames:
    """|X|-like frames and binary targets for n utterances of 1 s to 10 s."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = round(1 * FRAMES_PER_SECOND), round(10 * FRAMES_PER_SECOND)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    mags = [torch.rand(t, bins, generator=g).square() * 10 for t in lengths]
    median = torch.cat(mags).median()
    return Frames.stack(mags, [(m > median).float() for m in mags])


def time_strategy(name: str, spec: SequenceSpec, hidden: int, layers: int, data: Frames) -> dict[str, float]:
    torch.manual_seed(0)
    model = LSTMDenoiser(data.noisy.shape[1], hidden, layers)
    model.norm.fit(data.noisy)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    strategy = make_strategy(name, data, spec, weighted_mask_loss("bce", 2.0), 0, opt)
    cpu0 = time.process_time()
    history = fit_sequences(model, strategy, opt, spec, seed=0, verbose=False)
    epochs = [e["epoch_s"] for e in history.epochs]
    return {"epoch_s": min(epochs), "epoch_s_mean": sum(epochs) / len(epochs),
            "cpu_s_per_epoch": (time.process_time() - cpu0) / spec.epochs,
            "padded_frac": strategy.padded_frac, "tensor_padded_frac": strategy.tensor_padded_frac,
            "updates_per_epoch": strategy.updates_per_epoch, "final_train_loss": history.last["train_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per strategy (the fastest is reported)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch-frames", type=int, default=1280, help="real frames per update")
    parser.add_argument("--all", action="store_true", help="also time tbptt and packed")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    spec = SequenceSpec(epochs=args.epochs, batch_frames=args.batch_frames)
    data = synthetic_utterances(args.utterances, 513, seed=0)
    names = ["pad", "chunk"] + (["tbptt", "packed"] if args.all else [])
    rows = {name: time_strategy(name, spec, args.hidden, args.layers, data) for name in names}
    result = {
        "machine": machine(),
        "utterances": args.utterances, "frames": len(data.noisy), "hidden": args.hidden, "layers": args.layers,
        "batch_frames": args.batch_frames, "strategies": rows,
        "ratio": rows["pad"]["epoch_s"] / rows["chunk"]["epoch_s"],
    }
    write_json(args.json, result)
    print(f"machine: {result['machine']}; {args.utterances} utterances, {len(data.noisy)} frames, "
          f"LSTM {args.layers}x{args.hidden}, {args.batch_frames} real frames per update")
    print(f"ratio pad/chunk seconds per epoch: {result['ratio']:.2f}x")
    print(f"{'strategy':<9} {'epoch s':>8} {'cpu s':>7} {'padded':>7} {'updates':>8}")
    for name, r in rows.items():
        print(f"{name:<9} {r['epoch_s']:>8.2f} {r['cpu_s_per_epoch']:>7.2f} {100 * r['padded_frac']:>6.1f}% "
              f"{r['updates_per_epoch']:>8.0f}")


if __name__ == "__main__":
    main()
