"""One epoch of CIFAR-10 training: dlslab's path vs a plain DataLoader pipeline, one process.

The same network (the airbench-class CNN of `cifar_speedrun.py`), the same optimizer (SGD at a
small fixed rate: only the time is measured) and the same augmentation (flip + crop with pad
4), over the same images:

- plain: a torch `Dataset` whose `__getitem__` crops, flips and normalises one image at a
  time, a `DataLoader` (shuffle, batch 256), float32, contiguous (NCHW) tensors;
- ours: uint8 images in one tensor, batches by indexing, the augmentation as batched
  tensor ops (`dlslab.train.augment`), channels-last, bfloat16 autocast, `train.engine.fit`.

A middle row (ours in float32) separates the data-pipeline gain from the arithmetic gain.
Prints images/s of each and the ratio ours/plain; `--json PATH` writes the figures.

    python benchmarks/cifar_epoch.py [--images 10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dlslab.data.images import load_images
from dlslab.train.cifar import CifarRecipe, build_model, make_loss
from dlslab.train.augment import CIFAR10_MEAN, CIFAR10_STD, Augmenter
from dlslab.train.engine import fit
from common import machine, write_json

RECIPE = dict(batch_size=512)
LR = 0.01  # plain SGD's rate in both paths (the benchmark times an epoch; it does not tune)


class PerSampleCifar(Dataset):
    """The usual per-image pipeline: pad 4 + random 32x32 crop, random flip, to float, normalise."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = nn.functional.pad(self.x[i].float().div(255).unsqueeze(0), (4, 4, 4, 4), mode="reflect")[0]
        dy, dx = torch.randint(0, 9, (2,)).tolist()
        img = img[:, dy:dy + 32, dx:dx + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return (img - self.mean) / self.std, self.y[i]


def plain_epoch(x: torch.Tensor, y: torch.Tensor, workers: int = 0) -> float:
    cfg = CifarRecipe(**RECIPE, bf16=False)
    torch.manual_seed(0)
    model = build_model(cfg, 10, torch.device("cpu")).to(memory_format=torch.contiguous_format)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR, momentum=0.9, nesterov=True)
    loader = DataLoader(PerSampleCifar(x, y), batch_size=cfg.batch_size, shuffle=True, num_workers=workers)
    model.train()
    t0 = time.perf_counter()
    for xb, yb in loader:
        loss = nn.functional.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def our_epoch(x: torch.Tensor, y: torch.Tensor, bf16: bool) -> float:
    cfg = CifarRecipe(**RECIPE, bf16=bf16)
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(cfg, 10, device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR, momentum=0.9, nesterov=True,
                          foreach=True)
    t0 = time.perf_counter()
    fit(model, (x, y), make_loss(cfg, device), optimizer=opt, epochs=1, batch_size=cfg.batch_size,
        transform=Augmenter("flip-crop"), seed=0, verbose=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000, help="training images in the epoch (50000 = all)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the plain pipeline")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    data = load_images("cifar10")
    x, y = data.train_x[:args.images], data.train_y[:args.images]
    n = len(x)
    times, cpu = {}, {}
    for key, epoch in (("plain", lambda: plain_epoch(x, y, args.workers)),
                       ("ours_fp32", lambda: our_epoch(x, y, bf16=False)), ("ours", lambda: our_epoch(x, y, bf16=True))):
        cpu0 = time.process_time()
        times[key] = epoch()
        cpu[key] = time.process_time() - cpu0
    result = {
        "machine": machine(),
        "images": n, "load_average_1min": round(os.getloadavg()[0], 2),
        **{f"{k}_images_per_s": round(n / t) for k, t in times.items()},
        **{f"{k}_s": round(t, 2) for k, t in times.items()},
        **{f"{k}_cpu_s": round(t, 2) for k, t in cpu.items()},
        "ratio": round(times["plain"] / times["ours"], 2),
        "ratio_pipeline_only": round(times["plain"] / times["ours_fp32"], 2),
        "ratio_cpu_time": round(cpu["plain"] / cpu["ours"], 2),
    }
    write_json(args.json, result)
    print(f"machine: {result['machine']}; 1-min load average {result['load_average_1min']} "
          f"(above the core count means other jobs shared the CPU)")
    print(f"{'pipeline':<37} {'seconds':>8} {'CPU s':>7} {'images/s':>9}")
    rows = [("plain (DataLoader, per-sample, fp32)", "plain"), ("ours, float32", "ours_fp32"),
            ("ours (batched, channels-last, bf16)", "ours")]
    for label, key in rows:
        print(f"{label:<37} {times[key]:>8.2f} {cpu[key]:>7.2f} {n / times[key]:>9.0f}")
    print(f"ratio ours/plain: {result['ratio']:.2f}x wall, {result['ratio_cpu_time']:.2f}x CPU time "
          f"(data pipeline alone: {result['ratio_pipeline_only']:.2f}x)")


if __name__ == "__main__":
    main()
