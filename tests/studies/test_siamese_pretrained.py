"""The siamese study's pretrained anchor (the GE2E encoder of the optional `resemblyzer`
extra): its row, fine-tuning from it, the study without it, and `dlslab speakers --encoder`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from study_runs import run_smoke

from dlslab import cli
from dlslab.audio import pretrained
from dlslab.audio.speaker_encoder import embed_set, featurize_utterances, load_encoder
from dlslab.audio.speakers import SyntheticSpec, read_speakers, synthetic_speakers
from dlslab.studies import siamese

needs_extra = pytest.mark.skipif(not pretrained.installed(), reason="pip install dlslab[pretrained]")


@pytest.fixture(scope="module")
def smoke_metrics(data_root) -> dict:
    outcome = run_smoke("siamese")
    return json.loads((outcome.dir / "metrics.json").read_text()) | {"dir": str(outcome.dir)}


@needs_extra
def test_pretrained_row_beats_mfcc_on_synthetic_test_voices(smoke_metrics) -> None:
    res = smoke_metrics["results"]
    frozen, mfcc = res[siamese.PRETRAINED]["synthetic"], res[siamese.MFCC]["synthetic"]
    assert frozen["oneshot_all"]["acc"] > mfcc["oneshot_all"]["acc"]
    assert frozen["auc"] > mfcc["auc"]
    assert smoke_metrics["headline"]["oneshot10_acc"]["synthetic_pretrained"] == frozen["oneshot_all"]["acc"]
    assert f"{siamese.PRETRAINED}, cosine" in res  # the anchor with the other scoring too


@needs_extra
def test_finetuning_changes_the_weights_and_keeps_embeddings_unit_length(smoke_metrics) -> None:
    loss = smoke_metrics["selected_loss_of"]["pretrained"]
    assert f"{siamese.FINETUNED} ({loss})" in smoke_metrics["results"]
    model, spec = load_encoder(smoke_metrics["dir"], init="pretrained")
    start = pretrained.load_state()
    tuned = {k.removeprefix("encoder."): v for k, v in model.state_dict().items()}
    changed = [k for k in start if not torch.equal(start[k], tuned[k])]
    assert len(changed) == len(start)  # every tensor moved
    assert max(float((start[k] - tuned[k]).abs().max()) for k in start) < 0.1  # but only a little
    folder = synthetic_speakers(SyntheticSpec(3, 2, 0, "train", 0))
    data = featurize_utterances(read_speakers(folder, "synthetic"), spec)
    emb = torch.from_numpy(embed_set(model, data.frames, data.lengths))
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(emb)), atol=1e-5)


@needs_extra
def test_the_joined_row_is_chosen_on_validation_and_shown_beside_the_others(smoke_metrics) -> None:
    res, cfg = smoke_metrics["results"], siamese.Config()
    tuned = f"{siamese.FINETUNED} ({smoke_metrics['selected_loss_of']['pretrained']})"
    assert smoke_metrics["join_weight"] in cfg.join_weights  # the smoke preset keeps the default weights
    # weight 0 (the fine-tuned encoder alone) is a candidate, so the chosen join is no worse on validation
    assert smoke_metrics["val_oneshot"][siamese.JOINED] >= smoke_metrics["val_oneshot"][tuned] - 1e-3
    assert smoke_metrics["headline"]["oneshot10_acc"]["synthetic_joined"] == res[siamese.JOINED]["synthetic"]["oneshot_all"]["acc"]
    report = json.loads((Path(smoke_metrics["dir"]) / "report.json").read_text())
    rows = next(i for i in report["items"] if i.get("title") == "Unseen speakers: synthetic")["rows"]
    assert {siamese.JOINED, tuned, siamese.PRETRAINED} <= {r["method"] for r in rows}
    findings = next(i for i in report["items"] if i.get("title") == "Findings")
    assert f"{siamese.JOINED}: the weight of the trained encoder chosen on validation is" in json.dumps(findings)


@needs_extra
def test_a_join_of_weight_0_is_the_finetuned_encoder(data_root, tmp_path) -> None:
    outcome = run_smoke("siamese", {"ensemble": 1, "epochs": 2, "join_weights": [0.0]}, out=tmp_path)
    metrics = json.loads((outcome.dir / "metrics.json").read_text())
    tuned = metrics["results"][f"{siamese.FINETUNED} ({metrics['selected_loss_of']['pretrained']})"]
    assert metrics["join_weight"] == 0.0 and metrics["results"][siamese.JOINED] == tuned


def test_without_the_extra_the_study_runs_and_says_not_installed(data_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "weights_path", lambda: None)
    outcome = run_smoke("siamese", {"ensemble": 1, "epochs": 2}, out=tmp_path)
    metrics = json.loads((outcome.dir / "metrics.json").read_text())
    assert metrics["pretrained"] == pretrained.NOT_INSTALLED
    assert not any(m.startswith((siamese.PRETRAINED, siamese.FINETUNED, siamese.JOINED)) for m in metrics["results"])
    assert metrics["join_weight"] is None
    assert "synthetic_pretrained" not in metrics["headline"]["oneshot10_acc"]
    report = json.loads((outcome.dir / "report.json").read_text())
    rows = next(i for i in report["items"] if i.get("title") == "Unseen speakers: synthetic")["rows"]
    assert [r["ROC-AUC"] for r in rows if r["method"] == siamese.PRETRAINED] == [pretrained.NOT_INSTALLED]


@needs_extra
def test_speakers_with_the_pretrained_and_the_finetuned_encoder(smoke_metrics, tmp_path, capsys) -> None:
    folder = synthetic_speakers(SyntheticSpec(3, 2, 0, "train", 0))
    for args in (["--encoder", "pretrained"], ["--encoder", smoke_metrics["dir"], "--init", "pretrained"]):
        gallery = tmp_path / "gallery.json"
        assert cli.main(["speakers", "enrol", str(folder), *args, "--out", str(gallery), "--per-speaker", "1"]) == 0
        enrolled = json.loads(gallery.read_text())["speakers"]
        assert len(enrolled[0]["embedding"]) == 256
        capsys.readouterr()
        # an enrolled recording itself is its speaker, with similarity 1 (the pretrained encoder has no
        # run to calibrate a threshold on: it must be given)
        assert cli.main(["speakers", "identify", enrolled[1]["files"][0], "--gallery", str(gallery),
                         "--threshold", "0.5"]) == 0
        _, name, score = capsys.readouterr().out.strip().splitlines()[1].split()[:3]
        assert name == enrolled[1]["name"] and float(score) == pytest.approx(1.0, abs=1e-4)
    assert cli.main(["speakers", "identify", enrolled[1]["files"][0], "--gallery", str(tmp_path / "gallery.json")]) == 0
    capsys.readouterr()
    assert cli.main(["speakers", "verify", enrolled[0]["files"][0], enrolled[1]["files"][0],
                     "--encoder", "pretrained"]) == 2
    assert "--threshold" in capsys.readouterr().err
