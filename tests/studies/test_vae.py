"""`dlslab run vae --preset smoke`: a finished run whose numbers say the VAE learned."""

from __future__ import annotations

import json
from pathlib import Path

from dlslab import cli


def test_vae_smoke_run(data_root, tmp_path, capsys) -> None:
    code = cli.main(["run", "vae", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and out[-1].startswith("run: ")
    run_dir = Path(out[-1][5:])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    head = metrics["headline"]
    # an untrained decoder scores about -543 nats (784 ln 2); the smoke VAE is far better
    assert head["test_elbo.mlp"] > -300
    assert head["iw_nll.mlp"] <= -head["test_elbo.mlp"] + 1.0  # the IW bound is tighter than the ELBO
    assert all(q["iw_gap_nats"] >= 0 for q in metrics["quality"])
    curve = metrics["val_elbo"]["mlp"]
    assert curve[-1] > curve[0]
    real, samples = metrics["realism"][0], metrics["realism"][1]
    assert real["images"] == "real test images" and real["judge_confidence"] > 0.9
    assert real["frechet_judge"] < samples["frechet_judge"]  # samples of a smoke VAE are not yet real
    assert 0 <= head["rotation_dim.beta1"] < 8 and head["rotation_r2.beta1"] <= 1
    for name in ("samples-mlp.png", "recon-mlp.png", "traversal-mlp.png", "rotation-dim-mlp.png", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
