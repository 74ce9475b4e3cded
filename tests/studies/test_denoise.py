"""The denoise study on its smoke corpus, its training data (remixing, the phase-sensitive
target, the validation score), and `dlslab denoise` on a user's file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from study_runs import run_smoke

from dlslab import runner
from dlslab.audio.io import read_audio, resample, write_audio
from dlslab.audio.metrics import snr_db
from dlslab.audio.stft import magphase, reconstruct, stft
from dlslab.cli import main
from dlslab.audio.corpus import Pair
from dlslab.audio.denoise import denoise_blocks, denoise_wave, find_checkpoint, load_denoiser
from dlslab.errors import ConfigError
from dlslab.studies.denoise import Config, check, frames, load_data, remixed, spectral_snr


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    return run_smoke("denoise").dir


def test_every_model_raises_snr_by_3_db_on_held_out_audio(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    gains = metrics["headline"]["snr_gain_db"]
    assert set(gains) == {"mlp", "cnn1d", "cnn2d"}
    assert all(g >= 3.0 for g in gains.values()), gains
    snr = metrics["headline"]["snr_db"]
    assert snr["oracle"] > max(snr[m] for m in gains)  # nothing beats the clean magnitude
    kinds = [item["kind"] for item in json.loads((smoke_run / "report.json").read_text())["items"]]
    assert {"table", "image", "audio", "text"} <= set(kinds)


def test_bf16_training_denoises_as_well(smoke_run):
    """The quick preset trains under bf16 autocast: the same smoke training must still learn."""
    fp32 = json.loads((smoke_run / "metrics.json").read_text())["headline"]["snr_gain_db"]["cnn1d"]
    bf16 = run_smoke("denoise", {"bf16": True, "models": ["cnn1d"]}).dir
    gain = json.loads((bf16 / "metrics.json").read_text())["headline"]["snr_gain_db"]["cnn1d"]
    assert gain >= 3.0 and abs(gain - fp32) < 1.5, (gain, fp32)


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
    model, spec = load_denoiser(find_checkpoint(str(smoke_run)))
    direct = denoise_wave(model, noisy, spec.n_fft, spec.hop)  # the same model at its own rate
    assert snr_db(clean, back) > snr_db(clean, noisy) + 1.0
    assert abs(snr_db(clean, back) - snr_db(clean, direct)) < 0.5  # the trip through 22.05 kHz costs little


def test_blocks_match_one_pass_and_bad_inputs_are_usage_errors(smoke_run, tmp_path):
    model, spec = load_denoiser(find_checkpoint(str(smoke_run), "cnn2d"))
    wave = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    whole = denoise_wave(model, wave, spec.n_fft, spec.hop)
    blocks = denoise_blocks(model, wave, spec.n_fft, spec.hop, block_frames=7)
    assert np.max(np.abs(whole - blocks)) < 1e-5
    silent = write_audio(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    assert main(["denoise", str(silent), "-o", str(tmp_path / "o.wav"), "--model", str(smoke_run)]) == 2
    assert main(["denoise", str(silent), "-o", str(tmp_path / "o.wav"), "--model", str(tmp_path)]) == 2
    torch.save({"not": "a model"}, tmp_path / "x.pt")
    assert main(["denoise", str(silent), "-o", str(tmp_path / "o.wav"), "--model", str(tmp_path / "x.pt")]) == 2


def _pair(seconds: float = 2.0, seed: int = 0) -> Pair:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    clean = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    noise = (0.1 * rng.standard_normal(len(t)) * (1.5 + np.sin(2 * np.pi * 0.7 * t))).astype(np.float32)
    return Pair("p", clean + noise, clean)


def test_remix_keeps_the_speech_and_moves_the_noise():
    cfg = Config(remix=3, remix_gain_db=3.0)
    pair = _pair()
    mixed = remixed([pair], cfg)
    assert len(mixed) == 4 and mixed[0] is pair
    noise = pair.noisy - pair.clean
    for copy in mixed[1:]:
        assert copy.clean is pair.clean and copy.noisy.shape == pair.noisy.shape
        new = copy.noisy - copy.clean
        gain = np.sqrt(np.sum(new ** 2) / np.sum(noise ** 2))
        assert 10 ** (-3 / 20) - 1e-4 <= gain <= 10 ** (3 / 20) + 1e-4
        shift = int(np.argmax(np.fft.irfft(np.fft.rfft(new) * np.conj(np.fft.rfft(noise)), len(noise))))
        assert len(noise) // 10 <= shift <= len(noise) - len(noise) // 10  # a real move, not the same stretch
        assert np.allclose(np.roll(noise, shift) * gain, new, atol=1e-5)
    again = remixed([pair], cfg)
    assert all(np.array_equal(a.noisy, b.noisy) for a, b in zip(mixed, again))  # fixed by the seed
    assert remixed([pair], Config(remix=0)) == [pair]


def test_phase_sensitive_target_beats_the_clean_magnitude_and_validation_snr_is_exact():
    cfg = Config()
    pair = _pair(seed=1)
    data = frames([pair], cfg, pad=4, device="cpu")
    real = data.real
    assert int(real.sum()) == len(data.noisy) - 4 - cfg.chunk_frames  # silent rows before and after
    x = stft(torch.from_numpy(pair.noisy), cfg.n_fft, cfg.hop)
    _, phase = magphase(x)

    def snr_with_noisy_phase(mag: torch.Tensor) -> float:
        wave = reconstruct(mag[real].T, phase, cfg.n_fft, cfg.hop, length=len(pair.noisy)).numpy()
        return snr_db(pair.clean, wave)

    # the clean spectrum projected on the noisy phase is the estimate with the least waveform error
    assert snr_with_noisy_phase(data.extra["proj"].clamp_min(0)) > snr_with_noisy_phase(data.extra["clean"]) + 0.5

    class PassThrough(torch.nn.Module):  # estimates |X|: the noisy input itself
        context = 0

        def forward(self, runs):
            return runs

    s = stft(torch.from_numpy(pair.clean), cfg.n_fft, cfg.hop)
    expected = 10 * torch.log10(s.abs().pow(2).sum() / (x - s).abs().pow(2).sum()).item()
    assert abs(spectral_snr(PassThrough(), data, cfg.chunk_frames) - expected) < 0.01


@pytest.mark.parametrize("key, value", [("lr", 0.0), ("n_train", 0), ("train_fraction", 1.0), ("dropout", 1.0),
                                        ("remix", -1), ("cnn2d_channels", []), ("models", []), ("hop", 2048)])
def test_check_refuses_out_of_range_values(key, value):
    with pytest.raises(ConfigError, match=key):
        check(Config(**{key: value}))
    check(Config())
