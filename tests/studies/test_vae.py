"""vae (smoke preset): a finished run whose numbers say the VAE learned and found a rotation
dimension; bad values fail when the run is planned."""

from __future__ import annotations

import json

import pytest
from study_runs import run_smoke

from dlslab import runner
from dlslab.errors import ConfigError
from dlslab.studies.vae import Config, model_specs


def test_vae_smoke_run(data_root) -> None:
    run_dir = run_smoke("vae").dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    head = metrics["headline"]
    # training starts from the per-pixel mean image (about -206 nats, the best a decoder that
    # ignores z can do); the smoke VAE must have learned more than that
    assert head["test_elbo"]["mlp"] > -195
    assert head["iw_nll"]["mlp"] <= -head["test_elbo"]["mlp"] + 1.0  # the IW bound is tighter than the ELBO
    assert all(q["iw_gap_nats"] >= 0 for q in metrics["quality"])
    curve = metrics["val_elbo"]["mlp"]
    assert curve[-1] > curve[0]
    real, samples = metrics["realism"][0], metrics["realism"][1]
    assert real["images"] == "real test images" and real["judge_confidence"] > 0.9
    assert real["frechet_judge"] < samples["frechet_judge"]  # samples of a smoke VAE are not yet real
    # one latent dimension reads the angle of rotated digits far better than chance (R² 0)
    rotation = metrics["rotation"]["mlp"]
    assert head["rotation_dim"]["beta1"] == rotation["best_dim"] and 0 <= rotation["best_dim"] < 8
    assert head["rotation_r2"]["beta1"] > 0.2
    for name in ("samples-mlp.png", "recon-mlp.png", "traversal-mlp.png", "rotation-dim-mlp.png", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name


@pytest.mark.parametrize("key, value", [("latent", 0), ("lr", 0.0), ("betas", [0.0]), ("train_size", -1),
                                        ("rotation_angles", [10.0]), ("iw_k", 0)])
def test_bad_values_fail_when_the_run_is_planned(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        runner.plan_study("vae", "smoke", {key: value})


def test_aux_epochs_train_only_the_extra_vaes() -> None:
    cfg = Config(epochs=7, aux_epochs=3)
    assert {s.key: s.epochs for s in model_specs(cfg)} == {"mlp": 7, "conv": 7, "mlp-beta4": 3, "mlp-z2": 3}
    assert {s.epochs for s in model_specs(Config(epochs=7, aux_epochs=0))} == {7}  # 0: every VAE trains `epochs`
    assert {s.epochs for s in model_specs(Config(epochs=2))} == {2}  # never more than the quality models
