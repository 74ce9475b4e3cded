"""Study 3, `denoise`: speech denoising on STFT magnitudes, MLP vs 1-D CNN vs 2-D CNN.

Each model maps a window of noisy magnitude frames |X| to the clean magnitude of the current
frame; the waveform is rebuilt with the noisy phase. Two data settings:

- "corpus": many synthetic utterances (espeak-ng voices, real and generated noise), trained
  on the corpus's train split (its last `val_fraction` held out for early stopping) and
  tested on its test split (other sentences, other stretches of the noise recordings);
- "recording": one long paired recording (the classic setting: one male voice, ~80 s,
  non-stationary noise), trained on its first `train_fraction` and tested on the rest.

Scientific variable: the model family. Nuisance (tuned per family, then fixed): width,
context, dropout, learning rate. Fixed: the STFT (1024-point Hann, hop 512), the loss
(MSE between the estimated magnitude and the clean spectrum's projection on the noisy phase,
which is the error of the waveform rebuilt with that phase, i.e. what SNR measures), AdamW,
early stopping on validation SNR. Reported: SNR, SI-SDR, PESQ and STOI of the noisy input,
of each model, of the oracle (clean magnitude with the noisy phase) and of the
phase-sensitive oracle (the clean spectrum's projection on the noisy phase, the best
magnitude for that phase), and training-audio SNR beside held-out SNR.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dlslab.audio.corpus import CorpusSpec, Pair, read_pair, read_pairs, speech_corpus
from dlslab.audio.denoise import StftSpec, checkpoint_path, denoise_wave, oracle_wave, save_denoiser
from dlslab.audio.frames import Frames, window_rows
from dlslab.audio.masks import phase_sensitive_target
from dlslab.audio.metrics import speech_scores
from dlslab.audio.remix import remix_noise
from dlslab.audio.stft import stft
from dlslab.config import StudyConfig, require
from dlslab.errors import ConfigError, DataError, UsageError
from dlslab.models import build_model
from dlslab.models.denoisers import FrameDenoiser
from dlslab.report.figures import spectrograms
from dlslab.report.plots import bar_chart
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.engine import fit, predict, seed_everything

Family = Literal["mlp", "cnn1d", "cnn2d"]
MODELS: tuple[str, ...] = ("mlp", "cnn1d", "cnn2d")


@dataclass
class Config(StudyConfig):
    data: Literal["corpus", "recording"] = "recording"  # many utterances, or one long paired recording
    models: list[Family] = field(default_factory=lambda: list(MODELS))  # which of mlp, cnn1d, cnn2d to train
    output: Literal["mask", "magnitude"] = "mask"  # sigmoid mask on |X|, or a softplus magnitude
    target: Literal["phase_sensitive", "magnitude"] = "phase_sensitive"  # what the loss fits: |S|cos(∠S-∠X), or |S|
    sample_rate: int = 16000  # Hz the models work at (inputs are resampled to it)
    n_fft: int = 1024  # STFT window length (bins = n_fft // 2 + 1)
    hop: int = 512  # STFT hop
    # corpus setting
    corpus_dir: str = ""  # a corpus folder (pairs.csv layout); empty: the synthetic corpus below
    n_train: int = 300  # synthetic corpus: training utterances
    n_test: int = 40  # synthetic corpus: test utterances
    snr_low_db: float = 0.0  # synthetic corpus: lowest input SNR
    snr_high_db: float = 10.0  # synthetic corpus: highest input SNR
    noise_types: list[str] = field(  # synthetic corpus: noise types (real: the recordings found)
        default_factory=lambda: ["real", "white", "pink", "brown", "babble"])
    # recording setting
    noisy_file: str = ""  # the long noisy recording; empty: the synthetic one below
    clean_file: str = ""  # its clean version (same speech, same length)
    recording_seconds: float = 80.0  # synthetic recording: length
    recording_snr_db: float = 7.0  # synthetic recording: input SNR
    recording_noise: str = "exercise_bike"  # synthetic recording: noise (a recording name or babble, ...)
    train_fraction: float = 0.8  # recording: the first part trains, the rest tests
    # training
    remix: int = 4  # extra copies of each training pair, its noise (noisy - clean) shifted in time and rescaled
    remix_gain_db: float = 3.0  # remix: noise gain drawn uniformly within ± this many dB
    val_fraction: float = 0.1  # last part of the training audio held out for early stopping
    epochs: int = 60  # maximum passes over the training frames
    patience: int = 8  # early stop after this many epochs without a better validation SNR
    batch_size: int = 128  # frames per step
    chunk_frames: int = 16  # a training sample is a run of this many consecutive frames
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    bf16: bool = False  # train under bf16 autocast on the CPU too (quick: same validation SNR, 0.8x the time; docs)
    dropout: float = 0.2  # dropout in every model
    mlp_hidden: int = 1024  # MLP width
    mlp_layers: int = 2  # MLP hidden layers
    mlp_context: int = 0  # MLP previous frames (0: the classic single-frame MLP)
    cnn1d_context: int = 4  # 1-D CNN previous frames, as input channels
    cnn1d_channels: list[int] = field(default_factory=lambda: [16, 32, 32])  # 1-D CNN channels per layer
    cnn2d_context: int = 20  # 2-D CNN previous frames N (window N + 1 frames)
    cnn2d_channels: list[int] = field(default_factory=lambda: [16, 16, 32])  # 2-D CNN channels per layer
    cnn2d_hidden: int = 512  # 2-D CNN hidden layer between the convolutions and the output
    # evaluation
    max_quality_files: int = 20  # PESQ/STOI (slow) on at most this many test files
    audio_examples: int = 2  # test files whose audio goes into the report


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"data": "corpus", "n_train": 8, "n_test": 2, "noise_types": ["white", "pink", "brown"],
              "remix": 0, "epochs": 8, "patience": 8,
              "mlp_hidden": 256, "cnn1d_channels": [8, 16], "cnn2d_context": 8, "cnn2d_channels": [8, 16],
              "cnn2d_hidden": 128, "max_quality_files": 2, "audio_examples": 1, "batch_size": 64},
    "quick": {"data": "corpus", "n_train": 200, "n_test": 12, "remix": 0, "epochs": 20, "patience": 6, "bf16": True,
              "mlp_hidden": 512, "cnn2d_channels": [8, 16, 16], "cnn2d_hidden": 256, "max_quality_files": 6},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    own = cfg.corpus_dir if cfg.data == "corpus" else cfg.noisy_file
    return [] if own else ["speech-corpus", "noise"]


def check(cfg: Config) -> None:
    """Refuse out-of-range values before anything runs."""
    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: {allowed}")

    need(bool(cfg.models), "models", "give one or more of " + ", ".join(MODELS))
    for key in ("cnn1d_channels", "cnn2d_channels"):
        need(bool(getattr(cfg, key)), key, "give one or more channel counts")
    require(cfg, at_least_1=("sample_rate", "n_fft", "hop", "n_train", "n_test", "epochs", "patience", "batch_size",
                             "chunk_frames", "mlp_hidden", "mlp_layers", "cnn2d_hidden", "cnn1d_channels",
                             "cnn2d_channels"),
            non_negative=("remix", "mlp_context", "cnn1d_context", "cnn2d_context", "max_quality_files",
                          "audio_examples", "remix_gain_db", "weight_decay", "recording_seconds"), positive=("lr",))
    need(cfg.hop <= cfg.n_fft, "hop", f"must not exceed n_fft={cfg.n_fft}")
    need(cfg.snr_low_db <= cfg.snr_high_db, "snr_low_db", f"must not exceed snr_high_db={cfg.snr_high_db}")
    for key in ("train_fraction", "val_fraction"):
        need(0 < getattr(cfg, key) < 1, key, "must be a fraction in (0, 1)")
    need(0 <= cfg.dropout < 1, "dropout", "must be a probability in [0, 1)")


# --- data ------------------------------------------------------------------------------------


def load_data(cfg: Config, data_dir: Path | None) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train, validation, test) pairs of the configured setting; test never overlaps training."""
    if cfg.data == "corpus":
        if cfg.corpus_dir:
            folder = Path(cfg.corpus_dir)
        else:
            folder = speech_corpus(CorpusSpec(n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                                              sample_rate=cfg.sample_rate,
                                              snr_range_db=(cfg.snr_low_db, cfg.snr_high_db),
                                              noise_types=tuple(cfg.noise_types)), data_dir)
        train = [read_pair(r["noisy"], r["clean"], cfg.sample_rate, f"train/{r['id']}")
                 for r in read_pairs(folder, "train")]
        test = [read_pair(r["noisy"], r["clean"], cfg.sample_rate, f"test/{r['id']}")
                for r in read_pairs(folder, "test")]
        if len(train) < 2 or not test:
            raise DataError(f"{folder} needs at least 2 train and 1 test pairs (pairs.csv)")
        n_val = max(1, int(round(len(train) * cfg.val_fraction)))
        return train[:-n_val], train[-n_val:], test
    if cfg.noisy_file or cfg.clean_file:
        if not (cfg.noisy_file and cfg.clean_file):
            raise UsageError("give both noisy_file and clean_file (the same speech, noisy and clean)")
        whole = read_pair(Path(cfg.noisy_file), Path(cfg.clean_file), cfg.sample_rate, "recording")
    else:
        folder = speech_corpus(CorpusSpec(n_train=0, n_test=0, seed=cfg.seed, sample_rate=cfg.sample_rate,
                                          snr_range_db=(cfg.recording_snr_db, cfg.recording_snr_db),
                                          long_seconds=cfg.recording_seconds,
                                          long_noise=cfg.recording_noise), data_dir)
        (row,) = read_pairs(folder, "long")
        whole = read_pair(row["noisy"], row["clean"], cfg.sample_rate, "recording")
    n = len(whole.clean)
    cut, val_cut = int(n * cfg.train_fraction), int(n * cfg.train_fraction * (1 - cfg.val_fraction))

    def part(name: str, lo: int, hi: int) -> Pair:
        return Pair(name, whole.noisy[lo:hi], whole.clean[lo:hi])

    return [part("train", 0, val_cut)], [part("val", val_cut, cut)], [part("test", cut, n)]


