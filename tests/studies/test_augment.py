"""The augment study's smoke preset on real CIFAR-10 learns above chance, its answer matches its
numbers, and bad values are refused when the run is planned."""

from __future__ import annotations

import json

import pytest

from dlslab import runner
from dlslab.errors import ConfigError
from study_runs import run_smoke


def test_smoke_learns_above_chance_and_answers_from_its_numbers(data_root):
    outcome = run_smoke("augment")
    head = outcome.metrics["headline"]
    none, aug = head["test_acc"]["none"]["f2"], head["test_acc"]["flip-crop"]["f2"]
    assert none > 0.2 and aug > 0.2  # chance is 0.1
    assert head["best_test_acc"] == max(none, aug)
    assert head["aug_gain"]["f2"] == pytest.approx(aug - none, abs=2e-4)
    items = json.loads((outcome.dir / "report.json").read_text())["items"]
    answer = next(i["text"] for i in items if i["kind"] == "text").splitlines()[0]
    assert answer.startswith(f"Augmentation beat no augmentation at {int(aug > none)} of 1 ")
    assert (outcome.dir / "augmented_samples.png").stat().st_size > 1000
    assert (outcome.dir / "acc_vs_fraction.png").exists()
    assert not list((outcome.dir / "checkpoints").glob("*.done.pt"))  # only the numbers are kept


@pytest.mark.parametrize("override, key", [({"policies": ["none", "flip-crp"]}, "policies"),
                                           ({"fractions": [0.0]}, "fractions"), ({"lr": -1.0}, "lr"),
                                           ({"holdout": 1.0}, "holdout")])
def test_bad_values_fail_at_plan_time(override, key):
    with pytest.raises(ConfigError, match=key):
        runner.plan_study("augment", "smoke", override)
