"""gan-impute: GAIN beats mean imputation on a real table (the smoke preset), the headline
is nested, a table that cannot be had is reported as not run, and bad values fail at plan time."""

from __future__ import annotations

import json

import pytest
from study_runs import run_smoke

from dlslab import runner
from dlslab.errors import ConfigError


def test_smoke_gain_beats_mean_imputation_and_housing_is_reported_not_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sklearn"))
    outcome = run_smoke("gan-impute", {"tables": ["breast", "housing"], "download": False})
    metrics = json.loads((outcome.dir / "metrics.json").read_text())
    headline = metrics["headline"]
    rmse = headline["rmse"]["breast"]["p20"]
    assert rmse["gain"] < 0.8 * rmse["mean"]
    assert headline["gain_beats_mean_fraction"] == 1.0
    assert headline["paper_breast_p20"]["ours"] == pytest.approx(rmse["gain"])
    assert not any("." in key for key in headline)  # nested, never flat dotted keys
    assert [r["data"] for r in metrics["not_run"]] == ["housing"]
    assert metrics["not_run"][0]["status"] == "not run: needs network"
    report = json.loads((outcome.dir / "report.json").read_text())["items"]
    findings = next(i["text"] for i in report if i["kind"] == "text")
    assert f"{rmse['gain']:.4f}" in findings and "housing: not run: needs network" in findings
    # the per-epoch losses of both networks are in the log
    stages = [json.loads(line) for line in (outcome.dir / "log.jsonl").read_text().splitlines()]
    epochs = [s for s in stages if s.get("stage", "").startswith("gain-breast")]
    assert epochs and all({"train_d_loss", "train_g_adv", "train_mse"} <= e.keys() for e in epochs)


@pytest.mark.parametrize("key, value", [("table_rates", [0.2, 1.0]), ("seeds", 0), ("hint_rate", 1.5),
                                        ("lr", 0.0), ("image_block", 28), ("test_fraction", 1.0)])
def test_bad_values_fail_when_the_run_is_planned(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        runner.plan_study("gan-impute", "smoke", {key: value})
