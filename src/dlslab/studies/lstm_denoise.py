"""Study 6: LSTM denoising of variable-length utterances, and how to batch them.

An LSTM reads the noisy magnitude spectrogram |X| frame by frame and estimates a mask (the
ideal binary mask, 1 where |S| > |N|, the ideal ratio mask or the phase-sensitive mask); the
estimate is the mask times |X| with the noisy phase. Utterances last about 1 s to 10 s, and four ways of batching
them are trained on the same data with the same budget (epochs, frames per update, optimizer):

- pad: random batches of whole utterances, each padded to the longest in its batch;
- chunk: every utterance cut into chunks of 10 frames (only its last chunk padded), random
  batches of chunks, no state between chunks (training and inference see 10 frames at a time,
  plus `context` frames of the utterance around them that are fed but not scored);
- tbptt: the same chunks read in order along parallel streams of utterances, the LSTM state
  carried from chunk to chunk (truncated backpropagation through time), one update per chunk;
- packed: utterances bucketed by length, each bucket a `PackedSequence`, so the LSTM never
  steps over padding.

Padded frames never count in the loss or the metrics. Each strategy is scored on the whole
validation utterances: SNR, SI-SDR and STOI, beside the noisy input and the oracle masks.

Scientific variable: the batching strategy (`train.sequences`). Nuisance (tuned on the
validation utterances, then fixed per preset): width, depth, direction, chunk context,
learning rate and schedule, level normalisation, remixing. Fixed: the corpus, the STFT
(1024-point Hann, hop 512), the target mask and loss, Adam, the budget (epochs and real
frames per update, the same for every strategy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dlslab.audio import metrics
from dlslab.audio.corpus import CorpusSpec
from dlslab.audio.frames import Frames
from dlslab.audio.masks import masked_waveform, weighted_mask_loss
from dlslab.audio.utterances import MaskSpec, References, corpus_parts, load_mask_frames, spread_by_length
from dlslab.config import StudyConfig
from dlslab.errors import ConfigError
from dlslab.models.lstm_denoiser import LSTMDenoiser
from dlslab.report.figures import histogram, spectrograms
from dlslab.report.plots import bar_chart, line_plot
from dlslab.report.stats import STD_NOTE, mean_std
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.engine import History, seed_everything
from dlslab.train.optim import one_cycle
from dlslab.train.sequences import STRATEGIES, SequenceSpec, fit_sequences, infer, make_strategy

Strategy = Literal["pad", "chunk", "tbptt", "packed"]


@dataclass
class Config(StudyConfig):
    n_train: int = 600  # training utterances, split evenly over the corpus parts
    n_test: int = 60  # validation utterances (the corpus's test split), split likewise
    min_seconds: list[float] = field(default_factory=lambda: [1.0, 4.0, 8.0])  # one corpus part per value: its utterances read sentences until at least this long
    max_seconds: float = 10.0  # utterances are cut at this length
    snr_range_db: tuple[float, float] = (0.0, 10.0)  # SNR of each noisy utterance, drawn uniformly
    noise_types: list[str] = field(default_factory=lambda: list(CorpusSpec().noise_types))  # noise kinds mixed in (see dlslab.audio.noise)
    corpus_seed: int = 0  # seed of the corpus (part p uses corpus_seed + p), fixed across training seeds
    n_fft: int = 1024  # STFT window length (bins = n_fft // 2 + 1)
    hop: int = 512  # STFT hop in samples
    target: Literal["ibm", "irm", "psm"] = "ibm"  # mask the model learns: ideal binary, ideal ratio or phase-sensitive (clipped to [0, 1]) mask
    loss: Literal["bce", "mse"] = "bce"  # binary cross-entropy or squared error between the mask and the target (mse with psm and loss_weight=2: the error of the rebuilt spectrum, what the SNR measures)
    log_input: bool = True  # feed log(|X|) rather than |X| (both standardised per bin)
    level_norm: bool = False  # divide each utterance's |X| by its RMS before the model sees it: its input ignores the recording level, and the |X|-weighted loss weighs every utterance alike
    loss_weight: float = 2.0  # weight each time-frequency cell's loss by |X| ** this (0: all equal; 2: by energy, as the SNR weighs errors)
    hidden: int = 256  # LSTM units per direction
    layers: int = 2  # stacked LSTM layers
    bidirectional: bool = False  # bidirectional LSTM (not with tbptt: no state to carry backwards)
    dropout: float = 0.0  # dropout on the input features and between LSTM layers
    strategies: list[Strategy] = field(default_factory=lambda: list(STRATEGIES))  # batching strategies compared: pad, chunk, tbptt, packed
    chunk: int = 10  # frames per chunk (chunk and tbptt)
    context: int = 0  # chunk strategy: frames of the same utterance fed before each chunk (and after it, if bidirectional) but not scored
    remix: int = 0  # extra copies of each training utterance, its noise circularly shifted in time and rescaled
    remix_gain_db: float = 3.0  # remix: noise gain drawn uniformly within ± this many dB
    remix_babble: Literal["shift", "fresh"] = "shift"  # remix of a babble utterance: its babble shifted, or fresh babble of other training utterances' speech at the same level
    batch_frames: int = 640  # real frames per update, the same for every strategy
    tbptt_group: int = 8  # utterances per tbptt stream in one group (more: less padding at stream ends)
    epochs: int = 20  # passes over the training frames, the same for every strategy
    lr: float = 1e-3  # Adam learning rate (the peak one with one_cycle)
    one_cycle: bool = False  # warm up to lr then anneal over the whole training (train.optim.one_cycle)
    grad_clip: float = 1.0  # gradient-norm clipping
    n_seeds: int = 1  # training seeds per strategy (seed, seed + 1, ...): tables show mean ± std
    ensemble: bool = False  # score the mean mask logit of the n_seeds models of each strategy, as one estimate (an ensemble), instead of each model alone
    stoi_utterances: int = 0  # validation utterances STOI is measured on (0: all; STOI is slow)
    audio_examples: int = 2  # validation utterances written as audio, spread from the shortest to the longest


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"n_train": 24, "n_test": 6, "min_seconds": [1.0, 4.0], "max_seconds": 6.0, "hidden": 64,
              "layers": 1, "batch_frames": 320, "epochs": 3, "lr": 3e-3, "stoi_utterances": 2,
              "audio_examples": 1},
    "quick": {"n_train": 600, "n_test": 30, "hidden": 128, "layers": 1, "epochs": 5, "lr": 1e-2,
              "one_cycle": True, "batch_frames": 1280, "context": 10, "level_norm": True, "stoi_utterances": 10},
    # The quick corpus with the best chunk configuration found on its validation utterances.
    "full": {"n_train": 600, "n_test": 30, "strategies": ["chunk"], "hidden": 256, "layers": 1,
             "bidirectional": True, "context": 5, "remix": 1, "level_norm": True, "epochs": 15, "lr": 1e-2,
             "one_cycle": True, "batch_frames": 1280, "n_seeds": 2, "ensemble": True, "stoi_utterances": 10},
}


def data_needs(cfg: Config) -> list[str]:
    return ["speech-corpus", "noise"]


def check(cfg: Config) -> None:
    """Refuse out-of-range values before anything runs."""
    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: {allowed}")

    need(bool(cfg.strategies), "strategies", "give one or more of " + ", ".join(STRATEGIES))
    need(not (cfg.bidirectional and "tbptt" in cfg.strategies), "bidirectional",
         "strategy 'tbptt' carries the LSTM state forward from chunk to chunk, which a bidirectional LSTM "
         "cannot do; set bidirectional=false or drop tbptt from strategies")
    for key in ("n_train", "n_test", "n_fft", "hop", "hidden", "layers", "chunk", "tbptt_group", "epochs", "n_seeds"):
        need(getattr(cfg, key) >= 1, key, "must be >= 1")
    for key in ("context", "remix", "remix_gain_db", "loss_weight", "stoi_utterances", "audio_examples"):
        need(getattr(cfg, key) >= 0, key, "must be >= 0")
    need(bool(cfg.min_seconds) and min(cfg.min_seconds) > 0, "min_seconds", "give one or more lengths > 0 s")
    need(max(cfg.min_seconds, default=0) <= cfg.max_seconds, "max_seconds", "must be >= every min_seconds")
    need(cfg.snr_range_db[0] <= cfg.snr_range_db[1], "snr_range_db", "give (low, high) with low <= high")
    need(cfg.batch_frames >= cfg.chunk, "batch_frames", f"must be >= chunk={cfg.chunk}")
    need(cfg.hop <= cfg.n_fft, "hop", f"must not exceed n_fft={cfg.n_fft}")
    need(0 <= cfg.dropout < 1, "dropout", "must be a probability in [0, 1)")
    need(cfg.lr > 0, "lr", "must be > 0")
    need(cfg.grad_clip > 0, "grad_clip", "must be > 0")


# --- data, models, training ----------------------------------------------------------------------


def load_data(cfg: Config, data_dir: Any = None) -> tuple[Frames, References, Frames, References]:
    """(train frames, their lengths, validation frames, their references), remixed training copies included."""
    corpus = CorpusSpec(n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.corpus_seed,
                        snr_range_db=tuple(cfg.snr_range_db), max_seconds=cfg.max_seconds,
                        noise_types=tuple(cfg.noise_types))
    dirs = corpus_parts(corpus, cfg.min_seconds, data_dir)
    spec = MaskSpec(cfg.n_fft, cfg.hop, cfg.target, cfg.level_norm, cfg.remix, cfg.remix_gain_db,
                    cfg.remix_babble == "fresh", derive(cfg.corpus_seed, "remix"))
    train, train_refs = load_mask_frames(dirs, "train", spec, keep_audio=False)
    val, val_refs = load_mask_frames(dirs, "test", MaskSpec(cfg.n_fft, cfg.hop, cfg.target, cfg.level_norm),
                                     keep_audio=True)
    return train, train_refs, val, val_refs


def sequence_spec(cfg: Config) -> SequenceSpec:
    """The batching budget; a chunk's context comes after it only if the LSTM looks backwards."""
    return SequenceSpec(cfg.epochs, cfg.batch_frames, cfg.chunk, cfg.context, cfg.context if cfg.bidirectional else 0,
                        cfg.tbptt_group, cfg.grad_clip)


