"""Choose compress's pruning -> quantisation-aware training operating point on validation splits
(`<net>_qat_round`, `qat_bits` / `<net>_qat_bits`, `<net>_qat_bias_bits`, `qat_epochs`, `<net>_distill`,
`<net>_prune_distill`; docs/studies/compress.md).

The network (`--net`, LeNet-5 by default) is trained with the full preset's schedule (or the
settings given with `--set`) on the MNIST training images less 5,000 held out (a sixth of a
`train_subset` smaller than 30,000), and pruned
iteratively in `prune_rounds` rounds; after each listed round, a copy per bit width (`--bits 2`,
or one width per layer, `--bits 3,2,2,2`), bias sharing (`--bias-bits`), distillation weight and
QAT length trains quantisation-aware with its pruned weights held at zero
(distilling the uncompressed model when the weight is > 0), is packed, loaded back and
measured on the held-out and the test images. Each pruning round's float32 model is measured
too, so a loss can be laid to the pruning or to the QAT stage.

Each of the `--splits` holds out its own images (a permutation seeded with the split's number)
and seeds its own training. The rule, fixed before the run: among the settings whose files are
at least `--min-reduction` % smaller than the float32 model on every split, the lowest
validation error relative to the split's baseline, averaged over the splits; ties go to the
smaller files. Test errors are printed for the record and play no part in the choice.
`--cache DIR` keeps each split's baseline and pruning rounds (under a name that hashes the
settings they depend on), so a later call with other QAT settings trains only those.

    python scripts/compress_qat_round.py                      # rounds 2, 3 x distill 0, 0.5, 0.9
    python scripts/compress_qat_round.py --rounds 1 2 3 4 5 --distill 0
    python scripts/compress_qat_round.py --net lenet300 --rounds 3 --distill 0.9 --splits 0 1 2 --cache C
    python scripts/compress_qat_round.py --net lenet300 --rounds 4 5 --set prune_rounds=8 --splits 0 1 2

With `--from-run RUN_DIR` (a finished or partial `dlslab run compress` folder holding the
network's baseline and pruning-round checkpoints), the listed settings instead start from
that run's models, with that run's data, seed and settings, and only test errors are printed:
the measurement of a setting already chosen, as the study itself would make it. The run
folder is only read.

    python scripts/compress_qat_round.py --from-run runs/compress/RUN --rounds 2 --distill 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from dlslab.compress.packed import dense_bytes, load_packed, pack_model
from dlslab.compress.layers import weight_layers
from dlslab.compress.pipeline import (Mnist, PruneSpec, StageSpec, bits_text, error_percent, load_mnist, network_epochs,
                                      pruning_rounds, qat_layer_bits, quantise_pruned, quantised_label, tensor_rows,
                                      train)
from dlslab.config import apply_overrides, parse_set_args, to_dict
from dlslab.data.splits import random_subset
from dlslab.errors import DlsError
from dlslab.models import build_model
from dlslab.runner import plan_from_file, plan_study

HELD_OUT = 5000
# the settings a split's baseline, and then its pruning rounds, depend on (the cache's key)
BASELINE_KEYS = ("train_subset", "batch_size", "epochs", "lr", "weight_decay", "bf16")
PRUNE_KEYS = ("finetune_lr", "prune_rounds", "prune_epochs", "distill_temperature")


def study_config(overrides: dict | None = None) -> Any:
    """The compress study's config: its defaults (the full preset) with `overrides`."""
    return plan_study("compress", "full", overrides).cfg


def parse_args() -> argparse.Namespace:
    defaults = study_config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=["lenet300", "lenet5"], default="lenet5", help="network to compress")
    p.add_argument("--rounds", type=int, nargs="+", default=[2, 3], help="pruning rounds to start QAT from")
    p.add_argument("--distill", type=float, nargs="+", default=[0.0, 0.5, 0.9],
                   help="distillation weights of the QAT stage tried at every round (0 = labels only)")
    p.add_argument("--qat-epochs", type=int, nargs="+", default=[defaults.qat_epochs],
                   help="lengths (epochs) of the QAT stage tried at every round")
    p.add_argument("--bits", nargs="+", help="bit widths of the QAT stage's uniform quantiser tried at every "
                   "round: one width (2) or one per layer (3,2,2,2); default: the config's for --net")
    p.add_argument("--bias-bits", type=int, nargs="+",
                   help="k-means bits of the biases in the QAT stage tried (0 = float32); default: the config's")
    p.add_argument("--show-tensors", action="store_true", help="print every file's bytes per tensor")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a setting of the compress config (repeatable), e.g. prune_rounds=8")
    p.add_argument("--min-reduction", type=float, default=97.0, help="size reduction (%%) a candidate needs")
    p.add_argument("--splits", type=int, nargs="+", default=[defaults.seed],
                   help="validation splits (each also seeds its training); the choice takes the mean over them")
    p.add_argument("--cache", type=Path,
                   help="keep each split's baseline and pruning rounds here, and reuse them on the next call")
    p.add_argument("--from-run", type=Path, help="start from this run's checkpoints; test errors only")
    return p.parse_args()


