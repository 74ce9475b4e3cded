"""Running a study: resolve its config, find or make its run folder, lock it, run, record.

A run folder is `OUT/STUDY/DATE-TIME-HASH`, where HASH identifies (study, config, seed,
device type). A finished folder with the same HASH is reused unless `force`; an unfinished
one is resumed (the engine's checkpoints pick up where it stopped). Finishing a run writes
`metrics.json` (atomically; its presence means the study's work is done) and then the
report; a finished run found without its `report.html` (killed in between) gets it rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from dlslab import atomic, config
from dlslab.errors import BadFileError, ConfigError, DataError, DlsError, UsageError, did_you_mean
from dlslab.runs import Run
from dlslab.catalog import STUDIES, StudyInfo, get_study
from dlslab.progress import StudyDisplay
from dlslab.train.engine import resolve_device, seed_everything


@dataclass
class Outcome:
    """How one study's run ended: finished, reused, no-data or failed."""

    study: str
    status: str
    dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0
    exit_code: int = 0  # for a failure: 2 when the study was given bad input, else 1


@dataclass
class Plan:
    """What `run` will do for one study, resolved before anything runs."""

    info: StudyInfo
    module: ModuleType
    cfg: Any
    preset: str | None


def plan_study(name: str, preset: str | None = "quick", overrides: dict[str, Any] | None = None,
               seed: int | None = None) -> Plan:
    """Resolve a study's config (defaults -> preset -> overrides -> seed). Raises UsageError."""
    info = get_study(name)
    module = info.load()
    cfg = config.resolve(module.Config, module.PRESETS, preset, overrides)
    if seed is not None:
        cfg = config.apply_overrides(cfg, {"seed": seed})
    check(module, cfg)
    return Plan(info, module, cfg, preset)


def check(module: ModuleType, cfg: Any) -> None:
    """The study's own range checks (`check(cfg)`, optional), run when a run is planned."""
    if hasattr(module, "check"):
        module.check(cfg)


def plan_from_file(path: str | Path) -> Plan:
    """The plan recorded in a run folder's config.yaml, to repeat that run: the study's
    defaults, then its `preset` (which must be one of the study's), then its `config`."""
    data = config.load_yaml(path)
    info = get_study(data["study"])
    module = info.load()
    preset = data.get("preset")
    if preset is not None and preset not in module.PRESETS:
        raise ConfigError(f"{path}: unknown preset {preset!r} for {info.name}; valid presets: "
                          f"{', '.join(module.PRESETS)} (or null for the defaults)")
    cfg = config.resolve(module.Config, module.PRESETS, preset)
    cfg = config.apply_overrides(cfg, data["config"], source=str(path))
    check(module, cfg)
    return Plan(info, module, cfg, preset)