def remixed(pairs: list[Pair], cfg: Config) -> list[Pair]:
    """`pairs` and `cfg.remix` copies of each with its noise (noisy - clean) moved in time and
    rescaled (`audio.remix`): the same speech over other stretches of the same noise."""
    rng = np.random.default_rng(derive(cfg.seed, "remix"))
    out = list(pairs)
    for p in pairs:
        copies = remix_noise(p.clean, p.noisy - p.clean, cfg.remix, cfg.remix_gain_db, rng)
        out += [Pair(f"{p.name}+remix{i}", noisy, p.clean) for i, (_, noisy) in enumerate(copies)]
    return out


def frames(pairs: list[Pair], cfg: Config, pad: int, device: torch.device | str) -> Frames:
    """Every pair's noisy |X|, clean |S| and the clean spectrum projected on the noisy phase
    (`extra` "clean" and "proj"), `pad` silent rows before each pair and a chunk's worth
    after the last, so the context window of every chunk exists. The target is the one
    `cfg.target` names."""
    noisy, clean, proj = [], [], []
    for p in pairs:
        x = stft(torch.from_numpy(p.noisy), cfg.n_fft, cfg.hop).T  # (frames, bins) complex
        s = stft(torch.from_numpy(p.clean), cfg.n_fft, cfg.hop).T
        noisy.append(x.abs())
        clean.append(s.abs())
        proj.append(phase_sensitive_target(s, x))
    target = proj if cfg.target == "phase_sensitive" else clean
    return Frames.stack(noisy, target, pad=pad, tail=cfg.chunk_frames, clean=clean, proj=proj).to(device)


