"""Studies side by side (`dlslab run ... --jobs 2`) against one after another, in one process.

The same studies and preset, run (a) one after another, each on all of torch's threads, as
`dlslab run all` does without --jobs, and (b) `--jobs` at a time in worker processes that
split the threads (`runner.execute_many`). Each run starts from an empty runs folder and
`--force`, so nothing is reused; the caches (datasets, reference classifiers, speech corpora)
are warmed by a first untimed run, so both timings are of training and evaluation only.
Prints both wall times and the ratio, and checks that every study finished in both.

    python benchmarks/run_jobs.py [--studies vae pixel-lstm] [--preset quick] [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dlslab import runner
from common import machine, write_json


def wall_time(plans: list[runner.Plan], jobs: int, out: Path) -> float:
    t0 = time.perf_counter()
    outcomes = runner.execute_many(plans, jobs=jobs, out=out, device="cpu", force=True, quiet=True)
    seconds = time.perf_counter() - t0
    bad = [f"{o.study}: {o.status} {o.message}" for o in outcomes if o.status != "finished"]
    if bad:
        raise SystemExit("not finished: " + "; ".join(bad))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", default=["vae", "pixel-lstm"])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    plans = [runner.plan_study(name, args.preset) for name in args.studies]
    with tempfile.TemporaryDirectory() as tmp:
        runner.execute_many(plans, out=Path(tmp) / "warm", device="cpu", quiet=True)  # caches, untimed
        one_by_one = wall_time(plans, 1, Path(tmp) / "sequential")
        side_by_side = wall_time(plans, args.jobs, Path(tmp) / "side")
    result = {"machine": machine(), "studies": args.studies, "preset": args.preset, "jobs": args.jobs,
              "torch_threads": torch.get_num_threads(), "one_after_another_s": round(one_by_one, 1),
              "side_by_side_s": round(side_by_side, 1), "speedup": round(one_by_one / side_by_side, 2)}
    print(f"{', '.join(args.studies)} ({args.preset}) on {result['torch_threads']} threads: one after another "
          f"{one_by_one:.1f} s; {args.jobs} side by side ({max(1, result['torch_threads'] // args.jobs)} thread(s) "
          f"each) {side_by_side:.1f} s; {one_by_one / side_by_side:.2f}x")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