def checkpoints_in(folder: Path) -> SimpleNamespace:
    """A stand-in for a Run that `train` uses for its checkpoints only: a finished stage there
    is loaded instead of trained, and a new one is saved there."""
    return SimpleNamespace(checkpoint_dir=folder, info=print, log=lambda **_: None, quiet=False)


def saved_stages(run_dir: Path, net: str, rounds: int) -> SimpleNamespace:
    """A run folder's checkpoints, read only: every stage needed must be finished already."""
    ckpt = run_dir / "checkpoints"
    missing = [n for n in [f"{net}-baseline", *(f"{net}-prune{r}" for r in range(1, rounds + 1))]
               if not (ckpt / f"{n}.done.pt").exists()]
    if missing:
        raise SystemExit(f"{run_dir}: no finished {', '.join(missing)}")
    return checkpoints_in(ckpt)


def cache_dir(root: Path, cfg: Any, net: str, keys: tuple[str, ...]) -> SimpleNamespace:
    """A checkpoint folder under `root`, named by the settings `keys` its stages depend on."""
    settings = {k: v for k, v in to_dict(cfg).items() if k in keys}
    path = root / f"{net}-split{cfg.seed}-{hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]}"
    path.mkdir(parents=True, exist_ok=True)
    return checkpoints_in(path)


