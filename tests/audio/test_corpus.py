"""The speech-corpus builder: espeak-ng speech, the layout, SNRs as asked, determinism, caching."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dlslab.audio import corpus
from dlslab.audio.corpus import CorpusSpec, build_corpus, read_pairs, speech_corpus, synth_utterance, voices
from dlslab.audio.io import read_audio
from dlslab.audio.metrics import snr_db
from dlslab.errors import DataError, UsageError

TINY = CorpusSpec(n_train=3, n_test=2, seed=7, min_seconds=0.6, max_seconds=1.2, snr_range_db=(0.0, 10.0))


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synth_utterance_is_speech_at_the_rate_asked():
    wave = synth_utterance("hello world", voice="en-us", variant="f2", sample_rate=8000)
    assert wave.dtype == np.float32 and 0.5 * 8000 < len(wave) < 3 * 8000
    assert np.sqrt(np.mean(wave**2)) > 0.01
    faster = synth_utterance("hello world", voice="en-us", variant="f2", speed=320, sample_rate=8000)
    assert len(faster) < 0.8 * len(wave)


def test_voices_are_many_and_distinct():
    vs = voices()
    assert len(vs) >= 50 and len(set(vs)) == len(vs)
    assert len({v.split("+")[1] for v in vs[:50]}) == 50  # the first 50 all differ in variant


def test_missing_espeak_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        synth_utterance("hello")


def test_layout_snr_and_splits(tmp_path, data_root):
    out = build_corpus(tmp_path / "c", TINY, noise_dir=data_root / "noise")
    train, test = read_pairs(out, "train"), read_pairs(out, "test")
    assert [r["id"] for r in train] == ["0000", "0001", "0002"] and len(test) == 2
    for r in train + test:
        clean, rate = read_audio(r["clean"], expect_rate=16000)
        noisy, _ = read_audio(r["noisy"])
        noise, _ = read_audio(r["noise"])
        assert len(clean) == len(noisy) == len(noise) and 0.6 <= r["seconds"] <= 1.2
        assert abs(snr_db(clean, noisy) - r["snr_db"]) < 0.1  # the noisy file has the SNR it claims
        np.testing.assert_allclose(clean + noise, noisy, atol=3 / 32768)
        assert 0 <= r["snr_db"] <= 10 and "+" in r["voice"] and r["text"]
    train_text = {r["text"] for r in train}
    assert not any(r["text"] in train_text for r in test)  # test sentences are never trained on


def test_deterministic_for_a_seed(tmp_path, data_root):
    a = build_corpus(tmp_path / "a", TINY, noise_dir=data_root / "noise")
    b = build_corpus(tmp_path / "b", TINY, noise_dir=data_root / "noise")
    c = build_corpus(tmp_path / "c", CorpusSpec(**{**TINY.__dict__, "seed": 8}), noise_dir=data_root / "noise")
    assert _digest(a) == _digest(b)
    assert _digest(a)["pairs.csv"] != _digest(c)["pairs.csv"]


def test_long_recording_and_generated_noise_only(tmp_path):
    spec = CorpusSpec(n_train=0, n_test=0, long_seconds=6.0, long_noise="pink", snr_range_db=(7.0, 7.0))
    out = build_corpus(tmp_path / "long", spec)
    (row,) = read_pairs(out, "long")
    clean, _ = read_audio(row["clean"])
    noisy, _ = read_audio(row["noisy"])
    assert len(clean) == 6 * 16000 and abs(snr_db(clean, noisy) - 7.0) < 0.1
    with pytest.raises(DataError, match="none were found"):
        build_corpus(tmp_path / "x", CorpusSpec(n_train=1, n_test=0, noise_types=("real",)))
    with pytest.raises(UsageError, match="not empty"):
        build_corpus(out, spec)


def test_speech_corpus_is_built_once_and_cached(data_root):
    spec = CorpusSpec(n_train=2, n_test=1, seed=3, min_seconds=0.5, max_seconds=1.0)
    first = speech_corpus(spec)
    stamp = (first / "pairs.csv").stat().st_mtime_ns
    assert speech_corpus(spec) == first and (first / "pairs.csv").stat().st_mtime_ns == stamp
    assert {r["noise_type"] for r in read_pairs(first, "train")} <= {
        "white", "pink", "brown", "babble", *(p.stem for p in (data_root / "noise").iterdir())}
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    assert speech_corpus(CorpusSpec(n_train=2, n_test=1, seed=4, min_seconds=0.5, max_seconds=1.0)) != first


def test_data_speech_command_builds_a_corpus(tmp_path, capsys):
    from dlslab.cli import main

    out = tmp_path / "cli"
    assert main(["data", "speech", str(out), "--train", "2", "--test", "1", "--seconds", "0.5,1",
                 "--noise", "white,brown", "--snr", "3,3"]) == 0
    assert f"corpus: {out}" in capsys.readouterr().out
    rows = read_pairs(out, "train")
    assert len(rows) == 2 and {r["noise_type"] for r in rows} <= {"white", "brown"}
    assert all(r["snr_db"] == 3.0 for r in rows)
    assert main(["data", "speech", str(out)]) == 2  # not empty: a usage error, not a traceback