# --- models, training, evaluation --------------------------------------------------------------


def model_spec(name: str, cfg: Config) -> tuple[str, dict[str, Any]]:
    """(registry name, keyword arguments) of model family `name` under `cfg`."""
    common = {"bins": cfg.n_fft // 2 + 1, "dropout": cfg.dropout, "output": cfg.output}
    if name == "mlp":
        return "denoise_mlp", {"hidden": cfg.mlp_hidden, "layers": cfg.mlp_layers, "context": cfg.mlp_context, **common}
    if name == "cnn1d":
        return "denoise_cnn1d", {"context": cfg.cnn1d_context, "channels": list(cfg.cnn1d_channels), **common}
    return "denoise_cnn2d", {"context": cfg.cnn2d_context, "channels": list(cfg.cnn2d_channels),
                             "hidden": cfg.cnn2d_hidden, **common}


def spectral_snr(model: FrameDenoiser, data: Frames, chunk: int) -> float:
    """SNR in dB of the estimated magnitudes with the noisy phase against the clean spectrum (a
    fast validation score that tracks the waveform SNR). With p the clean spectrum's projection
    on the noisy phase, |est·e^(j∠X) - S|² = (est - p)² + |S|² - p²."""
    starts = data.chunk_starts(chunk)
    est = predict(model, data.noisy[window_rows(starts, model.context, chunk)], 64)  # (chunks, chunk, bins)
    rows = window_rows(starts, 0, chunk)
    real = data.real[rows]
    clean, proj = data.extra["clean"][rows][real], data.extra["proj"][rows][real]
    err = ((est[real] - proj).pow(2) + clean.pow(2) - proj.pow(2)).sum().clamp_min(1e-20)
    return 10 * torch.log10(clean.pow(2).sum() / err).item()


def train_model(name: str, cfg: Config, train: Frames, val: Frames, run: Run) -> tuple[FrameDenoiser, dict[str, Any]]:
    seed_everything(cfg.seed)
    registry_name, kwargs = model_spec(name, cfg)
    model = build_model(registry_name, **kwargs).to(run.device)
    model.fit_norm(train.noisy[train.real], train.extra["clean"][train.real])
    scale2 = model.norm.scale.item() ** 2
    chunk = cfg.chunk_frames

    def loss_fn(m: FrameDenoiser, starts: torch.Tensor) -> torch.Tensor:
        rows = window_rows(starts, 0, chunk)  # (B, chunk) the frames the runs estimate
        est = m(train.noisy[window_rows(starts, m.context, chunk)])
        return (est - train.target[rows])[train.real[rows]].pow(2).mean() / scale2  # MSE over real frames only

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    hist = fit(model, (train.chunk_starts(chunk),), loss_fn, optimizer=opt, epochs=cfg.epochs,
               batch_size=max(1, cfg.batch_size // chunk), cpu_bf16=cfg.bf16,
               evaluate=lambda m: {"val_snr": spectral_snr(m, val, chunk)}, monitor="val_snr", mode="max",
               patience=cfg.patience, restore_best=True, seed=cfg.seed, run=run, name=f"denoise-{name}")
    model.eval()
    info = {"params": sum(p.numel() for p in model.parameters()), "train_seconds": hist.seconds,
            "epochs": len(hist.epochs), "best_epoch": hist.best_epoch, "best_val_snr": hist.best_value}
    return model, info


def evaluate(systems: dict[str, Any], pairs: list[Pair], rate: int, quality_files: int) -> dict[str, dict[str, float]]:
    """Mean metrics per system ('noisy', the oracles, each model) over `pairs`; PESQ and STOI
    over the first `quality_files` pairs only (they are slow)."""
    clean = [p.clean for p in pairs]
    return {name: speech_scores(clean, [system(p) for p in pairs], rate, slow_n=quality_files)
            for name, system in systems.items()}


# --- report ------------------------------------------------------------------------------------


def spectrogram_figure(pair: Pair, estimates: dict[str, np.ndarray], cfg: Config) -> Any:
    waves = {"noisy": pair.noisy, **estimates, "clean": pair.clean}
    panels = {name: 20 * torch.log10(stft(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)),
                                          cfg.n_fft, cfg.hop).abs() + 1e-6).numpy() for name, w in waves.items()}
    extent = (0, len(pair.noisy) / cfg.sample_rate, 0, cfg.sample_rate / 2000)
    return spectrograms(panels, extent=extent, xlabel="seconds", ylabel="kHz", range_db=80, colorbar_label="dB")


