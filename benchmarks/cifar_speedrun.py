"""CIFAR-10 speed record: the airbench94-class recipe (`dlslab.train.cifar`) on full CIFAR-10.

Target: mean test accuracy >= 94.0% over 3 seeds, each run <= 15 minutes wall on 2 idle CPU
cores, and <= 1.5x the run's arithmetic floor. airbench94 (K. Jordan) reaches 94.01% (n=1000)
with about 0.36 PFLOP per run; this is our own code for the same recipe, on our engine.

Per seed it prints a fixed-width table per epoch (train loss, plain accuracy on `--eval-size`
test images, seconds), then the accuracy on all 10,000 test images with multi-view TTA, the
training seconds to 90/93/94% (the first epoch whose plain accuracy reached it, or the whole
run when only the final TTA score did; evaluation seconds excluded), wall and process CPU
seconds. Then the machine figures measured in the same process: bf16 and fp32 matmul peak
and the bf16 channels-last 3x3 convolution throughput; the run's FLOPs (counted by torch's
FlopCounterMode on one training step and one TTA forward, times the images); the achieved
TFLOP/s; and the floor = FLOPs / convolution throughput, with wall / floor. Last: mean ± std
over `--seeds` seeds, and `--json PATH` writes every figure.

    python benchmarks/cifar_speedrun.py [--seeds 3] [--epochs 10] [--json out.json]
    python benchmarks/cifar_speedrun.py --train-images 5000 --epochs 2   # a quick check
    python benchmarks/cifar_speedrun.py --set holdout=0.1   # score 5,000 held-out training images
    torchrun --standalone --nproc_per_node 2 benchmarks/cifar_speedrun.py   # data-parallel
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import conv_peak_gflops, machine, matmul_peak_gflops, sync, write_json
from dlslab.config import apply_overrides, parse_set_args
from dlslab.data.images import load_images
from dlslab.report.stats import format_mean_std, mean_std
from dlslab.seeding import derive
from dlslab.train.augment import Augmenter, tta_logits, tta_views
from dlslab.train.cifar import (CifarRecipe, autocast, build_model, check_recipe, make_loss, steps_plan, study_tensors,
                                train_cifar)
from dlslab.train.ddp import init_process_group, launched_by_torchrun

TARGETS = (0.90, 0.93, 0.94)
TARGET_ACC, TARGET_S, TARGET_FLOOR = 0.94, 900.0, 1.5


def flops_per_image(cfg: CifarRecipe, device: torch.device) -> tuple[float, float]:
    """(training step FLOPs, TTA forward FLOPs) per image, counted on a batch of 64."""
    model = build_model(cfg, 10, device)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device=device)
    batch = Augmenter("flip-crop", 10, crop_pad=cfg.translate)([x, torch.arange(64, device=device) % 10])
    with FlopCounterMode(display=False) as train:
        loss, _ = make_loss(cfg, device)(model, *batch)
        loss.backward()
    model.eval()
    with FlopCounterMode(display=False) as tta, torch.no_grad(), autocast(cfg, device):
        tta_logits(model, batch[0], cfg.tta)
    return train.get_total_flops() / 64, tta.get_total_flops() / 64


def time_to(curve: list[tuple[float, float]], final_acc: float, final_s: float, target: float) -> float | None:
    """Training seconds to `target`: the first epoch (cumulative seconds, accuracy) that
    reached it, else the whole run if the final TTA accuracy did, else None."""
    hit = next((s for s, acc in curve if acc >= target), None)
    return hit if hit is not None else (final_s if final_acc >= target else None)


def one_run(cfg: CifarRecipe, train: tuple, test: tuple, seed: int, rank: int, distributed: bool) -> dict:
    device = train[0].device
    curve: list[tuple[float, float]] = []
    trained_s = [0.0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    if rank == 0:
        print(f"{'epoch':>5} {'train_loss':>10} {'test_acc':>8} {'train_s':>8} {'wall_s':>7}")

    def show(epoch: int, record: dict[str, float]) -> None:
        trained_s[0] += record["epoch_s"] - record.get("eval_s", 0.0)
        curve.append((trained_s[0], record.get("test_acc", float("nan"))))
        if rank == 0:
            print(f"{epoch:>5} {record['train_loss']:>10.4f} {record.get('test_acc', float('nan')):>8.4f} "
                  f"{trained_s[0]:>8.1f} {time.perf_counter() - t0:>7.1f}", flush=True)

    torch.manual_seed(seed)
    model = build_model(cfg, 10, device, whiten=train[0])
    out = train_cifar(cfg, model, train, test, policy="flip-crop", seed=seed, run=None, name="speedrun",
                      num_classes=10, verbose=False, data_parallel=distributed, on_epoch_end=show)
    sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    tta_s = wall - sum(r["epoch_s"] for r in out.history.epochs)  # whitening set-up + final TTA scoring
    final_s = trained_s[0] + tta_s
    return {"seed": seed, "test_acc": round(out.test_acc, 4), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "train_s": round(trained_s[0], 1), "steps": out.steps, "batch_size": out.batch_size,
            "epoch_acc": [round(a, 4) for _, a in curve],
            **{f"time_to_{round(t * 100)}_s": (None if (v := time_to(curve, out.test_acc, final_s, t)) is None
                                               else round(v, 1)) for t in TARGETS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="runs, each with its own seed")
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed index (to add seeds to earlier runs)")
    parser.add_argument("--epochs", type=int, default=CifarRecipe.epochs)
    parser.add_argument("--train-images", type=int, default=50000, help="train on the first N images (a quick check)")
    parser.add_argument("--eval-size", type=int, default=10000, help="test images scored (plainly) after every epoch")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a CifarRecipe field (repeatable), e.g. holdout=0.1 to score held-out training "
                             "images instead of the test set (for choosing settings)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    distributed = launched_by_torchrun()
    rank = init_process_group(device)[0] if distributed else 0
    cfg = CifarRecipe(epochs=args.epochs, min_steps=0, eval_size=args.eval_size, test_size=10000)
    cfg = apply_overrides(cfg, parse_set_args(args.set))
    check_recipe(cfg)
    data = load_images("cifar10")
    train, test, scored = study_tensors(data, cfg, device)
    train = (train[0][:args.train_images], train[1][:args.train_images])

    runs = [one_run(cfg, train, test, derive(0, "speedrun", i), rank, distributed)
            for i in range(args.first_seed, args.first_seed + args.seeds)]
    if rank != 0:
        return
    train_flops, tta_flops = flops_per_image(cfg, device)
    batch, epochs, per_epoch = steps_plan(len(train[0]), cfg)
    plain_flops = tta_flops / len(tta_views(test[0][:1], cfg.tta))  # one view: the per-epoch scoring
    flops = (train_flops * batch * per_epoch * epochs + tta_flops * len(test[0])
             + plain_flops * min(cfg.eval_size, len(test[0])) * epochs)
    peaks = {"matmul_bf16_gflops": round(matmul_peak_gflops(2048, 5, torch.bfloat16)),
             "matmul_fp32_gflops": round(matmul_peak_gflops(2048, 5)),
             "conv3x3_bf16_channels_last_gflops": round(conv_peak_gflops(device=device.type))}
    floor = flops / (peaks["conv3x3_bf16_channels_last_gflops"] * 1e9)
    walls = [r["wall_s"] for r in runs]
    accs = [r["test_acc"] for r in runs]
    result = {
        "machine": f"{machine()}, {device.type}", "load_average_1min": round(os.getloadavg()[0], 2),
        "processes": int(os.environ.get("WORLD_SIZE", "1")), "epochs": cfg.epochs, "train_images": len(train[0]),
        "data_note": data.note, "scored": scored, "recipe_overrides": args.set, "runs": runs, **peaks,
        "train_gflop_per_image": round(train_flops / 1e9, 4), "run_pflop": round(flops / 1e15, 4),
        "achieved_tflops": round(flops / mean_std(walls)[0] / 1e12, 3), "floor_s": round(floor, 1),
        "wall_over_floor": round(mean_std(walls)[0] / floor, 2),
        "test_acc_mean": round(mean_std(accs)[0], 4), "test_acc_std": round(mean_std(accs)[1], 4),
        "wall_s_mean": round(mean_std(walls)[0], 1),
    }
    # the targets are on the test set: a held-out score (holdout > 0) neither meets nor misses them
    result["met"] = None if cfg.holdout > 0 else (result["test_acc_mean"] >= TARGET_ACC and max(walls) <= TARGET_S
                                                  and result["wall_over_floor"] <= TARGET_FLOOR)
    write_json(args.json, result)
    print(f"machine: {result['machine']}; 1-min load average {result['load_average_1min']}; "
          f"data: {data.note or 'canonical'}")
    print(f"scored: {scored}" + (f"; recipe overrides: {' '.join(args.set)}" if args.set else ""))
    print(f"peaks: matmul bf16 {peaks['matmul_bf16_gflops']} GFLOP/s, fp32 {peaks['matmul_fp32_gflops']} GFLOP/s; "
          f"conv 3x3 bf16 channels-last {peaks['conv3x3_bf16_channels_last_gflops']} GFLOP/s")
    print(f"run: {result['run_pflop']} PFLOP ({result['train_gflop_per_image']} GFLOP per training image); "
          f"floor {floor:.1f} s; achieved {result['achieved_tflops']} TFLOP/s")
    print(f"{'seed':>20} {'test_acc':>8} {'wall_s':>7} {'cpu_s':>7} {'to 90%':>7} {'to 93%':>7} {'to 94%':>7} {'wall/floor':>10}")
    for r in runs:
        print(f"{r['seed']:>20} {r['test_acc']:>8.4f} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} "
              + " ".join(f"{'-' if r[k] is None else r[k]:>7}" for k in ("time_to_90_s", "time_to_93_s", "time_to_94_s"))
              + f" {r['wall_s'] / floor:>10.2f}")
    print(f"test accuracy {format_mean_std(accs, 4)}, wall {format_mean_std(walls, 1)} s over n={len(runs)} "
          f"(± is the sample std); target >= {TARGET_ACC} mean, <= {TARGET_S:.0f} s each, <= {TARGET_FLOOR}x floor: "
          f"{'not judged (held-out score)' if result['met'] is None else 'met' if result['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
