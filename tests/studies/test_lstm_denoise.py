"""lstm-denoise: the smoke preset trains all four batching strategies, each raises the SNR,
padding is accounted for, and the report holds the comparison, figures and audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from study_runs import run_smoke

from dlslab.audio import metrics
from dlslab.errors import ConfigError
from dlslab.studies import lstm_denoise
from dlslab.train.sequences import STRATEGIES, infer


@pytest.fixture(scope="module")
def smoke_run(data_root) -> dict:
    outcome = run_smoke("lstm-denoise")
    return {"dir": outcome.dir, "metrics": outcome.metrics}


def test_smoke_training_improves_snr_with_every_strategy(smoke_run: dict) -> None:
    head = smoke_run["metrics"]["headline"]
    for name in STRATEGIES:
        assert head["snr_gain_db"][name] > 0.5, name
        assert head["snr_db"][name] < head["snr_db"]["ibm_oracle"], name
    assert head["snr_db"]["ibm_oracle"] > head["snr_db"]["noisy"] + 5
    assert head["snr_gain_db"]["best"] == max(head["snr_gain_db"][n] for n in STRATEGIES)


def test_padding_is_measured_and_packing_steps_over_none(smoke_run: dict) -> None:
    head = smoke_run["metrics"]["headline"]
    rows = {r["strategy"]: r for r in smoke_run["metrics"]["strategies"]}
    assert head["padded_frac"]["packed"] == 0.0
    # random batches of whole utterances pad far more than 10-frame chunks
    assert head["padded_frac"]["pad"] > 2 * head["padded_frac"]["chunk"] > 0
    assert rows["packed"]["tensor_padded_frac"] < rows["pad"]["tensor_padded_frac"]
    assert all(r["epoch_s"] > 0 and r["updates_per_epoch"] > 0 for r in rows.values())


def test_report_has_the_comparison_figures_and_audio(smoke_run: dict) -> None:
    import json

    run_dir = smoke_run["dir"]
    items = json.loads((run_dir / "report.json").read_text())["items"]
    assert {i["kind"] for i in items} >= {"text", "table", "image", "audio"}
    table = next(i for i in items if i["title"] == "Batching strategies")
    assert [r["strategy"] for r in table["rows"]] == list(STRATEGIES)
    audio = [i["src"] for i in items if i["kind"] == "audio"]
    assert any("ibm-oracle" in a for a in audio) and any("tbptt" in a for a in audio)
    assert all((run_dir / a).stat().st_size > 1000 for a in audio)
    assert (run_dir / "report.html").exists()


@pytest.mark.parametrize("overrides, key", [({"bidirectional": True}, "bidirectional"), ({"lr": 0.0}, "lr"),
                                            ({"chunk": 0}, "chunk"), ({"batch_frames": 5}, "batch_frames"),
                                            ({"min_seconds": []}, "min_seconds"), ({"dropout": 1.0}, "dropout"),
                                            ({"remix": -1}, "remix"), ({"max_seconds": 2.0}, "max_seconds")])
def test_check_refuses_bad_values(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        lstm_denoise.check(lstm_denoise.Config(**overrides))
    lstm_denoise.check(lstm_denoise.Config())


def test_ensemble_scores_the_mean_logit_of_the_seeds_models(data_root) -> None:
    overrides = {"strategies": ["chunk"], "n_seeds": 2, "ensemble": True, "context": 2}
    outcome = run_smoke("lstm-denoise", overrides)
    (row,) = outcome.metrics["strategies"]
    assert row["n"] == 1  # one estimate, not one per seed
    cfg = lstm_denoise.Config(**(lstm_denoise.PRESETS["smoke"] | overrides))
    _, _, val, refs = lstm_denoise.load_data(cfg)
    logits = []
    for seed in (0, 1):
        model = lstm_denoise.build(cfg, val.noisy.shape[1])
        state = torch.load(outcome.dir / "checkpoints" / f"chunk-seed{seed}.done.pt", weights_only=True)["model"]
        model.load_state_dict(state)
        spec = lstm_denoise.sequence_spec(cfg)
        logits.append(infer(model, "chunk", val, cfg.chunk, (spec.before, spec.after)))

    def snr(logit: torch.Tensor) -> float:
        masks = [m.T for m in torch.sigmoid(logit).split(val.lengths.tolist())]
        waves = refs.waveforms(masks, cfg.n_fft, cfg.hop)
        return float(np.mean([metrics.snr_db(c, w) for c, w in zip(refs.clean, waves, strict=True)]))

    assert not torch.allclose(logits[0], logits[1], atol=1e-3)  # two different models
    assert row["snr_db"] == pytest.approx(snr((logits[0] + logits[1]) / 2), abs=1e-5)
    assert all(abs(row["snr_db"] - snr(x)) > 1e-4 for x in logits)


def test_signal_approximation_chunk_training_with_context_and_remix_improves_snr(data_root) -> None:
    overrides = {"strategies": ["chunk"], "target": "psm", "loss": "mse", "context": 3, "bidirectional": True,
                 "remix": 1}
    head = run_smoke("lstm-denoise", overrides).metrics["headline"]
    assert head["snr_gain_db"]["chunk"] > 0.5
    assert head["snr_db"]["psm_oracle"] > head["snr_db"]["ibm_oracle"] > head["snr_db"]["chunk"]
