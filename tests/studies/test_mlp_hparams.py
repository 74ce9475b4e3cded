"""mlp-hparams: a smoke sweep learns, the zeros initializer is caught as stuck, bad factors are
clear errors, and a grid runs as tasks on a local Ray head."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from study_runs import run_smoke

from dlslab import runner
from dlslab.errors import ConfigError
from dlslab.train import sweep


def test_smoke_sweep_learns_and_catches_the_zeros_init(data_root):
    outcome = run_smoke("mlp-hparams")
    metrics = json.loads((outcome.dir / "metrics.json").read_text())
    assert metrics["headline"]["best_test_acc"]["mnist"] > 0.7  # chance is 0.1
    rows = {r["config"]: r for r in metrics["configs"]}
    zeros = next(r for r in rows.values() if r["init"] == "zeros")
    assert zeros["failed"] and zeros["test_acc"] < 0.2
    assert zeros["why"].startswith("symmetry never broken")
    assert all(not r["failed"] for r in rows.values() if r["init"] != "zeros")
    assert metrics["headline"]["failed_configs"]["mnist"] == 1
    report = json.loads((outcome.dir / "report.json").read_text())["items"]
    findings = next(i["text"] for i in report if i["title"] == "mnist: findings")
    assert "init: default wins" in findings and "symmetry never broken" in findings
    assert (outcome.dir / "curves-mnist-width.png").exists()


def test_smoke_sweep_with_halving_stops_the_zeros_init_and_keeps_the_best(data_root):
    # workers=2 (the full preset's) falls back to one process: halving decides from every result
    outcome = run_smoke("mlp-hparams", {"halving": True, "halving_rate": 2, "epochs": 3, "workers": 2})
    metrics = json.loads((outcome.dir / "metrics.json").read_text())
    rows = {r["config"]: r for r in metrics["configs"]}
    zeros = next(r for r in rows.values() if r["init"] == "zeros")
    assert zeros["stopped"] == 1 and zeros["epochs_trained"] == 1  # stopped at the first rung
    best = rows[metrics["best_config"]["mnist"]]
    assert best["stopped"] == 0 and best["epochs_trained"] == 3 and best["test_acc"] > 0.7
    halving = metrics["halving"]
    assert halving["stopped"]["1"] >= 1 and halving["epochs_trained"] < halving["epochs_full"]
    assert metrics["headline"]["halving_epochs_saved"] > 0


def test_pad_ratio_one_trains_every_shape_in_its_own_stack_with_the_same_results(data_root):
    design = {"factors": "init,width,depth", "inits": "default,xavier_uniform,kaiming_uniform,orthogonal",
              "widths": "32,64", "depths": "1,2", "width": 64, "epochs": 1}
    padded, alone = run_smoke("mlp-hparams", design), run_smoke("mlp-hparams", design | {"pad_ratio": 1})

    def shapes(out):  # the stacks trained, by shape: "sweep-mnist-2x64-<hash>" -> "2x64"
        records = [json.loads(line) for line in (out.dir / "log.jsonl").read_text().splitlines()]
        return {r["stage"].split("-")[2] for r in records if "stage" in r}

    def val_acc(out):
        return {r["config"]: r["val_acc"] for r in json.loads((out.dir / "metrics.json").read_text())["configs"]}

    assert shapes(padded) == {"2x64"} and shapes(alone) == {"2x64", "2x32", "1x64"}
    a, b = val_acc(padded), val_acc(alone)  # a padded member computes its own network
    assert a.keys() == b.keys() and len(a) == 6 and all(abs(a[k] - b[k]) < 0.01 for k in a)
    with pytest.raises(ConfigError, match="pad_ratio"):
        runner.plan_study("mlp-hparams", "smoke", {"pad_ratio": 0.5})


def test_bad_factor_names_and_values_are_clear_errors():
    with pytest.raises(ConfigError, match="factors"):
        runner.plan_study("mlp-hparams", "smoke", {"factors": "optimizer,colour"})
    with pytest.raises(ConfigError, match="inits"):
        runner.plan_study("mlp-hparams", "smoke", {"inits": "glorot"})
    with pytest.raises(ConfigError, match="invalid value"):
        runner.plan_study("mlp-hparams", "smoke", {"factors": "lr", "lrs": "0.1,-1"})
    with pytest.raises(ConfigError, match="at least two factors"):
        runner.plan_study("mlp-hparams", "smoke", {"design": "grid", "factors": "lr"})
    for key, value in (("seeds", 0), ("train_size", -1), ("tune_lrs", "0.1,0"), ("halving_rate", 0)):
        with pytest.raises(ConfigError, match=key):
            runner.plan_study("mlp-hparams", "smoke", {key: value})


def test_design_has_best_lr_per_optimizer_and_deep_activations():
    cfg = runner.plan_study("mlp-hparams", "quick").cfg
    points = sweep.design_points(sweep.DesignSpec.of(cfg))
    tuned = {(p["optimizer"], p["lr"]) for label, p in points if label == "optimizer"}
    assert tuned == {(o, lr) for o in cfg.optimizers for lr in {*cfg.tune_lrs, cfg.lr}}
    deep = [p for label, p in points if label.startswith("activation@")]
    assert {p["activation"] for p in deep} == set(cfg.activations) and {p["depth"] for p in deep} == {max(cfg.depths)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(data_root):
    """A local Ray head on 127.0.0.1, started for the test and stopped after it. Its temp dir is
    short on purpose: Ray puts Unix sockets there, and socket paths are limited to 107 bytes."""
    pytest.importorskip("ray")
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="dlslab-ray-"))
    log = open(temp / "head.log", "w")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats",
         f"--temp-dir={temp / 'r'}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=os.environ | {"DLSLAB_DATA": str(data_root), "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        deadline = time.monotonic() + 90
        while True:
            if head.poll() is not None:
                pytest.fail(f"ray start exited ({head.returncode}): {(temp / 'head.log').read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail("the Ray head did not open its port within 90 s")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # only the processes this fixture started
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:  # it drains for up to 30 s; nothing is left to drain
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(5)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_grid_runs_as_ray_tasks_on_a_local_head(ray_head, tmp_path):
    t0 = time.perf_counter()
    outcome = run_smoke("mlp-hparams", {"design": "grid", "factors": ["init", "width"], "inits": ["default"],
                                        "widths": [16, 32], "ray": ray_head}, out=tmp_path / "runs")
    metrics = json.loads((outcome.dir / "metrics.json").read_text())
    assert metrics["headline"]["trials"] == 2 and metrics["headline"]["best_test_acc"]["mnist"] > 0.6
    groups = {t["group"] for r in metrics["configs"] for t in r["trials"]}
    assert len(groups) == 2  # two shapes: two Ray tasks, each checkpointed in the run folder
    assert all((outcome.dir / "checkpoints" / f"{g}.done.pt").exists() for g in groups)
    assert (outcome.dir / "heatmap-mnist.png").exists()
    assert time.perf_counter() - t0 < 120
