"""lstm-denoise: the smoke preset trains all four batching strategies, each raises the SNR,
padding is accounted for, and the report holds the comparison, figures and audio."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from study_runs import run_smoke

from dlslab import runner
from dlslab.audio import metrics
from dlslab.errors import ConfigError
from dlslab.models.lstm_denoiser import LSTMDenoiser
from dlslab.studies import lstm_denoise


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict:
    outcome = run_smoke("lstm-denoise")
    return {"dir": outcome.dir, "metrics": outcome.metrics}


def test_smoke_training_improves_snr_with_every_strategy(smoke_run: dict) -> None:
    head = smoke_run["metrics"]["headline"]
    for name in lstm_denoise.STRATEGIES:
        assert head[f"snr_gain_db.{name}"] > 0.5, name
        assert head[f"snr_db.{name}"] < head["snr_db.ibm_oracle"], name
    assert head["snr_db.ibm_oracle"] > head["snr_db.noisy"] + 5
    assert head["snr_gain_db.best"] == max(head[f"snr_gain_db.{n}"] for n in lstm_denoise.STRATEGIES)


def test_padding_is_measured_and_packing_steps_over_none(smoke_run: dict) -> None:
    head = smoke_run["metrics"]["headline"]
    rows = {r["strategy"]: r for r in smoke_run["metrics"]["strategies"]}
    assert head["padded_frac.packed"] == 0.0
    # random batches of whole utterances pad far more than 10-frame chunks
    assert head["padded_frac.pad"] > 2 * head["padded_frac.chunk"] > 0
    assert rows["packed"]["tensor_padded_frac"] < rows["pad"]["tensor_padded_frac"]
    assert all(r["epoch_s"] > 0 and r["updates_per_epoch"] > 0 for r in rows.values())


def test_report_has_the_comparison_figures_and_audio(smoke_run: dict) -> None:
    run_dir = smoke_run["dir"]
    items = json.loads((run_dir / "report.json").read_text())["items"]
    kinds = {i["kind"] for i in items}
    assert kinds >= {"text", "table", "image", "audio"}
    table = next(i for i in items if i["title"] == "Batching strategies")
    assert [r["strategy"] for r in table["rows"]] == list(lstm_denoise.STRATEGIES)
    audio = [i["src"] for i in items if i["kind"] == "audio"]
    assert any("ibm-oracle" in a for a in audio) and any("tbptt" in a for a in audio)
    assert all((run_dir / a).stat().st_size > 1000 for a in audio)
    assert (run_dir / "report.html").exists()


def test_bidirectional_tbptt_is_refused() -> None:
    with pytest.raises(ConfigError, match="bidirectional"):
        lstm_denoise.run(lstm_denoise.Config(bidirectional=True), run=None)


def test_spread_by_length_picks_shortest_and_longest() -> None:
    seconds = [5.0, 1.0, 9.0, 3.0, 7.0]
    assert lstm_denoise.spread_by_length(seconds, 2)[:2] == [1, 2]
    assert sorted(lstm_denoise.spread_by_length(seconds, 3)) == [0, 1, 2, 3, 4]
    assert lstm_denoise.spread_by_length(seconds, 1)[0] == 2


def three_utterances() -> tuple[lstm_denoise.LSTMDenoiser, torch.Tensor, lstm_denoise.Frames]:
    """A tiny seeded LSTM and random frames of three utterances of 3, 25 and 10 frames."""
    torch.manual_seed(0)
    model = lstm_denoise.LSTMDenoiser(bins=6, hidden=4, layers=1)
    lengths = torch.tensor([3, 25, 10])
    frames = torch.rand(int(lengths.sum()), 6)
    return model, frames, lstm_denoise.Frames(frames, frames, torch.cumsum(lengths, 0) - lengths, lengths, 16000)


def test_chunked_inference_covers_every_frame_once() -> None:
    model, frames, data = three_utterances()
    chunked = lstm_denoise.infer_logits(model, "chunk", data, chunk=10)
    whole = lstm_denoise.infer_logits(model, "pad", data, chunk=10)
    assert chunked.shape == whole.shape == frames.shape
    # within the first chunk of each utterance both see the same past; later they differ
    first = torch.cat([torch.arange(0, 3), torch.arange(3, 13), torch.arange(28, 38)])
    assert torch.allclose(chunked[first], whole[first], atol=1e-5)
    assert not torch.allclose(chunked[13:28], whole[13:28], atol=1e-4)


def test_chunk_windows_score_every_frame_once_and_stay_in_their_utterance() -> None:
    offsets, lengths = torch.tensor([0, 3, 28]), torch.tensor([3, 25, 10])
    plain, inside0, scored0 = lstm_denoise.chunk_windows(offsets, lengths, 10)
    assert torch.equal(inside0, scored0)  # no context: the windows are the chunks
    index, inside, scored = lstm_denoise.chunk_windows(offsets, lengths, 10, before=4, after=2)
    assert index.shape[1] == 16
    assert torch.equal(index[scored], torch.arange(38))  # every frame once, in store order
    assert torch.equal(plain[scored0], index[scored])
    utterance = torch.repeat_interleave(torch.arange(3), lengths)  # owner of each frame
    owners = utterance[index.clamp(0, 37)]  # (C, W)
    rows = utterance[index[:, 4]]  # each window's own utterance (its first chunk frame)
    assert torch.equal(inside, (index >= 0) & (index < 38) & (owners == rows[:, None]))
    assert int((inside & ~scored).sum()) > 0  # context frames are fed, not scored


def test_chunk_context_gives_each_chunk_the_frames_before_it() -> None:
    model, frames, data = three_utterances()
    whole = lstm_denoise.infer_logits(model, "pad", data, chunk=10)
    plain = lstm_denoise.infer_logits(model, "chunk", data, chunk=10)
    widened = lstm_denoise.infer_logits(model, "chunk", data, chunk=10, sides=(10, 0))
    assert widened.shape == whole.shape
    # the second chunk of the 25-frame utterance (frames 13-22): with 10 frames of context
    # its window starts where the utterance starts, so a unidirectional LSTM sees what it
    # sees over the whole utterance; without context it starts afresh
    second = slice(13, 23)
    assert torch.allclose(widened[second], whole[second], atol=1e-5)
    assert not torch.allclose(plain[second], whole[second], atol=1e-4)


def test_remixed_copies_keep_the_speech_and_move_the_noise() -> None:
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(1600).astype(np.float32)
    noise = rng.standard_normal(1600).astype(np.float32)
    copies = lstm_denoise.remixed(clean, noise, 3, 3.0, np.random.default_rng(1))
    assert len(copies) == 3
    for new_noise, noisy in copies:
        assert np.allclose(noisy - clean, new_noise, atol=1e-6)
        gain_db = 10 * np.log10(np.sum(new_noise**2) / np.sum(noise**2))
        assert abs(gain_db) <= 3.0 + 1e-4
        assert not np.allclose(new_noise, noise * 10 ** (gain_db / 20), atol=1e-3)  # shifted in time


def test_fresh_babble_remix_is_other_speech_at_the_noise_level() -> None:
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(1600).astype(np.float32)
    noise = 0.3 * rng.standard_normal(1600).astype(np.float32)
    talkers = [np.sin(np.arange(800) * f).astype(np.float32) for f in (0.05, 0.11, 0.23, 0.31, 0.47)]
    copies = lstm_denoise.remixed(clean, noise, 4, 2.0, np.random.default_rng(1), babble_pool=talkers)
    assert len(copies) == 4
    for new_noise, noisy in copies:
        assert np.allclose(noisy - clean, new_noise, atol=1e-6)  # the speech is kept
        gain_db = 10 * np.log10(np.sum(new_noise**2) / np.sum(noise**2))
        assert abs(gain_db) <= 2.0 + 1e-3  # at the old noise's level, within the gain range
        # made of the pool's voices: their spectral lines hold nearly all of its energy ...
        power = np.abs(np.fft.rfft(new_noise.astype(np.float64))) ** 2
        lines = [round(f * 1600 / (2 * np.pi)) for f in (0.05, 0.11, 0.23, 0.31, 0.47)]
        near = sum(power[max(0, k - 3): k + 4].sum() for k in lines)
        assert near > 0.9 * power.sum()  # (white noise would put ~4% there)
        # ... and none of the old noise is left in it
        assert abs(np.corrcoef(new_noise, noise)[0, 1]) < 0.1


def test_fresh_babble_remix_changes_only_remixed_babble(data_root: Path) -> None:
    cfg = lstm_denoise.Config(**(lstm_denoise.PRESETS["smoke"] | {"remix": 1, "remix_babble": "fresh"}))
    dirs = lstm_denoise.corpus_dirs(cfg)
    shifted = lstm_denoise.load_frames(dirs, "train", dataclasses.replace(cfg, remix_babble="shift"), False, remix=1)
    fresh = lstm_denoise.load_frames(dirs, "train", cfg, False, remix=1)
    kinds = [r["noise_type"] for d in dirs for r in lstm_denoise.read_pairs(d, "train")]
    assert "babble" in kinds
    assert torch.equal(fresh.lengths, shifted.lengths)

    def frames(data: lstm_denoise.Frames, u: int) -> torch.Tensor:
        return data.noisy[data.offsets[u]: data.offsets[u] + data.lengths[u]]

    for i, kind in enumerate(kinds):
        original, copy = 2 * i, 2 * i + 1  # each utterance, then its remixed copy
        assert torch.equal(frames(fresh, original), frames(shifted, original))  # the corpus itself is kept
        if kind == "babble":
            assert not torch.allclose(frames(fresh, copy), frames(shifted, copy), rtol=0.1)


def test_level_norm_gives_every_utterance_unit_rms_input_and_keeps_its_spectrum(data_root: Path) -> None:
    cfg = lstm_denoise.Config(**(lstm_denoise.PRESETS["smoke"] | {"level_norm": True}))
    dirs = lstm_denoise.corpus_dirs(cfg)
    plain = lstm_denoise.load_frames(dirs, "test", dataclasses.replace(cfg, level_norm=False), True)
    normed = lstm_denoise.load_frames(dirs, "test", cfg, True)
    levels = []
    for u in range(len(plain.lengths)):
        span = slice(int(plain.offsets[u]), int(plain.offsets[u] + plain.lengths[u]))
        rms = normed.noisy[span].square().mean().sqrt()
        assert abs(float(rms) - 1) < 1e-4
        level = float(plain.noisy[span].square().mean().sqrt())
        assert torch.allclose(normed.noisy[span] * level, plain.noisy[span], rtol=1e-4, atol=1e-9)
        levels.append(level)
        assert torch.equal(normed.specs[u], plain.specs[u])  # the audio rebuilt from the mask is untouched
    assert max(levels) > 1.5 * min(levels)  # the corpus's utterances do differ in level
    assert torch.equal(normed.target, plain.target)


def test_ensemble_scores_the_mean_logit_of_the_seeds_models(tmp_path: Path, data_root: Path) -> None:
    overrides = {"strategies": ["chunk"], "n_seeds": 2, "ensemble": True, "context": 2}
    outcome = runner.execute(runner.plan_study("lstm-denoise", "smoke", overrides), out=tmp_path, device="cpu",
                             quiet=True)
    assert outcome.status == "finished", outcome.message
    (row,) = outcome.metrics["strategies"]
    assert row["n"] == 1  # one estimate, not one per seed
    cfg = lstm_denoise.Config(**(lstm_denoise.PRESETS["smoke"] | overrides))
    val = lstm_denoise.load_frames(lstm_denoise.corpus_dirs(cfg), "test", cfg, True)
    logits = []
    for seed in (0, 1):
        model = LSTMDenoiser(val.noisy.shape[1], cfg.hidden, cfg.layers, cfg.bidirectional, cfg.dropout, cfg.log_input)
        state = torch.load(outcome.dir / "checkpoints" / f"chunk-seed{seed}.done.pt", weights_only=True)["model"]
        model.load_state_dict(state)
        logits.append(lstm_denoise.infer_logits(model, "chunk", val, cfg.chunk, lstm_denoise._chunk_sides(cfg)))

    def snr(logit: torch.Tensor) -> float:
        masks = [m.T for m in torch.sigmoid(logit).split(val.lengths.tolist())]
        waves = lstm_denoise.waveforms(masks, val, cfg)
        return float(np.mean([metrics.snr_db(c, w) for c, w in zip(val.clean, waves, strict=True)]))

    assert not torch.allclose(logits[0], logits[1], atol=1e-3)  # two different models
    assert row["snr_db"] == pytest.approx(snr((logits[0] + logits[1]) / 2), abs=1e-5)
    assert all(abs(row["snr_db"] - snr(x)) > 1e-4 for x in logits)


def test_signal_approximation_chunk_training_with_context_and_remix_improves_snr(
        tmp_path: Path, data_root: Path) -> None:
    overrides = {"strategies": ["chunk"], "target": "psm", "loss": "mse", "context": 3, "bidirectional": True,
                 "remix": 1}
    outcome = runner.execute(runner.plan_study("lstm-denoise", "smoke", overrides), out=tmp_path, device="cpu",
                             quiet=True)
    assert outcome.status == "finished", outcome.message
    head = outcome.metrics["headline"]
    assert head["snr_gain_db.chunk"] > 0.5
    assert head["snr_db.psm_oracle"] > head["snr_db.ibm_oracle"] > head["snr_db.chunk"]
