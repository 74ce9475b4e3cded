"""Imputers never touch observed entries, and the comparison scores what they filled in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dlslab.data.uci import load_table
from dlslab.impute.compare import ImputerSpec, compare_imputers, impute_with
from dlslab.impute.masks import mcar_mask
from dlslab.impute.threads import few_threads


def _holes(rate: float = 0.3):
    x = load_table("wine").x
    m = mcar_mask(x.shape, rate, torch.Generator().manual_seed(1)).numpy().astype(np.float64)
    return x, m


@pytest.mark.parametrize("method", ["mean", "knn", "iterative", "dae", "gain"])
def test_observed_entries_are_never_changed(method: str) -> None:
    x, m = _holes()
    holes = np.where(m > 0, x, 0.0)  # the imputers never see the hidden values
    out, _ = impute_with(method, holes, m, ImputerSpec(iterations=50, log_every=50), seed=0)
    observed = m > 0
    assert np.array_equal(out[observed].astype(np.float32), holes[observed].astype(np.float32))
    assert np.all(np.isfinite(out)) and not np.allclose(out[~observed], 0.0)


def test_comparison_scores_the_missing_entries_and_gain_beats_the_mean() -> None:
    table = load_table("breast")
    m = mcar_mask(table.x.shape, 0.2, torch.Generator().manual_seed(0)).numpy().astype(np.float64)
    out = compare_imputers(["mean", "gain"], table.x, table.y, m, ImputerSpec(iterations=600, log_every=300),
                           seed=0, keep=3)
    assert out["gain"]["rmse"] < 0.8 * out["mean"]["rmse"]
    assert len(out["gain"]["history"]) == 2 and {"d_loss", "g_adv", "mse"} <= out["gain"]["history"][0].keys()
    assert out["mean"]["sample"].shape == (3, table.x.shape[1])
    assert 0.5 < out["gain"]["acc"] <= 1.0


def test_few_threads_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with few_threads(30):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_methods_warnings_stay_with_its_row_and_do_not_leak() -> None:
    """One iterative round cannot converge: scikit-learn warns, and the warning is kept with the
    row (for the study's log) instead of reaching the console as a raw Python warning."""
    import warnings

    x, m = _holes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any leak fails the test
        out = compare_imputers(["mean", "iterative"], x, None, m, ImputerSpec(iterations=1, iterative_rounds=1), seed=0)
    assert out["mean"]["warnings"] == []
    assert any("ConvergenceWarning" in w for w in out["iterative"]["warnings"])


@pytest.mark.parametrize("method", ["dae", "gain"])
def test_bf16_training_imputes_as_well_as_float32(method: str) -> None:
    table = load_table("breast")
    m = mcar_mask(table.x.shape, 0.2, torch.Generator().manual_seed(0)).numpy().astype(np.float64)
    spec = ImputerSpec(iterations=600, log_every=300)
    out = {bf16: compare_imputers(["mean", method], table.x, None, m, dataclasses.replace(spec, bf16=bf16), seed=0)
           for bf16 in (False, True)}
    assert out[True][method]["rmse"] < 0.8 * out[True]["mean"]["rmse"]
    assert out[True][method]["rmse"] == pytest.approx(out[False][method]["rmse"], rel=0.1)
