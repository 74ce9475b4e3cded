"""Choose compress's pruning -> int4 QAT operating point on a validation split
(`<net>_qat_round`, `qat_epochs`, `<net>_distill`, `<net>_prune_distill`; docs/studies/compress.md).

The network (`--net`, LeNet-5 by default) is trained on 55,000 MNIST training images with the
full preset's schedule (5,000 held out, seeded), pruned iteratively in `prune_rounds` rounds;
after each listed round, a copy per distillation weight and per QAT length trains int4
quantisation-aware with its pruned weights held at zero (distilling the uncompressed model
when the weight is > 0), is packed, loaded back and measured on the validation and the test
images.

With several `--splits`, each split holds out its own 5,000 images and seeds its own
training. The rule, fixed before the run: among the settings whose files are at least
`--min-reduction` % smaller than the float32 model on every split, the lowest validation error
relative to the split's baseline, averaged over the splits; ties go to the smaller files. Test
errors are printed for the record and play no part in the choice. `--cache DIR` keeps each
split's baseline and pruning rounds, so a later call with other QAT settings trains only those.

    python scripts/compress_qat_round.py                      # rounds 2, 3 x distill 0, 0.5, 0.9
    python scripts/compress_qat_round.py --rounds 1 2 3 4 5 --distill 0
    python scripts/compress_qat_round.py --net lenet300 --rounds 3 4 5 --distill 0 --qat-epochs 3 10
    python scripts/compress_qat_round.py --net lenet300 --rounds 3 --splits 0 1 2 --cache /tmp/qat-cache

With `--from-run RUN_DIR` (a finished or partial `dlslab run compress --preset full` folder
holding the network's baseline and pruning-round checkpoints), the listed settings instead
start from that run's models, trained on all 60,000 images, with that run's seed and
settings, and only test errors are printed: the measurement of a setting already chosen, as
the study itself would make it. The run folder is only read.

    python scripts/compress_qat_round.py --from-run runs/compress/RUN --rounds 2 --distill 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from dlslab.compress.layers import bake, weight_layers
from dlslab.compress.packed import dense_bytes, load_packed, pack_model
from dlslab.compress.prune import prune_magnitude, sparsity_schedule
from dlslab.compress.quant import prepare_qat
from dlslab.data.images import load_images
from dlslab.models import build_model
from dlslab.runner import plan_from_file
from dlslab.studies.compress import (
    MNIST_MEAN,
    MNIST_STD,
    Config,
    Mnist,
    error_percent,
    train,
)
from dlslab.train.engine import clone_model

HELD_OUT = 5000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=["lenet300", "lenet5"], default="lenet5", help="network to compress")
    p.add_argument("--rounds", type=int, nargs="+", default=[2, 3], help="pruning rounds to start QAT from")
    p.add_argument("--distill", type=float, nargs="+", default=[0.0, 0.5, 0.9],
                   help="distillation weights tried at every round (0 = labels only)")
    p.add_argument("--qat-epochs", type=int, nargs="+", default=[Config.qat_epochs],
                   help="lengths (epochs) of the int4 QAT stage tried at every round")
    p.add_argument("--temperature", type=float, default=Config.distill_temperature)
    p.add_argument("--min-reduction", type=float, default=97.0, help="size reduction (%%) a candidate needs")
    p.add_argument("--from-run", type=Path, help="start from this full-preset run's checkpoints; test only")
    p.add_argument("--prune-distill", type=float,
                   help="distillation weight in the pruning rounds' retraining (default: the config's)")
    p.add_argument("--prune-epochs", type=int, help="retraining epochs per pruning round (default: the config's)")
    p.add_argument("--prune-rounds", type=int, help="rounds of the pruning schedule (default: the config's)")
    p.add_argument("--splits", type=int, nargs="+", default=[Config.seed],
                   help="validation splits (each also seeds its training); the choice takes the mean over them")
    p.add_argument("--cache", type=Path,
                   help="keep each split's baseline and pruning rounds here, and reuse them on the next call")
    return p.parse_args()


def saved_stages(run_dir: Path, net: str, rounds: int) -> SimpleNamespace:
    """A read-only stand-in for a Run: `train` finds each finished stage's checkpoint there
    and loads it instead of training. Every stage needed must be finished already."""
    ckpt = run_dir / "checkpoints"
    missing = [n for n in [f"{net}-baseline", *(f"{net}-prune{r}" for r in range(1, rounds + 1))]
               if not (ckpt / f"{n}.done.pt").exists()]
    if missing:
        raise SystemExit(f"{run_dir}: no finished {', '.join(missing)}")
    return SimpleNamespace(checkpoint_dir=ckpt, info=print, log=lambda **_: None)


def main() -> None:
    args = parse_args()
    net = args.net
    # from a run: its own settings (seed, schedule, densities); the QAT settings tried come from the arguments
    cfg = plan_from_file(args.from_run / "config.yaml").cfg if args.from_run else Config()
    cfg = dataclasses.replace(cfg, prune_epochs=args.prune_epochs or cfg.prune_epochs,
                              prune_rounds=args.prune_rounds or cfg.prune_rounds,
                              **({} if args.prune_distill is None else {f"{net}_prune_distill": args.prune_distill}))
    prune_distill = getattr(cfg, f"{net}_prune_distill")
    images = load_images("mnist")
    x = (images.train_x.float() / 255 - MNIST_MEAN) / MNIST_STD
    test = ((images.test_x.float() / 255 - MNIST_MEAN) / MNIST_STD, images.test_y)
    t0, c0 = time.perf_counter(), time.process_time()

    def clock() -> str:
        return f"[{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU]"

    if args.from_run:
        saved = saved_stages(args.from_run, net, max(args.rounds))
        measure(net, cfg, Mnist((x, images.train_y), test), None, saved, saved, args, clock)
        return
    results: dict[tuple, list] = {}  # (round, distill, epochs) -> per split (bytes, ratio, val - baseline val)
    for split in args.splits:
        split_cfg = dataclasses.replace(cfg, seed=split)  # the split's seed also seeds its training
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split))
        fit_idx, val_idx = perm[HELD_OUT:], perm[:HELD_OUT]
        data = Mnist((x[fit_idx], images.train_y[fit_idx]), test)
        val = Mnist(data.train, (x[val_idx], images.train_y[val_idx]))  # error_percent reads .test
        cache = (None, None)
        if args.cache:  # the baseline, and the pruning rounds of these pruning settings
            dirs = [args.cache / f"{net}-split{split}",
                    args.cache / (f"{net}-split{split}-prune{cfg.prune_epochs}x{prune_distill:g}"
                                  + (f"-r{cfg.prune_rounds}" if cfg.prune_rounds != Config.prune_rounds else ""))]
            cache = tuple(SimpleNamespace(checkpoint_dir=d, info=print, log=lambda **_: None) for d in dirs)
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
        print(f"-- split {split}", flush=True)
        for key, (nbytes, ratio, v, base_v) in measure(net, split_cfg, data, val, *cache, args, clock).items():
            results.setdefault(key, []).append((nbytes, ratio, v - base_v))
    n = len(args.splits)
    print(f"\nover {n} split(s): round, QAT epochs, distill: mean bytes, smallest ratio, "
          "mean validation error change (pp) per split")
    for (r, alpha, epochs), rows in sorted(results.items()):
        print(f"  round {r}, {epochs} epochs, distill {alpha:g}: {sum(b for b, _, _ in rows) / n:,.0f} bytes, "
              f"{min(q for _, q, _ in rows):.1f}x, {sum(d for _, _, d in rows) / n:+.3f} pp "
              f"({' '.join(f'{d:+.2f}' for _, _, d in rows)})")
    eligible = {k: rows for k, rows in results.items()
                if all(100 * (1 - 1 / q) >= args.min_reduction for _, q, _ in rows)}
    if not eligible:
        print(f"no candidate is {args.min_reduction}% smaller on every split")
        return
    (r, alpha, epochs), rows = min(eligible.items(), key=lambda kv: (sum(d for _, _, d in kv[1]),
                                                                    sum(b for b, _, _ in kv[1])))
    print(f"chosen: round {r}, {epochs} QAT epochs, distill {alpha:g} "
          f"(smallest ratio {min(q for _, q, _ in rows):.1f}x, mean validation change "
          f"{sum(d for _, _, d in rows) / n:+.3f} pp)")


def measure(net: str, cfg: Config, data: Mnist, val: Mnist | None, saved_base: SimpleNamespace | None,
            saved: SimpleNamespace | None, args: argparse.Namespace, clock) -> dict[tuple, tuple]:
    """Train (or load from `saved_base` / `saved`) the baseline and pruning rounds, then every listed QAT
    setting; print each packed file's figures. Returns (round, distill, epochs) -> (bytes,
    ratio, validation error, baseline validation error); the errors are NaN without a validation split."""
    torch.manual_seed(cfg.seed)
    base = build_model(net)
    train(base, data, cfg, saved_base, f"{net}-baseline", cfg.epochs, finetune=False)
    reference = dense_bytes(base.state_dict())
    base_val = error_percent(base, val) if val else float("nan")
    seen = f"validation {base_val:.2f}%, " if val else ""
    print(f"baseline: {seen}test {error_percent(base, data):.2f}% {clock()}", flush=True)
    names = list(weight_layers(base))
    sparsity = {n: 1 - d for n, d in zip(names, getattr(cfg, f"{net}_density"))}
    pruned = clone_model(base)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r, round_sparsity in enumerate(sparsity_schedule(sparsity, cfg.prune_rounds), 1):
            if r > max(args.rounds):
                break
            prune_magnitude(pruned, round_sparsity)
            train(pruned, data, dataclasses.replace(cfg, distill_temperature=args.temperature), saved,
                  f"{net}-prune{r}", cfg.prune_epochs, teacher=base, distill=getattr(cfg, f"{net}_prune_distill"))
            bake(pruned)
            if r not in args.rounds:
                continue
            for alpha, epochs in itertools.product(args.distill, args.qat_epochs):
                stage_cfg = dataclasses.replace(cfg, distill_temperature=args.temperature)
                torch.manual_seed(cfg.seed)
                m = prepare_qat(clone_model(pruned), 4, keep_zeros=True)
                train(m, data, stage_cfg, None, f"qat{r}", epochs, teacher=base, distill=alpha)
                bake(m)
                label = f"prune round {r} + int4 quantisation-aware" + (" + distillation" if alpha > 0 else "")
                report = pack_model(m, Path(tmp) / f"round{r}-{alpha}-{epochs}.dlz", name=net,
                                    reference_bytes=reference,
                                    meta={"study": "compress", "label": label})  # the study's header, byte for byte
                loaded, _ = load_packed(report.path, torch.device("cpu"))
                v = error_percent(loaded, val) if val else float("nan")
                t = error_percent(loaded, data)
                out[(r, alpha, epochs)] = (report.file_bytes, report.ratio, v, base_val)
                seen = f"validation {v:.2f}%, " if val else ""
                print(f"round {r} + int4 QAT {epochs} epochs, distill {alpha:g}: {report.file_bytes:,} bytes, "
                      f"{report.ratio:.1f}x, {seen}test {t:.2f}% {clock()}", flush=True)
    return out


if __name__ == "__main__":
    main()
