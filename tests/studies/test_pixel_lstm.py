"""pixel-lstm (smoke preset): a finished run whose numbers say the LSTM learned, and bad values
that fail when the run is planned."""

from __future__ import annotations

import json
import math

import pytest
from study_runs import run_smoke

from dlslab import runner
from dlslab.errors import ConfigError


def test_pixel_lstm_smoke_run(data_root) -> None:
    run_dir = run_smoke("pixel-lstm").dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    head = metrics["headline"]
    uniform = 784 * math.log(2)  # nats per image of a model that knows nothing
    assert head["test_nll_nats"] < 0.8 * uniform
    assert head["lower_nll_nats"] < head["test_nll_nats"]
    assert metrics["val_nll"][-1] < metrics["val_nll"][0]
    assert head["judge_acc"]["real"] > 0.85  # binarized digits: harder for the judge than grey ones
    rows = {r["completion"]: r for r in metrics["completions"]}
    # the written half is closer to the real one than a blank lower half
    assert rows["lstm (mean)"]["mse"] < rows["blank (zeros)"]["mse"]
    assert rows["lstm (mean)"]["bce"] < rows["blank (zeros)"]["bce"]
    assert head["mse"]["lstm_mean"] == rows["lstm (mean)"]["mse"] and head["bce"]["lstm_mean"] == rows["lstm (mean)"]["bce"]
    for name in ("completions.png", "samples.png", "nll.png", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name


@pytest.mark.parametrize("key, value", [("given_rows", 28), ("given_rows", 0), ("lr", 0.0), ("hidden", 0),
                                        ("train_size", -1), ("head_hidden", -1)])
def test_bad_values_fail_when_the_run_is_planned(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        runner.plan_study("pixel-lstm", "smoke", {key: value})
