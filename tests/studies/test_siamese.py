"""`dlslab run siamese --preset smoke`, the speaker split, and `dlslab speakers enrol|identify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from study_runs import run_smoke

from dlslab import cli, config
from dlslab.audio.speakers import real_speakers, split_speakers, validation_folds
from dlslab.errors import ConfigError
from dlslab.studies import siamese


def test_train_val_and_test_speakers_never_overlap(data_root) -> None:
    utts = real_speakers(data_root, max_per_speaker=2)
    roles = split_speakers(utts, 0.15, 0.4, seed=0)
    assert set(roles) == {u.speaker for u in utts}  # every speaker has exactly one role
    for corpus in ("fsdd", "arabic", "librispeech"):
        corpus_roles = [r for s, r in roles.items() if s.startswith(corpus + "/")]
        assert {"train", "val", "test"} <= set(corpus_roles), corpus
    assert roles != split_speakers(utts, 0.15, 0.4, seed=1)  # the split follows the seed


def test_validation_folds_cover_every_untested_real_speaker_once(data_root) -> None:
    utts = real_speakers(data_root, max_per_speaker=2)
    roles = split_speakers(utts, 0.15, 0.4, seed=0)
    roles |= {"synthetic/v1": "train", "arabic/ar01@x0.9": "train"}  # neither is a fold member
    folds = validation_folds(roles, 4)
    members = [n for fold in folds for n in fold]
    assert sorted(members) == sorted(n for n, r in roles.items()
                                     if r != "test" and "@" not in n and not n.startswith("synthetic/"))
    assert folds[0] == sorted(n for n, r in roles.items() if r == "val")
    for fold in folds[1:]:  # every corpus's training speakers are spread over the folds
        assert {n.split("/")[0] for n in fold} == {"arabic", "fsdd", "librispeech"}


@pytest.fixture(scope="module")
def smoke_run(data_root) -> Path:
    return run_smoke("siamese").dir


@pytest.mark.parametrize("key, value", [("lr", 0.0), ("crop_frames", 2), ("test_fraction", 0.9), ("ensemble", 0),
                                        ("noise_snr", [5.0]), ("speed_perturb", [0.0]), ("cohort_top_k", 1),
                                        ("dilations", []), ("epochs", 0), ("margin", -0.1), ("init", []),
                                        ("finetune_lr", 0.0), ("finetune_epochs", 0), ("finetune_ensemble", 0),
                                        ("join_weights", [0.5, 1.5]), ("join_weights", [-0.1])])
def test_check_refuses_out_of_range_values(key: str, value) -> None:
    with pytest.raises(ConfigError, match=key):
        siamese.check(siamese.Config(**{key: value}))
    siamese.check(siamese.Config())


def test_smoke_training_separates_unseen_speakers(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    cfg = config.load_yaml(smoke_run / "config.yaml")["config"]
    speakers = metrics["speakers"]
    assert not set(speakers["train"]) & set(speakers["test"]) and not set(speakers["val"]) & set(speakers["test"])
    trained = metrics["results"][f"trained ({metrics['selected_loss']})"]["synthetic"]
    untrained = metrics["results"]["untrained encoder"]["synthetic"]
    assert trained["auc"] > 0.7 and trained["auc"] > untrained["auc"]
    n = len(speakers["test"])
    assert trained["oneshot_all"]["n_way"] == n == cfg["synth_test_speakers"]
    assert trained["oneshot_all"]["acc"] > 2 * trained["oneshot_all"]["chance"]
    assert metrics["headline"]["auc"]["synthetic"] == trained["auc"]
    # the smoke preset trains an ensemble of two encoders, both kept for `dlslab speakers`
    assert cfg["ensemble"] == 2 and f"trained ({metrics['selected_loss']})" in metrics["val_auc"]
    for member in ("encoder-triplet.done.pt", "encoder-triplet-1.done.pt"):
        assert (smoke_run / "checkpoints" / member).is_file()
    for name in ("similarity_synthetic.png", "tsne_synthetic.png", "confusion_synthetic.png", "report.html"):
        assert (smoke_run / name).stat().st_size > 0, name


def test_enrol_and_identify(smoke_run: Path, tmp_path, capsys) -> None:
    from dlslab.audio.speakers import SyntheticSpec, synthetic_speakers

    cfg = config.load_yaml(smoke_run / "config.yaml")["config"]
    folder = synthetic_speakers(SyntheticSpec(cfg["synth_test_speakers"], cfg["synth_utterances"],
                                              cfg["synth_train_speakers"] + cfg["synth_val_speakers"], "test",
                                              cfg["seed"]))
    gallery = tmp_path / "gallery.json"
    assert cli.main(["speakers", "enrol", str(folder), "--model", str(smoke_run), "--out", str(gallery),
                     "--per-speaker", "1"]) == 0
    enrolled = json.loads(gallery.read_text())["speakers"]
    assert len(enrolled) == cfg["synth_test_speakers"]
    # an enrolled recording itself is identified as its speaker, with cosine similarity 1
    capsys.readouterr()
    assert cli.main(["speakers", "identify", enrolled[3]["files"][0], "--gallery", str(gallery), "--top", "3"]) == 0
    _, name, score, *rest = capsys.readouterr().out.strip().splitlines()[1].split()
    assert name == enrolled[3]["name"] and float(score) == pytest.approx(1.0, abs=1e-4)
    sims = [float(s.rstrip(",")) for s in rest[1::2]]  # the next two: "name score, name score"
    assert len(sims) == 2 and sims == sorted(sims, reverse=True) and sims[0] <= float(score)
    assert cli.main(["speakers", "identify", enrolled[0]["files"][0], "--gallery", str(tmp_path / "none.json")]) == 2
