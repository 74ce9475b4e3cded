"""Speaker folders: reading SPEAKER/utterance files with corpus labels, the real corpora,
cached synthetic speakers, and batched features that match per-utterance features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlslab.audio.features import log_mel
from dlslab.audio.io import write_audio
from dlslab.audio.speakers import (SyntheticSpec, normalise_level, read_speakers, real_speakers,
                                   speaker_files, synthetic_speakers, featurize)
from dlslab.errors import DataError


def _tone(freq: float, seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_speaker_folder_layout_and_labels(tmp_path) -> None:
    for name, n in (("arA", 3), ("arB", 2), ("lsC", 1)):
        for k in range(n):
            write_audio(tmp_path / name / f"{k}.wav", _tone(200 + 50 * k, 0.5), 16000)
    (tmp_path / "arA" / "notes.txt").write_text("not audio")
    files = speaker_files(tmp_path)
    assert list(files) == ["arA", "arB"]  # a single utterance can be neither enrolled and tested
    assert len(files["arA"]) == 3 and all(f.suffix == ".wav" for f in files["arA"])
    assert [len(v) for v in speaker_files(tmp_path, max_per_speaker=2).values()] == [2, 2]
    utts = read_speakers(tmp_path, {"ar": "arabic", "ls": "librispeech"}, sample_rate=8000)
    assert {u.speaker for u in utts} == {"arabic/arA", "arabic/arB"}
    assert all(len(u.wave) == 4000 for u in utts)  # resampled to 8 kHz
    with pytest.raises(DataError, match="SPEAKER/utterance"):
        speaker_files(tmp_path / "arA")
    with pytest.raises(DataError, match="does not exist"):
        speaker_files(tmp_path / "nowhere")


def test_real_corpora_are_labelled(data_root) -> None:
    utts = real_speakers(data_root, max_per_speaker=2)
    speakers = {u.speaker: u.corpus for u in utts}
    counts = {c: sum(v == c for v in speakers.values()) for c in set(speakers.values())}
    assert counts == {"fsdd": 6, "arabic": 30, "librispeech": 10}
    assert all(len(u.wave) > 1000 for u in utts)


def test_synthetic_speakers_are_built_once_and_disjoint() -> None:
    spec = SyntheticSpec(n_speakers=3, n_utterances=2, first=0)
    folder = synthetic_speakers(spec)
    speakers = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert len(speakers) == 3 and all(len(list((folder / s).glob("*.wav"))) == 2 for s in speakers)
    stamp = (folder / speakers[0] / "00.wav").stat().st_mtime_ns
    assert synthetic_speakers(spec) == folder and (folder / speakers[0] / "00.wav").stat().st_mtime_ns == stamp
    other = synthetic_speakers(SyntheticSpec(n_speakers=2, n_utterances=2, first=3))
    assert not {p.name for p in other.iterdir() if p.is_dir()} & set(speakers)
    utts = read_speakers(folder, "synthetic")
    assert len(utts) == 6 and all(np.abs(u.wave).max() <= 0.51 for u in utts)


def test_batched_features_match_single_utterances(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for spk in ("a", "b"):
        for k, seconds in enumerate((0.4, 1.1)):
            write_audio(tmp_path / spk / f"{k}.wav", rng.normal(scale=0.1, size=int(seconds * 16000)), 16000)
    utts = read_speakers(tmp_path, "test")
    data = featurize(utts, 16000, max_frames=50)
    assert data.frames.shape == (4, 40, 50) and data.lengths.tolist() == [26, 50, 26, 50]
    assert data.speaker.tolist() == [0, 0, 1, 1] and data.names == ["test/a", "test/b"]
    assert (data.frames[0, :, 26:] == 0).all()  # padding beyond each length
    single = log_mel(normalise_level(utts[0].wave), 16000)
    assert torch.allclose(data.frames[0, :, :24], single[:, :24], atol=1e-4)  # all but the edge frames
    sub = data.subset(["test/b"])
    assert sub.names == ["test/b"] and sub.speaker.tolist() == [0, 0] and len(sub) == 2
    assert data.mean_mfcc.shape == (4, 19) and torch.isfinite(data.mean_mfcc).all()
