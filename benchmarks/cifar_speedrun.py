"""CIFAR-10 speed record on a CPU: the residual CNN to >= 85% test accuracy in <= 10 minutes.

A CPU-sized member of `dlslab.models.resnet.ResNetFast` (widths 16-32-64-128, residual pairs
on the first and last stage, ~58 MFLOP per image forward), trained with dlslab's path: uint8
images in memory, batched flip + crop (pad 4) on the device, channels-last, bfloat16 autocast
(AMX/AVX-512 on recent x86), SGD with Nesterov momentum, linear warm-up and decay, label
smoothing 0.2, flip test-time augmentation. Target: 2 CPU cores, full CIFAR-10, 10 minutes.

It prints a fixed-width table per epoch (a 1000-image test score), then the exact final test
accuracy on all 10,000 test images, the wall time and the process CPU time (on a shared
machine wall time lies; CPU time / cores is what an idle machine would take). The plain
baseline (the same network through a per-sample DataLoader pipeline, float32) is timed over
`--baseline-steps` steps in the same process and projected to the same number of epochs.

    python benchmarks/cifar_speedrun.py [--epochs 15] [--json out.json]
    torchrun --standalone --nproc_per_node 2 benchmarks/cifar_speedrun.py   # data-parallel
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from cifar_epoch import RECIPE, PerSampleCifar
from dlslab.data.images import load_images
from dlslab.train.cifar import CifarRecipe, accuracy, build_model, device_tensors, train_cifar
from dlslab.train.ddp import init_process_group, launched_by_torchrun
from common import machine, write_json

TARGET_ACC, TARGET_S = 0.85, 600.0


def plain_seconds_per_image(x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Seconds per training image of the plain pipeline, from `steps` timed steps."""
    cfg = CifarRecipe(**RECIPE, bf16=False)
    model = build_model(cfg, 10, torch.device("cpu")).to(memory_format=torch.contiguous_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loader = iter(torch.utils.data.DataLoader(PerSampleCifar(x, y), batch_size=cfg.batch_size, shuffle=True))
    t0, seen = time.perf_counter(), 0
    for _ in range(steps):
        xb, yb = next(loader)
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(xb)
    return (time.perf_counter() - t0) / seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--policy", default="flip-crop")
    parser.add_argument("--baseline-steps", type=int, default=10, help="0 skips the plain baseline")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    distributed = launched_by_torchrun()
    rank = init_process_group(device)[0] if distributed else 0
    cfg = CifarRecipe(**RECIPE, epochs=args.epochs, eval_size=1000, test_size=10000, tta=True)
    data = load_images("cifar10")
    train, test = device_tensors(data, device)
    if rank == 0:
        print(f"{'epoch':>5} {'train_loss':>10} {'test_acc@1k':>11} {'seconds':>8}")
    t0, cpu0 = time.perf_counter(), time.process_time()

    def show(epoch: int, record: dict[str, float]) -> None:
        if rank == 0:
            print(f"{epoch:>5} {record['train_loss']:>10.4f} {record.get('test_acc', float('nan')):>11.4f} "
                  f"{time.perf_counter() - t0:>8.1f}", flush=True)

    torch.manual_seed(0)
    model = build_model(cfg, 10, device)
    out = train_cifar(cfg, model, train, test, policy=args.policy, seed=0, run=None, name="speedrun",
                      num_classes=10, verbose=False, data_parallel=distributed, on_epoch_end=show)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if rank != 0:
        return
    test_acc = accuracy(model, test[0], test[1], cfg)
    images = out.steps * min(cfg.batch_size, len(train[0]))
    result = {
        "machine": f"{machine()}, {device.type}",
        "processes": int(os.environ.get("WORLD_SIZE", "1")), "epochs": args.epochs, "policy": args.policy,
        "data_note": data.note, "test_acc": round(test_acc, 4), "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1), "load_average_1min": round(os.getloadavg()[0], 2),
        "images_per_s": round(images / seconds),
    }
    result["met"] = test_acc >= TARGET_ACC and seconds <= TARGET_S
    if args.baseline_steps:
        per_image = plain_seconds_per_image(data.train_x, data.train_y, args.baseline_steps)
        result["plain_projected_seconds"] = round(per_image * images, 1)
        result["ratio"] = round(result["plain_projected_seconds"] / seconds, 2)
    write_json(args.json, result)
    print(f"machine: {result['machine']}; 1-min load average {result['load_average_1min']}; data: {data.note or 'canonical'}")
    print(f"{'path':<30} {'seconds':>8} {'test acc':>9}")
    print(f"{'ours':<30} {seconds:>8.1f} {test_acc:>9.4f}")
    if args.baseline_steps:
        print(f"{'plain (projected, same steps)':<30} {result['plain_projected_seconds']:>8.1f} {'-':>9}")
        print(f"ratio ours/plain: {result['ratio']:.2f}x")
    print(f"test accuracy {test_acc:.4f} in {seconds:.1f} s wall ({cpu:.1f} s CPU); target >= {TARGET_ACC} "
          f"in <= {TARGET_S:.0f} s: {'met' if result['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