def main() -> None:
    args = parse_args()
    net = args.net
    # from a run: its own settings (seed, data, schedule, densities); the QAT settings tried come from the arguments
    overrides = parse_set_args(args.set)
    if args.from_run:
        cfg = apply_overrides(plan_from_file(args.from_run / "config.yaml").cfg, overrides)
    else:
        cfg = study_config(overrides)
    cfg = network_epochs(cfg, net)  # the network's epochs, as the study trains them (--qat-epochs as given)
    if args.bits is None:  # the config's widths for this network: one, or one per layer
        args.bits = [bits_text(qat_layer_bits(cfg, net, build_model(net))).replace("/", ",")]
    if args.bias_bits is None:
        args.bias_bits = [getattr(cfg, f"{net}_qat_bias_bits")]
    data = load_mnist(None, "cpu", train_subset=cfg.train_subset, test_subset=cfg.test_subset, seed=cfg.seed)
    t0, c0 = time.perf_counter(), time.process_time()

    def clock() -> str:
        return f"[{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU]"

    if args.from_run:
        saved = saved_stages(args.from_run, net, max(args.rounds))
        measure(net, cfg, data, None, saved, saved, args, clock)
        return
    x, y = data.train
    held_out = min(HELD_OUT, len(x) // 6)
    results: dict[tuple, list] = {}  # (round, bits, bias bits, distill, epochs) -> per split (bytes, ratio, val - base)
    for split in args.splits:
        split_cfg = dataclasses.replace(cfg, seed=split)  # the split's seed also seeds its training
        perm = random_subset(len(x), len(x), split)  # a permutation seeded with the split's number
        fit_idx, val_idx = perm[held_out:], perm[:held_out]
        fit_data = Mnist((x[fit_idx], y[fit_idx]), data.test)
        val = Mnist(fit_data.train, (x[val_idx], y[val_idx]))  # error_percent reads .test
        cache = (None, None)
        if args.cache:
            prune_keys = (*BASELINE_KEYS, *PRUNE_KEYS, f"{net}_density", f"{net}_prune_distill")
            cache = (cache_dir(args.cache, split_cfg, net, BASELINE_KEYS),
                     cache_dir(args.cache, split_cfg, net, prune_keys))
        print(f"-- split {split}", flush=True)
        for key, (nbytes, ratio, v, base_v) in measure(net, split_cfg, fit_data, val, *cache, args, clock).items():
            results.setdefault(key, []).append((nbytes, ratio, v - base_v))
    # per setting over the splits: mean bytes, smallest ratio, mean validation change, the changes
    summary = {key: (sum(b for b, _, _ in rows) / len(rows), min(q for _, q, _ in rows),
                     sum(d for _, _, d in rows) / len(rows), [d for _, _, d in rows])
               for key, rows in results.items()}
    print(f"\nover {len(args.splits)} split(s): round, bits, bias bits, QAT epochs, distill: mean bytes, smallest "
          "ratio, mean validation error change (pp) per split")
    for (r, bits, bias, alpha, epochs), (nbytes, ratio, change, changes) in sorted(summary.items()):
        print(f"  round {r}, int{bits}, biases {bias or 'float32'}, {epochs} epochs, distill {alpha:g}: "
              f"{nbytes:,.0f} bytes, {ratio:.1f}x, {change:+.3f} pp ({' '.join(f'{d:+.2f}' for d in changes)})")
    eligible = {k: v for k, v in summary.items() if 100 * (1 - 1 / v[1]) >= args.min_reduction}
    if not eligible:
        print(f"no candidate is {args.min_reduction}% smaller on every split")
        return
    (r, bits, bias, alpha, epochs), (_, ratio, change, _) = min(eligible.items(), key=lambda kv: (kv[1][2], kv[1][0]))
    print(f"chosen: round {r}, int{bits}, biases {bias or 'float32'}, {epochs} QAT epochs, distill {alpha:g} "
          f"(smallest ratio {ratio:.1f}x, mean validation change {change:+.3f} pp)")


def layer_bits(text: str, model: torch.nn.Module) -> int | dict[str, int]:
    """`--bits` 2 -> 2; 3,2,2,2 -> one width per weight layer of `model`, in order."""
    widths = [int(b) for b in text.split(",")]
    names = list(weight_layers(model))
    if len(widths) == 1:
        return widths[0]
    if len(widths) != len(names):
        raise SystemExit(f"--bits {text}: one width, or one per layer ({', '.join(names)})")
    return dict(zip(names, widths))


def measure(net: str, cfg: Any, data: Mnist, val: Mnist | None, saved_base: SimpleNamespace | None,
            saved: SimpleNamespace | None, args: argparse.Namespace, clock) -> dict[tuple, tuple]:
    """Train (or load from `saved_base` / `saved`) the baseline and pruning rounds, then every
    listed QAT setting; print each packed file's figures. Returns (round, bits, bias bits, distill, epochs) ->
    (bytes, ratio, validation error, baseline validation error); the errors are NaN without a
    validation split."""
    stages = StageSpec.of(cfg)
    torch.manual_seed(cfg.seed)
    base = build_model(net)
    train(base, data, stages, saved_base, f"{net}-baseline", cfg.epochs, finetune=False)
    reference = dense_bytes(base.state_dict())
    base_val = error_percent(base, val) if val else float("nan")
    seen = f"validation {base_val:.2f}%, " if val else ""
    print(f"baseline: {seen}test {error_percent(base, data):.2f}% {clock()}", flush=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r, pruned in pruning_rounds(base, data, stages, PruneSpec.of(cfg, net, base), saved, net):
            seen = f"validation {error_percent(pruned, val):.2f}%, " if val else ""
            print(f"pruning round {r} (float32): {seen}test {error_percent(pruned, data):.2f}% {clock()}", flush=True)
            settings = (itertools.product(args.bits, args.bias_bits, args.distill, args.qat_epochs)
                        if r in args.rounds else [])
            for bits_arg, bias, alpha, epochs in settings:
                bits = layer_bits(bits_arg, base)
                torch.manual_seed(cfg.seed)
                m = quantise_pruned(pruned, base, data, stages, None, f"qat{r}", bits=bits, epochs=epochs,
                                    distill=alpha, bias_bits=bias)
                label = quantised_label(r, bits, alpha, bias)
                file = Path(tmp) / f"round{r}-{bits_text(bits).replace('/', '-')}-{bias}-{alpha}-{epochs}.dlz"
                report = pack_model(m, file, name=net,
                                    reference_bytes=reference,
                                    meta={"study": "compress", "label": label})  # the study's header, byte for byte
                loaded, _ = load_packed(report.path, torch.device("cpu"))
                v = error_percent(loaded, val) if val else float("nan")
                t = error_percent(loaded, data)
                out[(r, bits_text(bits), bias, alpha, epochs)] = (report.file_bytes, report.ratio, v, base_val)
                seen = f"validation {v:.2f}%, " if val else ""
                print(f"round {r} + int{bits_text(bits)} QAT {epochs} epochs, biases {bias or 'float32'}, "
                      f"distill {alpha:g}: {report.file_bytes:,} bytes, {report.ratio:.1f}x, {seen}test {t:.2f}% "
                      f"{clock()}", flush=True)
                if args.show_tensors:
                    print(f"  header {report.header_bytes} bytes; " + "; ".join(
                        f"{row['tensor']} {row['bytes']} ({row['density_%']}% kept, {row['bits/index']} bits/index)"
                        for row in tensor_rows(report)))
            if r == max(args.rounds):  # no later round is needed: stop before training it
                break
    return out


if __name__ == "__main__":
    try:
        main()
    except DlsError as exc:  # a bad --set, a missing dataset or run folder: the message, not a traceback
        raise SystemExit(f"error: {exc}") from None
