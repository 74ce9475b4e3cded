"""layer-embeddings: separation rises with depth in a trained network and not in the same
network untrained; a finished mlp-hparams run can be reused; bad networks are clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from study_runs import run_smoke

from dlslab import runner
from dlslab.errors import ConfigError
from dlslab.metrics import separation


def _execute(study: str, overrides: dict) -> dict:
    outcome = run_smoke(study, overrides)
    return json.loads((outcome.dir / "metrics.json").read_text()) | {"dir": str(outcome.dir)}


def test_separation_rises_with_depth_when_trained_and_not_untrained(data_root):
    metrics = _execute("layer-embeddings", {})
    trained, untrained = metrics["layers"]["relu-2"], metrics["layers"]["relu-2-untrained"]
    assert [r["layer"] for r in trained] == [0, 1, 2]
    for metric in ("fisher_ratio", "silhouette"):
        scores = [r[metric] for r in trained]
        assert scores[0] < scores[1] < scores[2], (metric, scores)  # rises layer by layer
    assert trained[-1]["fisher_ratio"] > 3 * trained[0]["fisher_ratio"]
    assert trained[-1]["probe_acc"] > trained[0]["probe_acc"]
    # untrained: the random layers add no class information (they lose some)
    assert untrained[-1]["fisher_ratio"] <= 1.1 * untrained[0]["fisher_ratio"]
    assert untrained[-1]["knn_acc"] <= untrained[0]["knn_acc"] + 0.02
    assert untrained[-1]["silhouette"] < trained[-1]["silhouette"] - 0.05
    assert metrics["headline"]["fisher_gain"]["relu-2"] > 3


def test_separation_metrics_tell_separated_from_random_points():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 6
    separated = torch.randn(6, 20, generator=g)[y] * 4 + torch.randn(600, 20, generator=g)
    noise = torch.randn(600, 20, generator=g)
    assert separation.knn_accuracy(separated, y) > 0.95 and separation.knn_accuracy(noise, y) < 0.35
    assert separation.linear_probe_accuracy(separated, y, epochs=10) > 0.95
    assert separation.linear_probe_accuracy(noise, y, epochs=10) < 0.35
    assert separation.fisher_ratio(separated, y) > 5 > 0.1 > separation.fisher_ratio(noise, y)
    assert separation.silhouette(separated, y) > 0.4 and abs(separation.silhouette(noise, y)) < 0.05
    # the Fisher ratio does not change when the whole space is scaled
    assert separation.fisher_ratio(3 * separated, y) == pytest.approx(separation.fisher_ratio(separated, y))


@pytest.mark.slow
def test_reuses_the_best_network_of_a_finished_mlp_hparams_run(data_root):
    sweep_run = _execute("mlp-hparams", {"factors": "width", "widths": "32", "width": "32",
                                                   "train_size": "1000", "epochs": "1"})
    metrics = _execute("layer-embeddings", {"from_run": sweep_run["dir"], "untrained": "false",
                                                      "eval_points": "500", "tsne_points": "100"})
    net = next(iter(metrics["layers"]))
    assert net == "relu-2" and [r["width"] for r in metrics["layers"][net]] == [784, 32, 32]
    # the reused weights are the trained ones: its last layer separates better than the input
    assert metrics["layers"][net][-1]["fisher_ratio"] > metrics["layers"][net][0]["fisher_ratio"]


@pytest.mark.parametrize("bad", ["relu", "swish-2", "relu-0", "relu-x"])
def test_bad_network_names_are_clear_errors(bad):
    with pytest.raises(ConfigError, match="ACTIVATION-DEPTH"):
        runner.plan_study("layer-embeddings", "smoke", {"networks": [bad]})


@pytest.mark.parametrize("key, value", [("width", 0), ("lr", 0.0), ("folds", 1), ("tsne_points", 5),
                                        ("train_size", -1), ("perplexity", -1.0)])
def test_bad_values_fail_when_the_run_is_planned(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        runner.plan_study("layer-embeddings", "smoke", {key: value})
