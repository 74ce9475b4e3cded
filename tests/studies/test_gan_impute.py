"""gan-impute: masks, the hint, imputers that never touch observed entries, and GAIN beating
mean imputation on a real table (the smoke preset)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dlslab import runner
from dlslab.errors import DataError
from dlslab.studies import gan_impute as gi


def test_hint_reveals_exactly_the_intended_fraction() -> None:
    g = torch.Generator().manual_seed(0)
    m = gi.mcar_mask((200, 30), 0.3, g)
    for rate in (0.0, 0.5, 0.9, 1.0):
        reveal = gi.hint_reveal((200, 30), rate, generator=g)
        assert torch.equal(reveal.sum(1), torch.full((200,), float(round(rate * 30))))
        h = gi.hint(m, reveal)
        assert torch.equal(h[reveal == 1], m[reveal == 1])  # revealed: the true mask
        assert torch.all(h[reveal == 0] == 0.5)  # hidden: no information


def test_masks_have_the_asked_missing_fraction_and_shape() -> None:
    g = torch.Generator().manual_seed(0)
    m = gi.mcar_mask((500, 40), 0.2, g)
    assert 1 - m.mean().item() == pytest.approx(0.2, abs=0.01)
    blocks = gi.block_mask(50, 28, 14, g).view(50, 28, 28)
    assert torch.all((1 - blocks).flatten(1).sum(1) == 14 * 14)
    for img in blocks[:5]:  # the missing pixels form one square
        rows, cols = torch.nonzero(img == 0, as_tuple=True)
        assert rows.max() - rows.min() == 13 and cols.max() - cols.min() == 13


@pytest.mark.parametrize("method", ["mean", "knn", "iterative", "dae", "gain"])
def test_observed_entries_are_never_changed(method: str) -> None:
    table = gi.load_table("wine")
    x = table.x
    m = gi.mcar_mask(x.shape, 0.3, torch.Generator().manual_seed(1)).numpy().astype(np.float64)
    holes = np.where(m > 0, x, 0.0)  # the imputers never see the hidden values
    if method == "gain":
        xt, mt = torch.from_numpy(holes).float(), torch.from_numpy(m).float()
        model, _ = gi.train_gain(xt, mt, iterations=50, log_every=50)
        out = gi.gain_impute(model, xt, mt).double().numpy()
    elif method == "dae":
        xt, mt = torch.from_numpy(holes).float(), torch.from_numpy(m).float()
        model, _ = gi.train_dae(xt, mt, iterations=50, log_every=50)
        out = gi.dae_impute(model, xt, mt).double().numpy()
    else:
        out = gi.sklearn_impute(method, holes, m)
    observed = m > 0
    assert np.array_equal(out[observed].astype(np.float32), holes[observed].astype(np.float32))
    assert np.all(np.isfinite(out)) and not np.allclose(out[~observed], 0.0)


def test_housing_without_network_is_a_clear_data_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path))
    with pytest.raises(DataError, match="needs network"):
        gi.load_table("housing", download=False)


def test_smoke_gain_beats_mean_imputation_and_housing_is_reported_not_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sklearn"))
    plan = runner.plan_study("gan-impute", "smoke", {"tables": "breast,housing", "download": "false"})
    outcome = runner.execute(plan, out=tmp_path / "runs", device="cpu", quiet=True)
    assert outcome.status == "finished", outcome.message
    metrics = json.loads((outcome.dir / "metrics.json").read_text())
    rmse = metrics["headline"]["rmse"]["breast.p20"]
    assert rmse["gain"] < 0.8 * rmse["mean"]
    assert metrics["headline"]["gain_beats_mean_fraction"] == 1.0
    assert metrics["headline"]["paper_breast_p20"]["paper"] == 0.0546
    assert [r["data"] for r in metrics["not_run"]] == ["housing"]
    assert metrics["not_run"][0]["status"] == "not run: needs network"
    report = json.loads((outcome.dir / "report.json").read_text())["items"]
    findings = next(i["text"] for i in report if i["kind"] == "text")
    assert "0.0546" in findings and "housing: not run: needs network" in findings
    # the per-epoch losses of both networks are in the log
    stages = [json.loads(line) for line in (outcome.dir / "log.jsonl").read_text().splitlines()]
    epochs = [s for s in stages if s.get("stage", "").startswith("gain-breast")]
    assert epochs and all({"train_d_loss", "train_g_adv", "train_mse"} <= e.keys() for e in epochs)
