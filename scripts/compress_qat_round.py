"""Choose compress's pruning -> int4 QAT operating point on a validation split
(`<net>_qat_round`, `qat_epochs`, `distill`; docs/studies/compress.md).

The network (`--net`, LeNet-5 by default) is trained on 55,000 MNIST training images with the
full preset's schedule (5,000 held out, seeded), pruned iteratively in `prune_rounds` rounds;
after each listed round, a copy per distillation weight and per QAT length trains int4
quantisation-aware with its pruned weights held at zero (distilling the uncompressed model
when the weight is > 0), is packed, loaded back and measured on the validation and the test
images.

The rule, fixed before the run: among the files at least `--min-reduction` % smaller than
the float32 model, the lowest validation error; ties go to the smaller file. Test errors are
printed for the record and play no part in the choice.

    python scripts/compress_qat_round.py                      # rounds 2, 3 x distill 0, 0.5, 0.9
    python scripts/compress_qat_round.py --rounds 1 2 3 4 5 --distill 0
    python scripts/compress_qat_round.py --net lenet300 --rounds 3 4 5 --distill 0 --qat-epochs 3 10

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
    images = load_images("mnist")
    x = (images.train_x.float() / 255 - MNIST_MEAN) / MNIST_STD
    test = ((images.test_x.float() / 255 - MNIST_MEAN) / MNIST_STD, images.test_y)
    if args.from_run:
        data = Mnist((x, images.train_y), test)
        val = None
        saved = saved_stages(args.from_run, net, max(args.rounds))
    else:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
        fit_idx, val_idx = perm[HELD_OUT:], perm[:HELD_OUT]
        data = Mnist((x[fit_idx], images.train_y[fit_idx]), test)
        val = Mnist(data.train, (x[val_idx], images.train_y[val_idx]))  # error_percent reads .test
        saved = None
    t0, c0 = time.perf_counter(), time.process_time()

    def clock() -> str:
        return f"[{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU]"

    torch.manual_seed(cfg.seed)
    base = build_model(net)
    train(base, data, cfg, saved, f"{net}-baseline", cfg.epochs, finetune=False)
    reference = dense_bytes(base.state_dict())
    base_val = error_percent(base, val) if val else float("nan")
    seen = f"validation {base_val:.2f}%, " if val else ""
    print(f"baseline: {seen}test {error_percent(base, data):.2f}% {clock()}", flush=True)
    names = list(weight_layers(base))
    sparsity = {n: 1 - d for n, d in zip(names, getattr(cfg, f"{net}_density"))}
    pruned = clone_model(base)
    candidates = []
    with tempfile.TemporaryDirectory() as tmp:
        for r, round_sparsity in enumerate(sparsity_schedule(sparsity, cfg.prune_rounds), 1):
            if r > max(args.rounds):
                break
            prune_magnitude(pruned, round_sparsity)
            train(pruned, data, cfg, saved, f"{net}-prune{r}", cfg.prune_epochs)
            bake(pruned)
            if r not in args.rounds:
                continue
            for alpha, epochs in itertools.product(args.distill, args.qat_epochs):
                stage_cfg = dataclasses.replace(cfg, distill=alpha, distill_temperature=args.temperature)
                torch.manual_seed(cfg.seed)
                m = prepare_qat(clone_model(pruned), 4, keep_zeros=True)
                train(m, data, stage_cfg, None, f"qat{r}", epochs, teacher=base)
                bake(m)
                label = f"prune round {r} + int4 quantisation-aware" + (" + distillation" if alpha > 0 else "")
                report = pack_model(m, Path(tmp) / f"round{r}-{alpha}-{epochs}.dlz", name=net,
                                    reference_bytes=reference,
                                    meta={"study": "compress", "label": label})  # the study's header, byte for byte
                loaded, _ = load_packed(report.path, torch.device("cpu"))
                v = error_percent(loaded, val) if val else float("nan")
                t = error_percent(loaded, data)
                candidates.append((r, alpha, epochs, report.ratio, report.file_bytes, v))
                seen = f"validation {v:.2f}%, " if val else ""
                print(f"round {r} + int4 QAT {epochs} epochs, distill {alpha:g}: {report.file_bytes:,} bytes, "
                      f"{report.ratio:.1f}x, {seen}test {t:.2f}% {clock()}", flush=True)
    if val is None:
        return
    eligible = [c for c in candidates if 100 * (1 - 1 / c[3]) >= args.min_reduction]
    if not eligible:
        print(f"no candidate is {args.min_reduction}% smaller")
        return
    r, alpha, epochs, ratio, _, v = min(eligible, key=lambda c: (c[5], c[4]))
    print(f"chosen: round {r}, {epochs} QAT epochs, distill {alpha:g} "
          f"({ratio:.1f}x, validation {v:.2f}% vs baseline {base_val:.2f}%)")


if __name__ == "__main__":
    main()
