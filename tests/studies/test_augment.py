"""The augment study's smoke preset on real CIFAR-10 learns above chance and reports."""

from __future__ import annotations

import json

from dlslab import runner


def test_smoke_learns_above_chance(data_root, tmp_path):
    outcome = runner.execute(runner.plan_study("augment", "smoke"), out=tmp_path, device="cpu", quiet=True)
    assert outcome.status == "finished", outcome.message
    head = outcome.metrics["headline"]
    assert head["test_acc.none.f2"] > 0.2 and head["test_acc.flip-crop.f2"] > 0.2  # chance is 0.1
    assert head["best_test_acc"] == max(head["test_acc.none.f2"], head["test_acc.flip-crop.f2"])
    assert "aug_gain.f2" in head and "aug_gain.min_le25" in head
    items = json.loads((outcome.dir / "report.json").read_text())["items"]
    assert (outcome.dir / "augmented_samples.png").stat().st_size > 1000
    assert (outcome.dir / "acc_vs_fraction.png").exists()
    assert any(i["kind"] == "text" and "best policy" in i["text"] for i in items)
    assert not list((outcome.dir / "checkpoints").glob("*.done.pt"))  # only the numbers are kept
    again = runner.execute(runner.plan_study("augment", "smoke"), out=tmp_path, device="cpu", quiet=True)
    assert again.status == "reused"
