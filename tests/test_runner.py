"""Run folders: reuse, --force, resume after kill -9, locking, atomic metrics, the CLI contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import toy_cli
from dlslab import cli, runner
from dlslab.errors import DlsError
from dlslab.catalog import STUDIES

TESTS = Path(__file__).parent


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlslab.studies.toy", toy_cli.toy_study)
    monkeypatch.setitem(STUDIES, "toy", toy_cli.StudyInfo(99, "toy", "toy", "toy"))


def _run(args, capsys):
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_writes_a_complete_folder_and_reuses_it(toy, tmp_path, capsys) -> None:
    code, out, err = _run(["run", "toy", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu"], capsys)
    assert code == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("run: ")
    run_dir = Path(last[5:])
    for name in ("config.yaml", "env.json", "log.jsonl", "metrics.json", "report.html", "report.json", "val_acc.png"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished" and 0 < metrics["headline"]["val_acc"] <= 1
    env = json.loads((run_dir / "env.json").read_text())
    assert env["seed"] == 0 and env["torch"] and "command" in env
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["config"]["epochs"] == 3
    assert (tmp_path / "index.html").exists() and f"report: {tmp_path / 'index.html'}" in err
    # the same config and seed again: reused, not recomputed
    code, out2, err2 = _run(["run", "toy", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu"], capsys)
    assert code == 0 and "reused" in err2 and out2.strip().splitlines()[-1] == last
    # --force: a new folder; another seed: another folder
    _run(["run", "toy", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu", "--force"], capsys)
    _run(["run", "toy", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu", "--seed", "1"], capsys)
    assert len([p for p in (tmp_path / "toy").iterdir() if p.is_dir()]) == 3
    # repeating from config.yaml reuses a finished run of the same config (same hash)
    code, out3, err3 = _run(["run", "--config", str(run_dir / "config.yaml"), "--out", str(tmp_path),
                             "--device", "cpu"], capsys)
    assert code == 0 and "reused" in err3 and out3.strip().endswith(run_dir.name.rsplit("-", 1)[1])


@pytest.mark.parametrize("args, message", [
    (["run", "nope"], "unknown study 'nope'; valid: mlp-hparams"),
    (["run", "toy", "--set", "bogus=1"], "valid keys: seed, epochs, lr"),
    (["run", "toy", "--set", "epochs=many"], "expected an integer"),
    (["run", "toy", "--preset", "huge"], "valid presets: smoke, quick, full"),
    (["run", "all", "--set", "epochs=1"], "--set applies to one study"),
    (["run", "toy", "--device", "tpu"], "unknown device"),
])
def test_bad_usage_exits_2_and_writes_nothing(toy, tmp_path, capsys, args, message) -> None:
    code, out, err = _run(args + ["--out", str(tmp_path / "runs")], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "runs").exists()


def test_a_finished_run_without_its_report_gets_it_rebuilt(toy, tmp_path, capsys) -> None:
    """Killed between metrics.json and report.html: the rerun finishes the run."""
    args = ["run", "toy", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu"]
    code, out, _ = _run(args, capsys)
    run_dir = Path(out.strip().splitlines()[-1][5:])
    (run_dir / "report.html").unlink()
    code, out, err = _run(args, capsys)
    assert code == 0 and out.strip().endswith(str(run_dir))
    assert "its missing report.html was rebuilt" in err
    assert "Validation accuracy" in (run_dir / "report.html").read_text()


def test_a_config_files_preset_is_checked_and_applied(toy, tmp_path, capsys) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("study: toy\npreset: smoke\nconfig: {lr: 0.5}\n")
    plan = runner.plan_from_file(path)
    assert plan.preset == "smoke" and plan.cfg == runner.plan_study("toy", "smoke", {"lr": 0.5}).cfg
    path.write_text("study: toy\npreset: nosuch\nconfig: {}\n")
    code, out, err = _run(["run", "--config", str(path), "--out", str(tmp_path / "runs")], capsys)
    assert code == 2 and f"{path}: unknown preset 'nosuch' for toy; valid presets: smoke, quick, full" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content, message", [
    (b"study: toy\nconfig: {}\n# caf\xe9\n", "not a text file (not UTF-8: byte 27)"),
    (b"study: [1, 2]\nconfig: {}\n", "study must be a study name, not [1, 2]"),
    (b"study: toy\npreset: [smoke]\nconfig: {}\n", "preset must be a preset name or null"),
    (b"- study\n- toy\n", "expected keys 'study' and 'config'"),
    (None, "is a folder"),
])
def test_bad_config_files_exit_2_with_one_line(toy, tmp_path, capsys, content, message) -> None:
    path = tmp_path / "config.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    code, out, err = _run(["run", "--config", str(path), "--out", str(tmp_path / "runs")], capsys)
    assert code == 2 and err.startswith(f"dlslab: error: {path}: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_a_refused_file_is_a_failure_not_missing_data(toy, tmp_path, capsys, monkeypatch) -> None:
    from dlslab.errors import UnsafeFileError

    def refuse(cfg, run):
        raise UnsafeFileError("teacher.pt: refused to load: it names the Python object posix.system")

    monkeypatch.setattr(toy_cli.toy_study, "run", refuse)
    outcome = runner.execute(runner.plan_study("toy", "smoke"), out=tmp_path, device="cpu", quiet=True)
    assert outcome.status == "failed" and outcome.exit_code == 2 and "refused to load" in outcome.message
    code, out, err = _run(["run", "toy", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu"], capsys)
    assert code == 2 and "toy: failed: teacher.pt: refused to load" in err and "no-data" not in err


def _toy_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TESTS / "toy_cli.py"), "run", "toy", "--preset", "quick", "--out", str(out),
            "--device", "cpu", *extra]


def test_kill_9_then_rerun_resumes_to_the_same_metrics(tmp_path) -> None:
    env = os.environ | {"TOY_SLEEP": "0.4"}
    proc = subprocess.Popen(_toy_cmd(tmp_path / "killed"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = list((tmp_path / "killed" / "toy").glob("*/log.jsonl"))
        if logs and sum('"epoch": ' in line for line in logs[0].read_text().splitlines()) >= 2:
            log = logs[0]
            break
        time.sleep(0.05)
    assert log is not None, "the run never reached epoch 2"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = log.parent
    assert not (run_dir / "metrics.json").exists()
    resumed = subprocess.run(_toy_cmd(tmp_path / "killed"), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and resumed.stdout.strip().endswith(str(run_dir))
    clean = subprocess.run(_toy_cmd(tmp_path / "clean"), capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    a = json.loads((run_dir / "metrics.json").read_text())
    b = json.loads(next((tmp_path / "clean" / "toy").glob("*/metrics.json")).read_text())
    assert a["headline"] == b["headline"] and a["final_weights"] == b["final_weights"]
    assert a["train_loss"] == b["train_loss"]


def test_two_processes_on_the_same_runs_folder_do_not_clobber(tmp_path) -> None:
    env = os.environ | {"TOY_SLEEP": "0.2"}
    procs = [subprocess.Popen(_toy_cmd(tmp_path, "--seed", str(s)), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    same = subprocess.Popen(_toy_cmd(tmp_path, "--seed", "1"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs + [same]]
    assert results[0][2] == 0 and results[1][2] == 0
    dirs = [Path(r[0].strip().splitlines()[-1][5:]) for r in results[:2]]
    assert dirs[0] != dirs[1]
    for d, seed in zip(dirs, (1, 2)):
        m = json.loads((d / "metrics.json").read_text())
        assert m["status"] == "finished"
        assert yaml.safe_load((d / "config.yaml").read_text())["config"]["seed"] == seed
    # the third process asked for the config that process 1 was running: whichever came
    # second waited for the first and reused its finished run, so both name the same folder
    out, err, code = results[2]
    assert code == 0 and out.strip().endswith(str(dirs[0]))
    assert "waiting for it to finish" in err + results[0][1] and "reused" in err + results[0][1]


def test_full_disk_is_a_clear_error_and_keeps_earlier_results(tmp_path) -> None:
    first = subprocess.run(_toy_cmd(tmp_path), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0
    done = Path(first.stdout.strip().splitlines()[-1][5:])
    before = (done / "metrics.json").read_bytes()
    # a file-size limit makes every write past 2 KiB fail with EFBIG, as a full disk would
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
              f"sys.argv = {_toy_cmd(tmp_path, '--seed', '5')[1:]!r}; "
              f"import runpy; runpy.run_path({str(TESTS / 'toy_cli.py')!r}, run_name='__main__')")
    full = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert full.returncode == 1, full.stderr
    assert "no space left" in full.stderr and "Traceback" not in full.stderr
    assert (done / "metrics.json").read_bytes() == before
    assert runner.is_finished(done)


def test_jobs_below_one_is_a_usage_error(toy, tmp_path, capsys) -> None:
    code, _, err = _run(["run", "all", "--jobs", "0", "--out", str(tmp_path)], capsys)
    assert code == 2 and "--jobs 0" in err and not any(tmp_path.iterdir())


def test_studies_side_by_side_stop_on_ctrl_c_resume_and_match_one_thread_runs(data_root, tmp_path) -> None:
    """`--jobs 2`: each study in its own worker on half the threads. Ctrl-C (here: raised when
    the first study ends) stops the other worker; the same call again reuses the finished run
    and completes the other; each result is exactly that of the study run alone on as many threads."""
    import multiprocessing

    import torch

    names = ["gan-impute", "mlp-hparams"]
    plans = [runner.plan_study(n, "smoke") for n in names]
    before = set(multiprocessing.active_children())

    def interrupt(outcome: runner.Outcome) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.execute_many(plans, jobs=2, out=tmp_path / "side", device="cpu", on_outcome=interrupt)
    assert set(multiprocessing.active_children()) <= before, "the workers must be stopped"
    ended: list[str] = []
    side = runner.execute_many(plans, jobs=2, out=tmp_path / "side", device="cpu",
                               on_outcome=lambda o: ended.append(o.study))
    assert [o.study for o in side] == names and sorted(ended) == sorted(names)
    assert "reused" in [o.status for o in side] and all(o.status in ("finished", "reused") for o in side)
    index = (tmp_path / "side" / "index.html").read_text()
    assert all(name in index for name in names)

    threads, before = max(1, torch.get_num_threads() // 2), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = runner.execute_many(plans, out=tmp_path / "alone", device="cpu", quiet=True)
    finally:
        torch.set_num_threads(before)
    def results(o: runner.Outcome) -> dict:  # the headline without its wall times
        return {k: v for k, v in o.metrics["headline"].items() if not k.endswith("_s")}

    for s, a in zip(side, alone, strict=True):
        assert a.status == "finished" and results(s) == results(a) and results(a), s.study
        assert json.loads((s.dir / "env.json").read_text())["torch_threads"] == threads


def test_a_worker_that_dies_is_a_clear_error_not_a_hang(data_root, tmp_path) -> None:
    """A worker killed from outside (the OOM killer, kill -9) stops `--jobs` with an error that
    says to run again; the run that was killed is left to resume."""
    import multiprocessing
    import threading

    plans = [runner.plan_study(n, "smoke") for n in ("mlp-hparams", "gan-impute")]
    before = set(multiprocessing.active_children())

    def kill_a_worker() -> None:
        for _ in range(600):
            workers = set(multiprocessing.active_children()) - before
            if workers:
                os.kill(next(iter(workers)).pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    with pytest.raises(DlsError, match="worker process died.*run the same command again"):
        runner.execute_many(plans, jobs=2, out=tmp_path, device="cpu")
    killer.join()
    assert set(multiprocessing.active_children()) <= before, "the other worker must be stopped too"
