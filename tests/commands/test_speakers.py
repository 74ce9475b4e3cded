"""`dlslab speakers` and SpeakerEncoder on the smoke siamese run: verify beats chance with the
calibrated threshold, enrolment from several utterances, identify of many files, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dlslab import config
from dlslab.audio.speaker_encoder import THRESHOLD_FILE, SAMPLE_RATE, SpeakerEncoder
from dlslab.audio.speakers import synthetic_sets
from dlslab.cli import main
from study_runs import run_smoke


@pytest.fixture(scope="module")
def run_dir():
    return run_smoke("siamese").dir


@pytest.fixture(scope="module")
def test_speakers(run_dir):
    """The run's unseen (test) speakers: {speaker: its utterances}."""
    cfg = config.load_yaml(run_dir / "config.yaml")["config"]
    utts = synthetic_sets(cfg["synth_train_speakers"], cfg["synth_val_speakers"], cfg["synth_test_speakers"],
                          cfg["synth_utterances"], cfg["seed"], SAMPLE_RATE)["test"]
    by_speaker: dict[str, list] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    return by_speaker


def test_verify_accepts_same_and_rejects_different_speakers_better_than_chance(run_dir, test_speakers) -> None:
    enc = SpeakerEncoder.from_run(run_dir)
    stored = json.loads((run_dir / THRESHOLD_FILE).read_text()) if (run_dir / THRESHOLD_FILE).exists() else None
    threshold = enc.threshold  # calibrated on the validation speakers on first use, then stored
    assert json.loads((run_dir / THRESHOLD_FILE).read_text())["threshold"] == threshold
    assert stored is None or stored["threshold"] == threshold
    speakers = list(test_speakers.values())
    same, different = [], []
    for k, utts in enumerate(speakers):
        other = speakers[(k + 1) % len(speakers)]
        for i in range(len(utts) - 1):
            same.append(enc.verify((utts[i].wave, SAMPLE_RATE), (utts[i + 1].wave, SAMPLE_RATE)).same)
            different.append(enc.verify((utts[i].wave, SAMPLE_RATE), (other[i].wave, SAMPLE_RATE)).same)
    balanced = 0.5 * (np.mean(same) + 1 - np.mean(different))
    assert balanced > 0.6, (np.mean(same), np.mean(different))


def test_embed_is_unit_length_and_resamples(run_dir, test_speakers) -> None:
    from dlslab.audio.io import resample

    enc = SpeakerEncoder.from_run(run_dir)
    wave = next(iter(test_speakers.values()))[0].wave
    e = enc.embed(wave, SAMPLE_RATE)
    assert abs(np.linalg.norm(e) - 1) < 1e-5
    assert np.dot(e, enc.embed(resample(wave, SAMPLE_RATE, 44100), 44100)) > 0.95


def test_cli_verify_enrol_and_identify_many_files(run_dir, test_speakers, tmp_path, capsys) -> None:
    speakers = list(test_speakers.items())
    gallery_dir = tmp_path / "enrol"
    queries, truth = [], []
    for name, utts in speakers:
        folder = gallery_dir / name.split("/")[-1]
        folder.mkdir(parents=True)
        for u in utts[:3]:
            shutil.copy(u.path, folder / u.path.name)
        queries += [str(u.path) for u in utts[3:]]
        truth += [name.split("/")[-1]] * len(utts[3:])
    a, b = speakers[0][1][:2]
    assert main(["speakers", "verify", str(a.path), str(b.path), "--model", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(("same speaker: score", "different speakers: score")) and "threshold" in out

    gallery = tmp_path / "g.json"
    assert main(["speakers", "enrol", str(gallery_dir), "--model", str(run_dir), "--out", str(gallery)]) == 0
    assert f"enrolled {len(speakers)} speakers from {3 * len(speakers)} utterances" in capsys.readouterr().out
    assert all(len(s["files"]) == 3 for s in json.loads(gallery.read_text())["speakers"])

    assert main(["speakers", "identify", *queries, "--gallery", str(gallery), "--threshold", "-1"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == len(queries)
    hits = np.mean([line.split()[1] == t for line, t in zip(lines, truth)])
    assert hits > 2 / len(speakers), hits  # well above chance (1 / speakers)
    assert main(["speakers", "identify", queries[0], "--gallery", str(gallery), "--threshold", "1"]) == 0
    assert "unknown speaker" in capsys.readouterr().out


def test_bad_input_is_exit_2_with_one_line(run_dir, tmp_path, capsys, one_line_error) -> None:
    wav = str(next(run_dir.parent.parent.glob("siamese/*/metrics.json")))  # any non-audio file
    assert main(["speakers", "verify", wav, wav, "--model", str(run_dir)]) == 2
    one_line_error("cannot read audio file")
    assert main(["speakers", "verify", "none.wav", "none.wav", "--model", str(run_dir)]) == 2
    one_line_error("does not exist")
    assert main(["speakers", "verify", wav, wav, "--model", str(tmp_path)]) == 2
    one_line_error("not a finished run folder")
    assert main(["speakers", "verify", wav, wav, "--model", str(run_dir), "--threshold", "2"]) == 2
    one_line_error("--threshold 2.0")
    (tmp_path / "g.json").write_text("{not json")
    assert main(["speakers", "identify", wav, "--gallery", str(tmp_path / "g.json")]) == 2
    one_line_error("not a speaker gallery")
    assert main(["speakers", "identify", wav, "--gallery", str(tmp_path / "none.json")]) == 2
    one_line_error("none.json")
    assert main(["speakers", "enrol", str(tmp_path / "nodir"), "--model", str(run_dir),
                 "--out", str(tmp_path / "g2.json")]) == 2
    one_line_error("does not exist")
    assert main(["speakers", "enrol", str(tmp_path), "--model", str(run_dir), "--out",
                 str(tmp_path / "missing" / "g.json")]) == 2
    one_line_error("create it first")
