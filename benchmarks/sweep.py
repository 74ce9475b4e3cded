"""The quick mlp-hparams OFAT sweep on Fashion-MNIST: our sweep engine vs the same configurations
trained one after another with a plain PyTorch DataLoader loop.

Both paths train every configuration with the same initial weights, optimizer, learning-rate
schedule, epochs and batch size, pick the epoch of best validation accuracy and report test
accuracy there. Ours trains same-shape configurations together (one batched matmul per layer,
data on the device, batches by indexing); the baseline iterates a DataLoader over a
TensorDataset and trains one model at a time. The data orders differ, so accuracies agree up
to seed noise, not bit for bit (tests/train/test_sweep.py checks the exact equivalence).

    python benchmarks/sweep.py [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlslab import config
from dlslab.studies import mlp_hparams
from dlslab.train import sweep
from common import matmul_peak_gflops, write_json

PLAIN_OPTIMIZERS = {
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
    "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "nesterov": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=1e-2),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
    "adagrad": lambda p, lr: torch.optim.Adagrad(p, lr=lr),
}


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def plain_train(trial: sweep.Trial, data: sweep.SweepData, epochs: int, batch_size: int) -> float:
    """The textbook loop: DataLoader, one model, evaluate each epoch, keep the best weights."""
    model = sweep.build_member(trial, data.x_train.shape[1], len(data.classes))
    opt = PLAIN_OPTIMIZERS[trial.optimizer](model.parameters(), trial.lr)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(trial.seed))
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: sweep.lr_factor("cosine", s, total))
    best_val, best_state = -1.0, copy.deepcopy(model.state_dict())
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            if not torch.isfinite(loss):  # diverged: keep the best weights so far
                break
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        val = accuracy(model, data.x_val, data.y_val)
        if val > best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return accuracy(model, data.x_test, data.y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N configurations (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = config.resolve(mlp_hparams.Config, mlp_hparams.PRESETS, "quick", {"datasets": ["fashion-mnist"]})
    trials = sweep.trials_for(mlp_hparams.design_points(cfg), cfg.datasets, [cfg.seed])
    if args.limit:
        trials = trials[: args.limit]
    spec_of = sweep.data_specs(None, train_size=cfg.train_size, val_size=cfg.val_size, split_seed=cfg.seed)
    data = sweep.load_sweep_data(spec_of("fashion-mnist"))
    groups = sweep.make_groups(trials, spec_of, epochs=cfg.epochs, batch_size=cfg.batch_size, schedule="cosine",
                               order_seed=cfg.seed, max_stack=cfg.max_stack)
    peak = matmul_peak_gflops()
    plain_train(trials[0], data, 1, cfg.batch_size)  # warm-up: lazy imports, allocator
    print(f"{len(trials)} configurations in {len(groups)} groups; {cfg.epochs} epochs on {len(data.y_train)} "
          f"examples; {torch.get_num_threads()} threads; matmul peak {peak:.1f} GFLOP/s")

    t0 = time.perf_counter()
    ours = {r["key"]: r["test_acc"] for r in sweep.run_groups(groups)}
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = {t.key: plain_train(t, data, cfg.epochs, cfg.batch_size) for t in trials}
    plain_s = time.perf_counter() - t0

    rows = [{"config": t.config, "ours": ours[t.key], "plain": plain[t.key]} for t in trials]
    learned = [r for r in rows if min(r["ours"], r["plain"]) > 2 / len(data.classes)]
    diffs = [abs(r["ours"] - r["plain"]) for r in learned]
    agree = sum(d <= 0.02 for d in diffs)
    print(f"\n{'configuration':<42} {'ours %':>7} {'plain %':>8}")
    for r in rows:
        print(f"{r['config']:<42} {100 * r['ours']:7.2f} {100 * r['plain']:8.2f}")
    figures = {
        "configs": len(trials), "groups": len(groups), "ours_s": ours_s, "plain_s": plain_s,
        "speedup": plain_s / ours_s, "peak_gflops": peak, "threads": torch.get_num_threads(),
        "acc_max_abs_diff": max(diffs) if diffs else math.nan,
        "acc_mean_abs_diff": sum(diffs) / len(diffs) if diffs else math.nan,
        "acc_agree_within_2pt": agree, "acc_compared": len(diffs), "per_config": rows,
    }
    print(f"\naccuracy: {agree}/{len(diffs)} learning configurations within 2 points; mean |diff| "
          f"{100 * figures['acc_mean_abs_diff']:.2f}, max {100 * figures['acc_max_abs_diff']:.2f} points")
    print(f"\n{'path':<34} {'seconds':>8} {'ratio':>7}")
    print(f"{'plain DataLoader, one by one':<34} {plain_s:8.1f} {1.0:7.2f}")
    print(f"{'dlslab sweep (batched groups)':<34} {ours_s:8.1f} {plain_s / ours_s:7.2f}")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
