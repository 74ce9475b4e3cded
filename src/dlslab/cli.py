"""The `dlslab` command: parse, call, print. Nothing here trains or computes.

Core commands are below; study-specific commands (`dlslab denoise`, `dlslab compress`,
`dlslab speakers`, `dlslab impute`, `dlslab data speech`) live in `dlslab/commands/*.py`,
each module defining `register(subparsers, groups)`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path
from typing import Any

from dlslab.errors import DlsError, UsageError


def cmd_list(args: argparse.Namespace) -> int:
    from dlslab.catalog import STUDIES

    print(f"{'#':>2}  {'study':<17} presets            question")
    for s in STUDIES.values():
        presets = ", ".join(s.load().PRESETS)
        print(f"{s.number:>2}  {s.name:<17} {presets:<18} {s.question}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from dlslab import config
    from dlslab.catalog import get_study

    module = get_study(args.study).load()
    print(f"{args.study}: config fields (set with --set key=value)\n")
    for name, tp, default, help_text in config.describe(module.Config):
        print(f"  {name:<22} {tp:<28} default {default!r}\n      {help_text}")
    print("\npresets:")
    for preset, values in module.PRESETS.items():
        print(f"  {preset}: " + (", ".join(f"{k}={v!r}" for k, v in values.items()) or "(defaults)"))
    return 0


def _data_plan(plans: list[Any], data_dir: str | None) -> None:
    from dlslab.data.locate import locate

    print("data plan:", file=sys.stderr)
    for plan in plans:
        for need in plan.module.data_needs(plan.cfg):
            print(f"  {plan.info.name:<17} {need:<14} {locate(need, data_dir).describe()}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from dlslab import config, runner

    if args.config:
        if args.target:
            raise UsageError("give either a STUDY or --config RUN_DIR/config.yaml, not both")
        plans = [runner.plan_from_file(args.config)]
    else:
        if not args.target:
            raise UsageError("which study? give a STUDY name or 'all' (see `dlslab list`)")
        overrides = config.parse_set_args(args.set or [])
        if args.ray:
            overrides["ray"] = args.ray
        names = runner.study_names(args.target)
        if args.target == "all":
            runner.check_overrides_for_all(overrides)
        # resolve every config first: a bad key or value fails before anything runs
        plans = [runner.plan_study(n, args.preset, overrides, args.seed) for n in names]
    if len(plans) > 1:
        _data_plan(plans, args.data_dir)
    side_by_side = args.jobs > 1 and len(plans) > 1
    ended: list[str] = []

    def report(outcome: Any) -> None:
        ended.append(outcome.study)
        if outcome.status in ("failed", "no-data"):
            print(f"{outcome.study}: {outcome.status}: {outcome.message}", file=sys.stderr)
        elif outcome.status == "reused":
            print(f"{outcome.study}: reused finished run {outcome.dir} ({outcome.message})", file=sys.stderr)
        elif side_by_side and not args.quiet:  # the workers show no progress bars: one line per study
            print(f"{outcome.study}: finished in {outcome.seconds:.0f} s ({len(ended)}/{len(plans)})", file=sys.stderr)

    t0 = time.perf_counter()
    outcomes = runner.execute_many(plans, jobs=args.jobs, out=args.out, device=args.device, force=args.force,
                                   data_dir=args.data_dir, quiet=args.quiet, on_outcome=report)
    if len(outcomes) > 1:
        _summary(outcomes, time.perf_counter() - t0)
    if (Path(args.out) / "index.html").exists():
        print(f"report: {Path(args.out) / 'index.html'} (open it in a browser)", file=sys.stderr)
    for o in outcomes:
        if o.dir is not None and o.status in ("finished", "reused"):
            print(f"run: {o.dir}")
    if len(outcomes) == 1 and outcomes[0].status == "failed":
        return outcomes[0].exit_code
    if any(o.status == "failed" for o in outcomes):
        return 1
    if len(outcomes) == 1 and outcomes[0].status == "no-data":
        return 2
    return 0


def _summary(outcomes: list[Any], wall: float) -> None:
    from dlslab.report.html import flatten_headline

    print("\nsummary:", file=sys.stderr)
    for o in outcomes:
        head = flatten_headline(o.metrics.get("headline", {})) if o.metrics else {}
        shown = (o.metrics or {}).get("answer") or ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(head.items())[:4])
        label = {"finished": "finished", "reused": "finished (reused)",
                 "no-data": "NOT RUN: data missing", "failed": "FAILED"}[o.status]
        print(f"  {o.study:<17} {label:<22} {o.seconds:7.1f} s  {shown}", file=sys.stderr)
    done = sum(o.status in ("finished", "reused") for o in outcomes)
    not_run = sum(o.status == "no-data" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    total = sum(o.seconds for o in outcomes)
    print(f"  {done} finished, {not_run} not run, {failed} failed; {total:.1f} s of study time, "
          f"{wall:.1f} s wall", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from dlslab.report.site import build_site, compare_runs

    if args.compare:
        print(f"report: {compare_runs([Path(p) for p in args.compare])}")
        return 0
    index = build_site(Path(args.runs_dir))
    print(f"report: {index}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from dlslab.data.locate import locate, require
    from dlslab.data.registry import DATASETS

    names = [args.name] if args.name else list(DATASETS)
    for name in names:
        loc = locate(name, args.data_dir)
        if args.action == "status":
            print(f"{name:<14} {loc.describe()}")
        elif args.action == "verify":
            if loc.dataset.kind != "files" or loc.status not in ("found",):
                print(f"{name:<14} {loc.describe()}")
                continue
            from dlslab.data.images import verify

            for row in verify(name, args.data_dir):
                print(f"{name:<14} {row['status']:<20} {row['bytes']:>10} B  {row['sha256'][:16]}…  {row['file']}")
        elif args.action == "fetch":
            if loc.dataset.kind == "files":
                print(f"{name:<14} {require(name, args.data_dir)}")
            else:
                print(f"{name:<14} {loc.describe()}")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="dlslab", description="Twelve classic deep-learning studies, "
                                     "end to end: train, evaluate, write a report.")
    from dlslab import __version__

    parser.add_argument("--version", action="version", version=f"dlslab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="the studies, their presets and status")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a study's config fields, defaults and presets")
    p.add_argument("study")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("run", help="run a study (or all) and write its report",
                       description="Run STUDY (or all). Ends with one line `run: PATH` per study.")
    p.add_argument("target", nargs="?", metavar="STUDY|all")
    p.add_argument("--preset", default="quick", help="smoke (seconds), quick (default), full")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--out", default="runs", help="runs folder (default ./runs)")
    p.add_argument("--force", action="store_true", help="run again even if a finished run has this config")
    p.add_argument("--config", help="repeat a run: path to RUN_DIR/config.yaml")
    p.add_argument("--data-dir", help="look for datasets here first")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="with all: run N studies at a time, each "
                   "in its own process on 1/N of the CPU threads (default 1; `make demo` uses 2)")
    p.add_argument("--ray", metavar="ADDRESS", help="run a sweep's configurations as tasks on this Ray "
                   "cluster (HOST:PORT; studies with a `ray` field)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="build the HTML report site over a runs folder")
    p.add_argument("runs_dir", nargs="?", default="runs")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="compare these run folders of one study "
                   "(headline numbers with deltas, config differences) on one page")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("data", help="datasets: status, verify, fetch (and builders)")
    data_sub = p.add_subparsers(dest="action", metavar="ACTION")
    data_sub.required = True
    for action, text in (("status", "where each dataset was found"),
                         ("verify", "check files against known sha256 checksums"),
                         ("fetch", "download what is missing (needs network)")):
        q = data_sub.add_parser(action, help=text)
        q.add_argument("name", nargs="?", help="one dataset (default: all)")
        q.add_argument("--data-dir", help="look here first")
        q.set_defaults(func=cmd_data)

    groups = {"root": sub, "data": data_sub}
    from dlslab import commands

    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"dlslab.commands.{mod}").register(sub, groups)
    return parser, groups


def main(argv: list[str] | None = None) -> int:
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DlsError as exc:
        print(f"dlslab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ndlslab: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