def build(cfg: Config, bins: int) -> LSTMDenoiser:
    return LSTMDenoiser(bins, cfg.hidden, cfg.layers, cfg.bidirectional, cfg.dropout, cfg.log_input)


def train_one(name: str, cfg: Config, seed: int, train: Frames, val: Frames, run: Run) -> tuple[LSTMDenoiser, History, Any]:
    """Train one strategy with one seed; per epoch: validation loss."""
    seed_everything(seed)
    model = build(cfg, train.noisy.shape[1]).to(run.device)
    model.norm.fit(train.noisy)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    spec, loss = sequence_spec(cfg), weighted_mask_loss(cfg.loss, cfg.loss_weight)
    strategy = make_strategy(name, train, spec, loss, seed, optimizer)
    # the scheduler steps once per fit batch (for tbptt: once per group of streams)
    scheduler = one_cycle(optimizer, cfg.lr, cfg.epochs * strategy.batches_per_epoch) if cfg.one_cycle else None

    def evaluate(m: nn.Module) -> dict[str, float]:
        t0 = time.perf_counter()
        logits = infer(m, name, val, cfg.chunk, (spec.before, spec.after))
        return {"val_loss": float(loss(logits, val.target, None, val.noisy)), "eval_s": time.perf_counter() - t0}

    history = fit_sequences(model, strategy, optimizer, spec, seed=seed, scheduler=scheduler, evaluate=evaluate,
                            run=run, name=f"{name}-seed{seed}")
    return model, history, strategy