def conclusions(test: dict[str, dict[str, float]], train: dict[str, dict[str, float]], models: list[str]) -> str:
    base = test["noisy"]["snr_db"]
    lines = [(f"Held-out input SNR is {base:.1f} dB; the oracle (clean magnitude, noisy phase) reaches "
              f"{test['oracle']['snr_db']:.1f} dB, the phase-sensitive oracle (clean spectrum projected on "
              f"the noisy phase) {test['oracle_ps']['snr_db']:.1f} dB.")]
    for m in models:
        lines.append(f"{m}: {test[m]['snr_db']:.1f} dB held out ({test[m]['snr_db'] - base:+.1f} dB over the input), "
                     f"{train[m]['snr_db']:.1f} dB on its training audio "
                     f"(gap {train[m]['snr_db'] - test[m]['snr_db']:.1f} dB).")
    if "mlp" in models and "cnn2d" in models:
        diff = test["cnn2d"]["snr_db"] - test["mlp"]["snr_db"]
        lines.append(f"The 2-D CNN is {abs(diff):.1f} dB {'better' if diff >= 0 else 'worse'} than the MLP.")
    return " ".join(lines)


def record(cfg: Config, run: Run, systems: dict[str, Any], test_pairs: list[Pair], test: dict[str, dict[str, float]],
           train_eval: dict[str, dict[str, float]], info: dict[str, dict[str, Any]]) -> None:
    gain = {name: test[name]["snr_db"] - test["noisy"]["snr_db"] for name in [*cfg.models, "oracle"]}
    best = max(cfg.models, key=gain.get)
    run.answer(f"On held-out noisy speech ({test['noisy']['snr_db']:.1f} dB SNR) the {best} denoises best. SNR gains: "
               + ", ".join(f"{m} {gain[m]:+.1f} dB" for m in cfg.models) + f"; the oracle mask {gain['oracle']:+.1f} dB.")
    run.test_data(*(p.noisy for p in test_pairs))
    rows = []
    for name in ["noisy", *cfg.models, "oracle", "oracle_ps"]:
        row = {"system": name, **{k: round(v, 3) for k, v in test[name].items()},
               "train_snr_db": round(train_eval[name]["snr_db"], 2)}
        if name in info:
            row |= {"params": info[name]["params"], "train_s": round(info[name]["train_seconds"], 1),
                    "epochs": info[name]["epochs"]}
        rows.append(row)
    run.add_table("Held-out test audio: noisy input, each model, oracles", rows,
                  caption="oracle: clean magnitude with the noisy phase; oracle_ps: the clean spectrum's "
                          "projection on the noisy phase (floored at 0). snr_db, si_sdr_db, pesq, stoi on "
                          "held-out audio (PESQ/STOI on the first "
                          f"{min(cfg.max_quality_files, len(test_pairs))} files); train_snr_db on training audio.")
    run.add_figure(bar_chart({r["system"]: r["snr_db"] for r in rows}, title="SNR on held-out audio",
                             ylabel="SNR (dB)"), "snr_bars", title="SNR by system")
    example = test_pairs[0]
    estimates = {name: systems[name](example) for name in cfg.models}
    run.add_figure(spectrogram_figure(example, estimates, cfg), "spectrograms",
                   title=f"Spectrograms of {example.name}: noisy, each model, clean")
    for p in test_pairs[: cfg.audio_examples]:
        tag = p.name.replace("/", "-")
        run.add_audio(p.noisy, cfg.sample_rate, f"audio/{tag}-noisy", title=f"{p.name}: noisy")
        for name in cfg.models:
            run.add_audio(systems[name](p), cfg.sample_rate, f"audio/{tag}-{name}", title=f"{p.name}: {name}")
        run.add_audio(p.clean, cfg.sample_rate, f"audio/{tag}-clean", title=f"{p.name}: clean")
    run.add_text("Findings", conclusions(test, train_eval, cfg.models))


