"""The quick mlp-hparams OFAT sweep on Fashion-MNIST: our sweep engine vs the same configurations
trained one after another with a plain PyTorch DataLoader loop.

Both paths train every configuration with the same initial weights, optimizer, learning-rate
schedule, epochs and batch size, pick the epoch of best validation accuracy and report test
accuracy there. Ours trains same-shape configurations together (one batched matmul per layer
over stacked weights, one fused optimizer call per (optimizer, lr) run, data on the device,
batches by indexing); the baseline iterates a DataLoader over a TensorDataset and trains one
model at a time in float32. Ours is timed in float32 (the headline ratio: the same arithmetic)
and with bfloat16 matmuls (`precision=bf16`, float32 weights; fast on CPUs with AMX). The data
orders differ, so accuracies agree up to seed noise, not bit for bit (tests/train/test_sweep.py
checks the exact equivalence). Wall and CPU seconds are both printed: on a shared machine the
CPU ratio is the steadier one.

    python benchmarks/sweep.py [--threads N] [--precisions fp32,bf16] [--workers N] [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import math
import resource
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlslab.runner import plan_study
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


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_cpu(fn):
    """(wall seconds, CPU seconds, result) of one call."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return time.perf_counter() - w0, cpu_seconds() - c0, out


def agreement(ours: dict[str, float], plain: dict[str, float], chance: float) -> dict[str, float]:
    """How closely two paths' test accuracies agree over the configurations that learned."""
    diffs = [abs(ours[k] - plain[k]) for k in ours if min(ours[k], plain[k]) > 2 * chance]
    return {"agree_within_2pt": sum(d <= 0.02 for d in diffs), "compared": len(diffs),
            "mean_abs_diff": sum(diffs) / len(diffs) if diffs else math.nan,
            "max_abs_diff": max(diffs) if diffs else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N configurations (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="our engine's matmul precisions to time (fp32, bf16: bfloat16 matmuls, float32 weights)")
    parser.add_argument("--workers", type=int, default=1,
                        help="our engine's worker processes (groups in parallel, --threads each)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precisions.split(",")

    cfg = plan_study("mlp-hparams", "quick", {"datasets": ["fashion-mnist"]}).cfg
    trials = sweep.trials_for(sweep.design_points(sweep.DesignSpec.of(cfg)), cfg.datasets, [cfg.seed])
    if args.limit:
        trials = trials[: args.limit]
    spec_of = sweep.data_specs(None, train_size=cfg.train_size, val_size=cfg.val_size, split_seed=cfg.seed)
    data = sweep.load_sweep_data(spec_of("fashion-mnist"))
    groups = {p: sweep.make_groups(trials, spec_of, epochs=cfg.epochs, batch_size=cfg.batch_size, schedule="cosine",
                                   order_seed=cfg.seed, max_stack=cfg.max_stack, precision=p) for p in precisions}
    peak = matmul_peak_gflops()
    plain_train(trials[0], data, 1, cfg.batch_size)  # warm-up: lazy imports, allocator
    for p in precisions:  # and of each of our paths, on a few steps of the largest group
        small = sweep.DataSpec("fashion-mnist", None, 1000, 500, cfg.seed)
        sweep.train_group(sweep.GroupSpec(groups[p][0].trials, small, 1, cfg.batch_size, precision=p))
    n_groups = len(groups[precisions[0]])
    print(f"{len(trials)} configurations in {n_groups} groups; {cfg.epochs} epochs on {len(data.y_train)} "
          f"examples; {torch.get_num_threads()} threads; matmul peak {peak:.1f} GFLOP/s")

    times, accs = {}, {}
    for p in precisions:
        wall, cpu, res = timed_cpu(lambda: sweep.run_groups(groups[p], workers=args.workers))  # noqa: B023
        times[p], accs[p] = (wall, cpu), {r["key"]: r["test_acc"] for r in res}
    wall, cpu, plain = timed_cpu(lambda: {t.key: plain_train(t, data, cfg.epochs, cfg.batch_size) for t in trials})
    times["plain"] = (wall, cpu)

    chance = 1 / len(data.classes)
    print(f"\n{'configuration':<42} " + " ".join(f"{p + ' %':>8}" for p in precisions) + f" {'plain %':>8}")
    rows = []
    for t in trials:
        rows.append({"config": t.config, **{p: accs[p][t.key] for p in precisions}, "plain": plain[t.key]})
        print(f"{t.config:<42} " + " ".join(f"{100 * accs[p][t.key]:8.2f}" for p in precisions)
              + f" {100 * plain[t.key]:8.2f}")
    figures: dict[str, object] = {
        "configs": len(trials), "groups": n_groups, "peak_gflops": peak, "threads": torch.get_num_threads(),
        "workers": args.workers,
        "plain_s": times["plain"][0], "plain_cpu_s": times["plain"][1], "per_config": rows,
    }
    print()
    for p in precisions:
        agree = agreement(accs[p], plain, chance)
        figures |= {f"ours_{p}_s": times[p][0], f"ours_{p}_cpu_s": times[p][1],
                    f"speedup_{p}": times["plain"][0] / times[p][0],
                    f"speedup_{p}_cpu": times["plain"][1] / times[p][1], f"accuracy_{p}": agree}
        print(f"accuracy, {p} vs plain: {agree['agree_within_2pt']}/{agree['compared']} learning configurations "
              f"within 2 points; mean |diff| {100 * agree['mean_abs_diff']:.2f}, "
              f"max {100 * agree['max_abs_diff']:.2f} points")
    if "fp32" in precisions:  # the headline ratio: same arithmetic on both paths
        figures["speedup"] = figures["speedup_fp32"]
    print(f"\n{'path':<40} {'wall s':>8} {'CPU s':>8} {'ratio':>7} {'CPU ratio':>10}")
    print(f"{'plain DataLoader, one by one (fp32)':<40} {times['plain'][0]:8.1f} {times['plain'][1]:8.1f} "
          f"{1.0:7.2f} {1.0:10.2f}")
    for p in precisions:
        print(f"{'dlslab sweep, batched groups (' + p + ')':<40} {times[p][0]:8.1f} {times[p][1]:8.1f} "
              f"{figures[f'speedup_{p}']:7.2f} {figures[f'speedup_{p}_cpu']:10.2f}")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
