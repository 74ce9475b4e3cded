"""The denoise study on its smoke corpus, and `dlslab denoise` on a user's file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from study_runs import run_smoke

from dlslab import runner
from dlslab.audio.io import read_audio, resample, write_audio
from dlslab.audio.metrics import snr_db
from dlslab.cli import main
from dlslab.commands.denoise import denoise_blocks, find_checkpoint, load_denoiser
from dlslab.studies.denoise import denoise_wave, load_data


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("runs")
    return run_smoke("denoise", out).dir


def test_every_model_raises_snr_by_3_db_on_held_out_audio(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    gains = metrics["headline"]["snr_gain_db"]
    assert set(gains) == {"mlp", "cnn1d", "cnn2d"}
    assert all(g >= 3.0 for g in gains.values()), gains
    snr = metrics["headline"]["snr_db"]
    assert snr["oracle"] > max(snr[m] for m in gains)  # nothing beats the clean magnitude
    kinds = [item["kind"] for item in json.loads((smoke_run / "report.json").read_text())["items"]]
    assert {"table", "image", "audio", "text"} <= set(kinds)


def test_denoise_command_on_a_file_at_another_rate(smoke_run, tmp_path, capsys):
    cfg = runner.plan_study("denoise", "smoke").cfg
    pair = load_data(cfg, None)[2][0]  # a held-out pair of the (cached) smoke corpus
    noisy, clean, rate = pair.noisy, pair.clean, cfg.sample_rate
    rate_in = 22050
    src = write_audio(tmp_path / "in.wav", resample(noisy, rate, rate_in), rate_in)
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.wav"), "--model", str(smoke_run)]) == 0
    assert "x real time" in capsys.readouterr().out
    out, out_rate = read_audio(tmp_path / "out.wav")
    assert out_rate == rate_in and abs(len(out) - len(resample(noisy, rate, rate_in))) <= 1
    back = resample(out, rate_in, rate)
    assert snr_db(clean, back) > snr_db(clean, noisy) + 2.0


def test_blocks_match_one_pass_and_bad_inputs_are_usage_errors(smoke_run, tmp_path):
    model, cfg = load_denoiser(find_checkpoint(str(smoke_run), "cnn2d"))
    wave = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    whole = denoise_wave(model, wave, cfg["n_fft"], cfg["hop"])
    blocks = denoise_blocks(model, wave, cfg["n_fft"], cfg["hop"], block_frames=7)
    assert np.max(np.abs(whole - blocks)) < 1e-5
    silent = write_audio(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    assert main(["denoise", str(silent), "-o", str(tmp_path / "o.wav"), "--model", str(smoke_run)]) == 2
    assert main(["denoise", str(silent), "-o", str(tmp_path / "o.wav"), "--model", str(tmp_path)]) == 2
    torch.save({"not": "a model"}, tmp_path / "x.pt")
    assert main(["denoise", str(silent), "-o", str(tmp_path / "o.wav"), "--model", str(tmp_path / "x.pt")]) == 2