# --- the study ---------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    check(cfg)
    train_pairs, val_pairs, test_pairs = load_data(cfg, run.data_dir)
    pad = max(cfg.mlp_context, cfg.cnn1d_context, cfg.cnn2d_context, cfg.chunk_frames)
    train, val = frames(remixed(train_pairs, cfg), cfg, pad, run.device), frames(val_pairs, cfg, pad, run.device)
    run.info(f"denoise: {int(train.real.sum())} training frames ({cfg.remix} remixed copies), "
             f"{int(val.real.sum())} validation frames, {len(test_pairs)} test file(s), "
             f"{sum(len(p.clean) for p in test_pairs) / cfg.sample_rate:.1f} s of test audio")

    trained, info = {}, {}
    for name in cfg.models:
        trained[name], info[name] = train_model(name, cfg, train, val, run)

    def system(model: FrameDenoiser):
        return lambda p: denoise_wave(model, p.noisy, cfg.n_fft, cfg.hop, run.device)

    systems = {"noisy": lambda p: p.noisy,
               "oracle": lambda p: oracle_wave(p.noisy, p.clean, cfg.n_fft, cfg.hop),
               "oracle_ps": lambda p: oracle_wave(p.noisy, p.clean, cfg.n_fft, cfg.hop, phase_sensitive=True)}
    systems |= {name: system(m) for name, m in trained.items()}
    t0 = time.perf_counter()
    test = evaluate(systems, test_pairs, cfg.sample_rate, cfg.max_quality_files)
    train_eval = evaluate(systems, train_pairs[: len(test_pairs)], cfg.sample_rate, 0)
    run.info(f"denoise: evaluated in {time.perf_counter() - t0:.1f} s")
    record(cfg, run, systems, test_pairs, test, train_eval, info)
    for name, model in trained.items():
        save_denoiser(checkpoint_path(run.dir, name), model, *model_spec(name, cfg),
                      StftSpec(cfg.sample_rate, cfg.n_fft, cfg.hop))
    headline = {"snr_db": {name: test[name]["snr_db"] for name in ["noisy", *cfg.models, "oracle"]},
                "snr_gain_db": {name: test[name]["snr_db"] - test["noisy"]["snr_db"] for name in cfg.models}}
    return {"headline": headline, "test": test, "train": train_eval, "models": info}