def run(cfg: Config, run: Run) -> dict[str, Any]:
    check(cfg)
    train, train_refs, val, refs = load_data(cfg, run.data_dir)
    train, val = train.to(run.device), val.to(run.device)
    run.info(f"corpus: {len(train.lengths)} training / {len(val.lengths)} validation utterances, "
             f"{len(train.noisy)} / {len(val.noisy)} frames of {train.noisy.shape[1]} bins")
    order = spread_by_length(refs.seconds, cfg.stoi_utterances)

    def score(masks: list[torch.Tensor]) -> dict[str, Any]:
        estimates = refs.waveforms(masks, cfg.n_fft, cfg.hop)
        return metrics.speech_scores([refs.clean[i] for i in order], [estimates[i] for i in order], refs.sample_rate,
                                     slow=("stoi",), slow_n=cfg.stoi_utterances or None)

    references = run.cached("references", lambda: {
        "noisy": score([torch.ones_like(m) for m in refs.oracle["ibm"]]),  # a mask of ones: X itself
        **{f"{k}_oracle": score(refs.oracle[k]) for k in ("ibm", "irm", "psm")}})
    seeds = [cfg.seed + k for k in range(cfg.n_seeds)]  # replicate seeds, as `--seed` numbers them
    results: dict[str, list[dict[str, Any]]] = {}
    histories: dict[str, History] = {}
    examples: dict[str, list[torch.Tensor]] = {}
    sides = (sequence_spec(cfg).before, sequence_spec(cfg).after)
    for name in cfg.strategies:
        trained = [(seed, *train_one(name, cfg, seed, train, val, run)) for seed in seeds]
        logits = [infer(model, name, val, cfg.chunk, sides) for _, model, _, _ in trained]
        labels = [f"seed{seed}" for seed in seeds]
        if cfg.ensemble:  # one estimate from all the seeds' models: their mean logit; costs are the first model's
            logits, labels, trained = [torch.stack(logits).mean(0)], [f"ensemble{len(seeds)}"], trained[:1]
        for (seed, _, history, strategy), member_logits, label in zip(trained, logits, labels, strict=True):
            masks = [m.T.cpu() for m in torch.sigmoid(member_logits).split(val.lengths.tolist())]  # (bins, frames) each
            scores = run.cached(f"scores-{name}-{label}", lambda masks=masks: score(masks))
            results.setdefault(name, []).append(scores | {
                "epoch_s": float(np.mean([e["epoch_s"] - e["eval_s"] for e in history.epochs])),
                "padded_frac": strategy.padded_frac, "tensor_padded_frac": strategy.tensor_padded_frac,
                "updates_per_epoch": strategy.updates_per_epoch, "final_val_loss": history.last["val_loss"]})
            if seed == seeds[0]:
                histories[name], examples[name] = history, masks
    return report(cfg, run, refs, train, train_refs, references, results, histories, examples)


