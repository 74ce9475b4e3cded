"""Training-loop throughput: dlslab's engine vs a plain PyTorch loop, in one process.

The same MLP (784-256-256-10) on Fashion-MNIST, batch 128, Adam 1e-3, 3 epochs, trained
(a) with `dlslab.train.engine.fit` (data as one tensor, batches by index_select, fused Adam)
and (b) in the style of pytorch/examples (TensorDataset + DataLoader(shuffle=True)).
Prints samples/s of each, the ratio, both test accuracies, and the achieved GFLOP/s against
a float32 matmul peak measured in the same run.

Importing dlslab.train turns on flush-to-zero of denormal floats for the whole process (see
src/dlslab/train/__init__.py), so both loops run with it: the ratio measures the loop, not
the floating-point mode.

    python benchmarks/train_loop.py [--epochs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlslab.data.images import load_images
from dlslab.train.engine import classifier_eval, fit
from dlslab.train.optim import make_optimizer
from common import machine, matmul_peak_gflops, write_json

SIZES = (784, 256, 256, 10)
BATCH = 128


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def train_flops_per_sample() -> float:
    """Multiply-adds of the three layers, x2 for FLOPs, x3 for forward + two backward matmuls."""
    macs = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    return 2 * macs * 3


def ours(x, y, xt, yt, epochs: int) -> tuple[float, float]:
    model = mlp()
    opt = make_optimizer("adam", model.parameters(), 1e-3)
    loss = lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb)  # noqa: E731
    t0 = time.perf_counter()
    fit(model, (x, y), loss, optimizer=opt, epochs=epochs, batch_size=BATCH, seed=0, verbose=False)
    seconds = time.perf_counter() - t0
    return seconds, classifier_eval(xt, yt)(model)["val_acc"]


def plain(x, y, xt, yt, epochs: int) -> tuple[float, float]:
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    return seconds, classifier_eval(xt, yt)(model)["val_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    data = load_images("fashion-mnist")
    x = data.train_x.float().div(255).flatten(1)
    xt = data.test_x.float().div(255).flatten(1)
    n = len(x) * args.epochs
    peak = matmul_peak_gflops()
    t_plain, acc_plain = plain(x, data.train_y, xt, data.test_y, args.epochs)
    t_ours, acc_ours = ours(x, data.train_y, xt, data.test_y, args.epochs)
    flops = train_flops_per_sample()
    result = {
        "machine": machine(),
        "matmul_peak_gflops": round(peak, 1),
        "plain_samples_per_s": round(n / t_plain), "ours_samples_per_s": round(n / t_ours),
        "ratio": round(t_plain / t_ours, 2),
        "plain_gflops": round(n * flops / t_plain / 1e9, 1), "ours_gflops": round(n * flops / t_ours / 1e9, 1),
        "plain_test_acc": round(acc_plain, 4), "ours_test_acc": round(acc_ours, 4),
        "accuracy_agrees": abs(acc_plain - acc_ours) <= 0.01,
    }
    result["ours_fraction_of_peak"] = round(result["ours_gflops"] / peak, 3)
    write_json(args.json, result)
    print(f"machine: {result['machine']}; float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'loop':<8} {'samples/s':>10} {'GFLOP/s':>8} {'% peak':>7} {'test acc':>9}")
    for name in ("plain", "ours"):
        print(f"{name:<8} {result[f'{name}_samples_per_s']:>10,} {result[f'{name}_gflops']:>8.1f} "
              f"{100 * result[f'{name}_gflops'] / peak:>6.0f}% {result[f'{name}_test_acc']:>9.4f}")
    print(f"ratio ours/plain: {result['ratio']:.2f}x; accuracies agree within 1 pp: {result['accuracy_agrees']}")


if __name__ == "__main__":
    main()