def run_hash(study: str, cfg: Any, device: torch.device) -> str:
    key = json.dumps({"study": study, "config": config.to_dict(cfg), "device": device.type},
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def find_runs(out: Path, study: str, digest: str | None = None) -> list[Path]:
    """Run folders of `study` under `out` (optionally with config hash `digest`), oldest first."""
    pattern = f"*-{digest}" if digest else "*-*"
    return sorted(p for p in (out / study).glob(pattern) if p.is_dir())


def is_finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status") == "finished"
    except (OSError, ValueError):
        return False


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device, seed: int) -> dict[str, Any]:
    import numpy

    from dlslab import __version__

    return {
        "dlslab": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": numpy.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "seed": seed, "git_commit": _git_commit(), "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _config_lock(study_dir: Path, digest: str) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock per (study, config hash) under the runs folder, held from looking for
    an earlier run to writing metrics.json: two processes never write the same run, and a
    second process asking for the same config waits, then reuses (or resumes) the first's."""
    return atomic.exclusive(study_dir / f".{digest}.lock", f"another process is running this same config "
                            f"({study_dir.name}, hash {digest}); waiting for it to finish")


def _new_run_dir(out: Path, study: str, digest: str) -> Path:
    base = out / study
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        d = base / (f"{stamp}-{digest}" if i == 0 else f"{stamp}.{i}-{digest}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise DlsError(f"could not create a run folder under {base}")


def execute(plan: Plan, *, out: str | Path = "runs", device: str = "auto", force: bool = False,
            data_dir: str | Path | None = None, quiet: bool = False) -> Outcome:
    """Run one planned study and record it. Returns an Outcome; raises only on bad usage
    and KeyboardInterrupt (the run folder is left resumable)."""
    name = plan.info.name
    out = Path(out)
    dev = resolve_device(device)
    digest = run_hash(name, plan.cfg, dev)
    with _config_lock(out / name, digest):
        return _execute_locked(plan, out, dev, digest, force, data_dir, quiet)


def execute_many(plans: list[Plan], *, jobs: int = 1, out: str | Path = "runs",
                 on_outcome: Callable[[Outcome], None] | None = None, **options: Any) -> list[Outcome]:
    """Run `plans` (`execute`'s `options` for each) one after another or, with `jobs` > 1,
    that many at a time in worker processes that share this process's CPU threads (each
    worker gets threads // jobs, at least 1, and shows no progress bars). Returns the
    outcomes in plan order; `on_outcome` sees each one as it ends. Ctrl-C stops the workers;
    their runs resume from their last checkpoints when the same command runs again."""
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more studies to run at a time")
    if jobs == 1 or len(plans) == 1:
        outcomes = []
        for plan in plans:
            outcomes.append(execute(plan, out=out, **options))
            if on_outcome is not None:
                on_outcome(outcomes[-1])
        return outcomes
    threads = max(1, torch.get_num_threads() // jobs)
    options = {**options, "out": str(out), "quiet": True}
    results: list[Outcome | None] = [None] * len(plans)
    before = set(multiprocessing.active_children())
    # spawn, not fork: a forked child would inherit this process's OpenMP and torch state
    pool = ProcessPoolExecutor(min(jobs, len(plans)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(threads,))
    try:
        futures = {pool.submit(_execute_task, plan.info, plan.preset, config.to_dict(plan.cfg), options): i
                   for i, plan in enumerate(plans)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except BrokenProcessPool:
                raise DlsError(f"a worker process died (killed, or out of memory?) while {plans[i].info.name} "
                               "or a study beside it ran; run the same command again: finished studies are "
                               "reused and the others resume from their last checkpoints") from None
            if on_outcome is not None:
                on_outcome(results[i])
    except BaseException:
        _stop(set(multiprocessing.active_children()) - before)  # the workers ignore SIGINT: stop them here
        # then let the pool's own thread see them gone and finish: until it has, a worker it reaped
        # may still look alive to this thread
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    from dlslab.report.html import render_index

    render_index(Path(out))  # once all are done: workers that finished together may each have missed the other
    return [r for r in results if r is not None]


def _stop(workers: set[multiprocessing.Process]) -> None:
    """Terminate the worker processes and wait until they are gone."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(timeout=30)
        if worker.is_alive():
            worker.kill()
            worker.join()


def _worker_init(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent, which stops the pool
    torch.set_num_threads(threads)


def _execute_task(info: StudyInfo, preset: str | None, values: dict[str, Any], options: dict[str, Any]) -> Outcome:
    """One study in a worker process: its plan rebuilt from the resolved config (modules do not pickle)."""
    module = info.load()
    cfg = config.apply_overrides(config.resolve(module.Config, module.PRESETS, preset), values)
    return execute(Plan(info, module, cfg, preset), **options)


def _execute_locked(plan: Plan, out: Path, dev: torch.device, digest: str, force: bool,
                    data_dir: str | Path | None, quiet: bool) -> Outcome:
    name = plan.info.name
    existing = find_runs(out, name, digest)
    finished = [d for d in existing if is_finished(d)]
    if finished and not force:
        metrics = json.loads((finished[-1] / "metrics.json").read_text())
        message = "same config and seed already finished; --force runs it again"
        if not (finished[-1] / "report.html").exists():  # killed after metrics.json: finish it
            _render_reports(out, finished[-1])
            message = "same config and seed already finished (its missing report.html was rebuilt)"
        return Outcome(name, "reused", finished[-1], metrics, message)
    unfinished = [d for d in existing if not is_finished(d)]
    run_dir = unfinished[-1] if unfinished and not force else _new_run_dir(out, name, digest)
    resumed = run_dir in unfinished and not force

    run = Run(run_dir, name, plan.cfg, dev, resumed=resumed, quiet=quiet,
              data_dir=Path(data_dir) if data_dir else None)
    atomic.write_text(run_dir / "config.yaml", config.dump_yaml(name, plan.preset, plan.cfg))
    atomic.write_json(run_dir / "env.json", environment(dev, plan.cfg.seed))
    run.log(event="resume" if resumed else "start", preset=plan.preset)
    run.info(f"== {name} ({plan.preset or 'custom'}) -> {run_dir}" + ("  [resuming]" if resumed else ""))
    seed_everything(plan.cfg.seed)
    t0 = time.perf_counter()
    display = StudyDisplay(f"{name} ({plan.preset or 'custom'})", expected_seconds(out, name, plan.preset),
                           enabled=not quiet)
    try:
        with display:
            metrics = plan.module.run(plan.cfg, run)
    except BadFileError as exc:  # a corrupt, refused or wrong-kind file: not "data missing"
        run.log(event="failed", error=str(exc))
        return Outcome(name, "failed", run_dir, message=str(exc), exit_code=exc.exit_code)
    except DataError as exc:
        run.log(event="no-data", error=str(exc))
        return Outcome(name, "no-data", run_dir, message=str(exc))
    except DlsError as exc:
        run.log(event="failed", error=str(exc))
        return Outcome(name, "failed", run_dir, message=str(exc), exit_code=exc.exit_code)
    seconds = time.perf_counter() - t0
    if "headline" not in metrics:
        raise DlsError(f"study {name} returned no 'headline' metrics")
    record = {"study": name, "status": "finished", "preset": plan.preset,
              "seconds": round(seconds, 2), **metrics, **report_fields(plan, run)}
    atomic.write_json(run_dir / "metrics.json", record)
    run.log(event="finished", seconds=seconds)
    _render_reports(out, run_dir)
    return Outcome(name, "finished", run_dir, record, seconds=seconds)


def expected_seconds(out: Path, name: str, preset: str | None) -> float | None:
    """How long the last finished run of study `name` with `preset` under `out` took (the
    progress display's ETA); None when there is none."""
    latest: tuple[float, float] | None = None
    for path in (out / name).glob("*/metrics.json"):
        try:
            record = json.loads(path.read_text())
            if record.get("status") == "finished" and record.get("preset") == preset:
                mtime = path.stat().st_mtime
                if latest is None or mtime > latest[0]:
                    latest = (mtime, float(record["seconds"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return latest[1] if latest else None


def _render_reports(out: Path, run_dir: Path) -> None:
    """The run's report.html, its study's comparison page and the runs folder's index."""
    from dlslab.report.html import render_index, render_run
    from dlslab.report.site import render_compare

    render_run(run_dir)
    render_compare(run_dir.parent)
    render_index(out)


def report_fields(plan: Plan, run: Run) -> dict[str, Any]:
    """What metrics.json keeps for the report: the answer sentence, the targets, the test
    data's fingerprint and the config fields that differ from the preset's defaults."""
    items = run.items()
    fields: dict[str, Any] = {}
    answer = [i["text"] for i in items if i["kind"] == "answer"]
    if answer:
        fields["answer"] = answer[0]
    targets = [{k: i[k] for k in ("title", "value", "goal", "met", "anchor")} for i in items if i["kind"] == "target"]
    if targets:
        fields["targets"] = targets
    test_data = [i["sha256"] for i in items if i["kind"] == "test_data"]
    if test_data:
        fields["test_data_sha256"] = test_data[0]
    base = config.to_dict(config.resolve(plan.module.Config, plan.module.PRESETS,
                                         plan.preset if plan.preset in plan.module.PRESETS else None))
    mine = config.to_dict(plan.cfg)
    fields["config_changes"] = {k: {"preset": base.get(k), "run": v} for k, v in mine.items() if base.get(k) != v}
    return fields


def study_names(target: str) -> list[str]:
    """The studies `dlslab run TARGET` runs: one by name, or all twelve for 'all'."""
    if target == "all":
        return list(STUDIES)
    if target not in STUDIES:
        raise UsageError(f"unknown study {target!r}{did_you_mean(target, [*STUDIES, 'all'])}; "
                         f"valid: {', '.join(STUDIES)}, or all")
    return [target]


def check_overrides_for_all(overrides: dict[str, Any]) -> None:
    if overrides:
        raise UsageError("--set applies to one study; with 'run all' use a preset "
                         "(or run the studies one by one)")