# --- the report ---------------------------------------------------------------------------------

SCORES = ("snr_db", "si_sdr_db", "stoi")
COSTS = ("padded_frac", "tensor_padded_frac", "updates_per_epoch", "epoch_s")


def summarise(results: dict[str, list[dict[str, Any]]], references: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy: the mean over seeds (and the sample std of the scores where there are several)."""
    noisy, ibm = references["noisy"]["snr_db"], references["ibm_oracle"]["snr_db"]
    rows = []
    for name, runs in results.items():
        row: dict[str, Any] = {"strategy": name, "n": len(runs)}
        for key in COSTS + SCORES + ("final_val_loss",):
            row[key], std = mean_std(r[key] for r in runs)
            if len(runs) > 1 and key in SCORES:
                row[f"{key}_std"] = std
        row["snr_gain_db"] = row["snr_db"] - noisy
        row["gap_to_ibm_db"] = row["snr_db"] - ibm
        rows.append(row)
    return rows


def conclusions(rows: list[dict[str, Any]], references: dict[str, dict[str, Any]], target_gain: float) -> str:
    best = max(rows, key=lambda r: r["snr_db"])
    noisy, ibm = references["noisy"]["snr_db"], references["ibm_oracle"]["snr_db"]
    text = [f"Best strategy by validation SNR: {best['strategy']}, {noisy:.1f} dB -> {best['snr_db']:.1f} dB "
            f"(+{best['snr_gain_db']:.1f} dB; the goal of +{target_gain:.0f} dB is "
            f"{'met' if best['snr_gain_db'] >= target_gain else 'not met'}). The oracle ideal binary mask "
            f"reaches {ibm:.1f} dB, so the best strategy is {ibm - best['snr_db']:.1f} dB below the ceiling."]
    for r in sorted(rows, key=lambda r: -r["snr_db"]):
        text.append(f"{r['strategy']}: {r['snr_db']:.1f} dB SNR ({r['gap_to_ibm_db']:+.1f} dB from the IBM), "
                    f"SI-SDR {r['si_sdr_db']:.1f} dB, STOI {r['stoi']:.3f}; {100 * r['padded_frac']:.1f}% of the "
                    f"frames the LSTM steps over are padding; {r['epoch_s']:.2f} s per epoch.")
    by_name = {r["strategy"]: r for r in rows}
    if "pad" in by_name and "chunk" in by_name:
        pad, chunk = by_name["pad"], by_name["chunk"]
        text.append(f"10-frame chunks vs padding to the longest: {pad['epoch_s'] / chunk['epoch_s']:.1f}x the speed "
                    f"per epoch, padding {100 * chunk['padded_frac']:.1f}% vs {100 * pad['padded_frac']:.1f}%, "
                    f"and {chunk['snr_db'] - pad['snr_db']:+.1f} dB SNR.")
    fastest = min(rows, key=lambda r: r["epoch_s"])
    text.append(f"Fastest per epoch: {fastest['strategy']} ({fastest['epoch_s']:.2f} s).")
    return "\n\n".join(text)


def report(cfg: Config, run: Run, val: References, train: Frames, train_refs: References,
           references: dict[str, dict[str, Any]], results: dict[str, list[dict[str, Any]]],
           histories: dict[str, History], examples: dict[str, list[torch.Tensor]]) -> dict[str, Any]:
    rate = val.sample_rate
    rows = summarise(results, references)
    best = max(rows, key=lambda r: r["snr_db"])
    target_gain = 8.0
    seconds = torch.tensor(train_refs.seconds[:: 1 + cfg.remix] + val.seconds)  # remixed copies left out
    copies = f" (each with {cfg.remix} remixed copies)" if cfg.remix else ""
    run.add_text("Data", f"{len(train.lengths) // (1 + cfg.remix)} training{copies} and {len(val.specs)} "
                 "validation utterances of "
                 f"{float(seconds.min()):.1f} s to {float(seconds.max()):.1f} s (median "
                 f"{float(seconds.median()):.1f} s), {train.noisy.shape[1]} frequency bins, hop {cfg.hop} samples "
                 f"at {rate} Hz; noise at {cfg.snr_range_db[0]:g} to {cfg.snr_range_db[1]:g} dB SNR "
                 f"({', '.join(cfg.noise_types)}). STOI over {cfg.stoi_utterances or len(val.specs)} "
                 "validation utterances spread over all lengths; SNR and SI-SDR over all.")
    fastest = min(rows, key=lambda r: r["epoch_s"])
    run.answer(f"{best['strategy']} batching denoises best ({best['snr_gain_db']:+.1f} dB SNR over the noisy input, "
               f"{best['gap_to_ibm_db']:+.1f} dB from the oracle IBM) with {100 * best['padded_frac']:.0f}% padding; "
               f"{fastest['strategy']} trains fastest ({fastest['epoch_s']:.2f} s per epoch).")
    run.target("snr_gain_db", best["snr_gain_db"], at_least=target_gain, anchor="+8 dB (the study's goal, full preset)")
    run.test_data(*val.clean)
    run.add_text("Findings", conclusions(rows, references, target_gain))
    ensemble = (f"Each strategy's scores are those of one ensemble: the mean mask logit of its {cfg.n_seeds} "
                "models (one per seed); its costs are its first model's. ") if cfg.ensemble else ""
    run.add_table("Batching strategies", rows, caption=(
        f"Same data, {cfg.epochs} epochs and about {cfg.batch_frames} real frames per update for every strategy. "
        f"{ensemble}"
        "padded_frac: padding among the frames the LSTM steps over; tensor_padded_frac: among the frames "
        "of the batch tensors; epoch_s: training seconds per epoch (validation excluded); "
        "gap_to_ibm_db: SNR minus the oracle IBM's. n: seeds (or ensembles) per row; "
        f"*_std: {STD_NOTE}."))
    run.add_table("References", [{"signal": k} | {m: v[m] for m in SCORES} for k, v in references.items()],
                  caption=("The noisy input, and the oracle masks computed from the clean speech and the noise "
                           "(the phase-sensitive mask from the clean and noisy spectra)."))
    run.add_figure(line_plot({n: (list(range(1, len(h.epochs) + 1)), h.series("val_loss")) for n, h in histories.items()},
                             title=f"Validation loss ({cfg.loss.upper()} to the {cfg.target.upper()} target)", xlabel="epoch", ylabel="loss"),
                   "val_loss", title="Validation loss per epoch")
    run.add_figure(line_plot({n: (list(np.cumsum([e["epoch_s"] - e["eval_s"] for e in h.epochs])), h.series("val_loss"))
                              for n, h in histories.items()},
                             title="Validation loss against training time", xlabel="training seconds", ylabel="loss"),
                   "val_loss_time", title="Validation loss against training time")
    bars = {"noisy": references["noisy"]["snr_db"]} | {r["strategy"]: r["snr_db"] for r in rows} | {
        "IBM oracle": references["ibm_oracle"]["snr_db"]}
    run.add_figure(bar_chart(bars, title="Validation SNR", ylabel="dB",
                             errors={r["strategy"]: r.get("snr_db_std", 0.0) for r in rows}),
                   "snr", title="Validation SNR by strategy")
    run.add_figure(histogram(seconds.numpy(), title="Utterance lengths", xlabel="seconds", ylabel="utterances"),
                   "lengths", title="Utterance lengths (training and validation)")
    longest = max(range(len(val.seconds)), key=lambda i: val.seconds[i])
    panels = {"noisy |X| (dB)": 20 * torch.log10(val.specs[longest].abs() + 1e-5), "oracle IBM": val.oracle["ibm"][longest],
              f"{best['strategy']} mask": examples[best["strategy"]][longest]}
    run.add_figure(spectrograms({k: v.cpu().numpy() for k, v in panels.items()},
                                title=f"Longest validation utterance ({val.seconds[longest]:.1f} s)"),
                   "masks", title="Noisy spectrogram, oracle mask and estimated mask")
    for i in spread_by_length(val.seconds, cfg.audio_examples)[: cfg.audio_examples]:
        tag = f"{val.seconds[i]:.1f} s"
        run.add_audio(val.clean[i], rate, f"audio/{i:03d}-clean", title=f"clean ({tag})")
        signals = {"noisy": torch.ones_like(val.oracle["ibm"][i]), "ibm-oracle": val.oracle["ibm"][i]} | {
            n: m[i] for n, m in examples.items()}
        for name, mask in signals.items():
            wave = masked_waveform(mask, val.specs[i], n_fft=cfg.n_fft, hop=cfg.hop, length=len(val.clean[i]))
            run.add_audio(wave, rate, f"audio/{i:03d}-{name}", title=f"{name} ({tag})",
                          caption=f"SNR {metrics.snr_db(val.clean[i], wave):.1f} dB")
    headline: dict[str, Any] = {
        "snr_db": {k: references[k]["snr_db"] for k in ("noisy", "ibm_oracle", "psm_oracle")},
        "snr_gain_db": {"best": best["snr_gain_db"]}, "ibm_gap_db": {"best": best["gap_to_ibm_db"]}}
    for r in rows:
        for key in ("snr_db", "snr_gain_db", "si_sdr_db", "stoi", "padded_frac", "epoch_s"):
            headline.setdefault(key, {})[r["strategy"]] = r[key]
    return {"headline": headline, "best_strategy": best["strategy"], "strategies": rows,
            "references": {k: {m: v[m] for m in SCORES} for k, v in references.items()},
            "history": {n: h.epochs for n, h in histories.items()}}
