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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import mean, pstdev
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlslab.audio import metrics
from dlslab.audio.batching import (
    chunk_streams,
    chunk_table,
    gather_chunks,
    length_buckets,
    pad_to_longest,
    stack_sequences,
    unchunk,
)
from dlslab.audio.corpus import CorpusSpec, read_pairs, speech_corpus
from dlslab.audio.io import read_audio
from dlslab.audio.masks import (
    ideal_binary_mask,
    ideal_ratio_mask,
    mask_loss,
    mask_mse_loss,
    masked_waveform,
    phase_sensitive_mask,
)
from dlslab.audio.noise import babble
from dlslab.audio.stft import stft
from dlslab.config import StudyConfig
from dlslab.errors import ConfigError
from dlslab.models.lstm_denoiser import LSTMDenoiser
from dlslab.report.plots import bar_chart, line_plot, pyplot
from dlslab.runs import Run
from dlslab.train.engine import History, batch_indices, fit, seed_everything
from dlslab.train.optim import one_cycle

STRATEGIES = ("pad", "chunk", "tbptt", "packed")


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
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))  # batching strategies compared: pad, chunk, tbptt, packed
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


# --- data ----------------------------------------------------------------------------------


@dataclass
class Frames:
    """One split's utterances as frames stored end to end (see dlslab.audio.batching)."""

    noisy: torch.Tensor  # (total, bins) |X|
    target: torch.Tensor  # (total, bins) the mask to learn
    offsets: torch.Tensor  # (N,) first frame of each utterance
    lengths: torch.Tensor  # (N,) frames of each utterance
    sample_rate: int  # Hz of the waveforms
    specs: list[torch.Tensor] = field(default_factory=list)  # (bins, frames) complex X, kept for validation
    clean: list[np.ndarray] = field(default_factory=list)  # clean waveforms, kept for validation
    oracle: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # "ibm"/"irm" -> (bins, frames) each
    seconds: list[float] = field(default_factory=list)  # duration of each utterance

    def to(self, device: torch.device) -> Frames:
        self.noisy, self.target = self.noisy.to(device), self.target.to(device)
        self.offsets, self.lengths = self.offsets.to(device), self.lengths.to(device)
        return self


def corpus_dirs(cfg: Config, data_dir: Any = None) -> list[Any]:
    """One cached corpus per `min_seconds` value, so lengths spread from short to long."""
    parts = len(cfg.min_seconds)
    dirs = []
    for p, low in enumerate(cfg.min_seconds):
        spec = CorpusSpec(n_train=_share(cfg.n_train, parts, p), n_test=_share(cfg.n_test, parts, p),
                          seed=cfg.corpus_seed + p, snr_range_db=tuple(cfg.snr_range_db),
                          min_seconds=low, max_seconds=cfg.max_seconds, noise_types=tuple(cfg.noise_types))
        dirs.append(speech_corpus(spec, data_dir))
    return dirs


def _share(total: int, parts: int, p: int) -> int:
    return total // parts + (1 if p < total % parts else 0)


def target_masks(clean_wave: np.ndarray, noise_wave: np.ndarray, noisy_wave: np.ndarray,
                 cfg: Config) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The noisy spectrum X (bins, frames) and the masks of its speech, each (bins, frames):
    "ibm" and "irm" from |S| and |N|, "psm" from the complex S and X."""
    spec = stft(torch.from_numpy(noisy_wave), cfg.n_fft, cfg.hop)
    s_spec = stft(torch.from_numpy(clean_wave), cfg.n_fft, cfg.hop)
    s_mag, n_mag = s_spec.abs(), stft(torch.from_numpy(noise_wave), cfg.n_fft, cfg.hop).abs()
    return spec, {"ibm": ideal_binary_mask(s_mag, n_mag), "irm": ideal_ratio_mask(s_mag, n_mag),
                  "psm": phase_sensitive_mask(s_spec, spec)}


def remixed(clean_wave: np.ndarray, noise_wave: np.ndarray, copies: int, gain_db: float,
            rng: np.random.Generator, babble_pool: Sequence[np.ndarray] = ()) -> list[tuple[np.ndarray, np.ndarray]]:
    """`copies` new (noise, noisy) waves of the same speech, each noise rescaled by a gain drawn
    within ± gain_db: its own noise circularly shifted by 10-90 % of its length or, given a
    `babble_pool` of other utterances' speech, fresh babble of that speech at its noise's level."""
    level = float(np.sqrt(np.mean(noise_wave.astype(np.float64) ** 2)))
    out = []
    for _ in range(copies):
        if babble_pool:
            fresh = level * babble(len(noise_wave), rng, babble_pool)
        else:
            fresh = np.roll(noise_wave, int(rng.uniform(0.1, 0.9) * len(noise_wave)))
        gain = 10 ** (rng.uniform(-gain_db, gain_db) / 20)
        noise = (gain * fresh).astype(noise_wave.dtype)
        out.append((noise, clean_wave + noise))
    return out


def load_frames(dirs: list[Any], split: str, cfg: Config, keep_audio: bool, remix: int = 0) -> Frames:
    """|X| frames and target masks of every utterance of `split` in the corpus parts, each
    followed by `remix` remixed copies; with `keep_audio`, also what validation needs (noisy
    spectra, clean waves, oracle masks)."""
    rows = [r for d in dirs for r in read_pairs(d, split)]
    rng = np.random.default_rng(cfg.corpus_seed)
    # fresh babble draws on every utterance's speech, so all of it is read first (once)
    speech = [read_audio(r["clean"]) for r in rows] if remix and cfg.remix_babble == "fresh" else []
    noisy, target, seconds = [], [], []
    specs, clean, oracle, rate = [], [], {"ibm": [], "irm": [], "psm": []}, 0
    for i, r in enumerate(rows):
        clean_wave, rate = speech[i] if speech else read_audio(r["clean"])
        noise_wave, _ = read_audio(r["noise"], expect_rate=rate)
        noisy_wave, _ = read_audio(r["noisy"], expect_rate=rate)
        # the speech fresh babble is made of (none unless remix_babble=fresh), never the utterance's own
        pool = [wave for j, (wave, _) in enumerate(speech) if j != i] if r["noise_type"] == "babble" else []
        mixes = [(noise_wave, noisy_wave), *remixed(clean_wave, noise_wave, remix, cfg.remix_gain_db, rng, pool)]
        for k, (noise, mix) in enumerate(mixes):
            spec, masks = target_masks(clean_wave, noise, mix, cfg)
            mag = spec.abs().T  # (frames, bins)
            noisy.append(mag / mag.square().mean().sqrt().clamp_min(1e-8) if cfg.level_norm else mag)
            target.append(masks[cfg.target].T)
            seconds.append(r["seconds"])
            if keep_audio and k == 0:
                specs.append(spec)
                clean.append(clean_wave)
                for name, m in masks.items():
                    oracle[name].append(m)
    frames, offsets, lengths = stack_sequences(noisy)
    return Frames(frames, torch.cat(target), offsets, lengths, rate, specs, clean,
                  oracle if keep_audio else {}, seconds)


# --- the four batching strategies ------------------------------------------------------------


@dataclass
class Strategy:
    """How one strategy feeds `fit`: its tensors, batch size and loss (or step), and the
    padding it costs, measured over the exact batches of every epoch."""

    tensors: tuple[torch.Tensor, ...]
    batch_size: int
    transform: Callable | None
    loss_fn: Callable | None
    step: Callable | None
    padded_frac: float  # padding among the frames the LSTM steps over
    tensor_padded_frac: float  # padding among the frames in the batch tensors
    updates_per_epoch: float


def _weight(mag: torch.Tensor, cfg: Config) -> torch.Tensor | None:
    """Per-cell loss weights |X| ** loss_weight, or None for a plain mean."""
    return mag.pow(cfg.loss_weight) if cfg.loss_weight else None


def _loss(cfg: Config) -> Callable[..., torch.Tensor]:
    """mask_loss (BCE) or mask_mse_loss, as `cfg.loss` says: (logits, target, frame_mask, weight)."""
    return mask_mse_loss if cfg.loss == "mse" else mask_loss


def _utterances_per_batch(cfg: Config, train: Frames) -> int:
    return max(1, round(cfg.batch_frames / float(train.lengths.float().mean())))


def pad_strategy(cfg: Config, train: Frames, seed: int) -> Strategy:
    bs = _utterances_per_batch(cfg, train)

    def transform(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        offsets, lengths = batch
        x, mask = pad_to_longest(train.noisy, offsets, lengths)  # (B, T, bins), (B, T)
        y, _ = pad_to_longest(train.target, offsets, lengths)
        return [x, y, mask]

    real = total = 0
    for epoch in range(cfg.epochs):
        for idx in batch_indices(len(train.lengths), bs, seed=seed, epoch=epoch, device=train.lengths.device):
            lengths = train.lengths[idx]
            real += int(lengths.sum())
            total += len(idx) * int(lengths.max())
    frac = 1 - real / total
    return Strategy((train.offsets, train.lengths), bs, transform,
                    lambda model, x, y, mask: _loss(cfg)(model(x), y, mask, _weight(x, cfg)), None, frac, frac,
                    -(-len(train.lengths) // bs))


def chunk_windows(offsets: torch.Tensor, lengths: torch.Tensor, chunk: int, before: int = 0,
                  after: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every utterance cut into chunks of `chunk` frames (`chunk_table`), each widened by up to
    `before` and `after` frames of the same utterance on either side. Returns the frame index
    of every window position (C, W), where it holds a frame of the utterance (C, W), and where
    it is scored (C, W): the chunk's own real frames, which, taken row by row, are every frame
    once in store order. With before = after = 0 the windows are the chunks of `gather_chunks`."""
    table = chunk_table(offsets, lengths, chunk)
    steps = torch.arange(-before, chunk + after, device=offsets.device)  # (W,)
    index = table.starts[:, None] + steps  # (C, W)
    first = offsets[table.utterance][:, None]  # (C, 1)
    inside = (index >= first) & (index < first + lengths[table.utterance][:, None])
    scored = inside & (steps >= 0) & (steps < chunk)
    return index, inside, scored


def _chunk_sides(cfg: Config) -> tuple[int, int]:
    """Context frames before and after each chunk: after only if the LSTM looks backwards."""
    return cfg.context, cfg.context if cfg.bidirectional else 0


def chunk_strategy(cfg: Config, train: Frames, seed: int) -> Strategy:
    index, inside, scored = chunk_windows(train.offsets, train.lengths, cfg.chunk, *_chunk_sides(cfg))
    bs = max(1, cfg.batch_frames // cfg.chunk)

    def transform(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        rows = batch[0]
        idx, keep = index[rows].clamp(0, len(train.noisy) - 1), inside[rows, :, None]  # (B, W), (B, W, 1)
        x = train.noisy[idx] * keep  # (B, W, bins); outside the utterance: zeros, like padding
        return [x, train.target[idx] * keep, scored[rows]]

    frac = 1 - float(inside.sum()) / inside.numel()
    return Strategy((torch.arange(len(index), device=index.device),), bs, transform,
                    lambda model, x, y, mask: _loss(cfg)(model(x), y, mask, _weight(x, cfg)), None, frac, frac,
                    -(-len(index) // bs))


def tbptt_strategy(cfg: Config, train: Frames, seed: int, optimizer: torch.optim.Optimizer) -> Strategy:
    lanes = max(1, cfg.batch_frames // cfg.chunk)
    group = lanes * cfg.tbptt_group

    def step(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, Any]:
        plan = chunk_streams(*batch, lanes=lanes, chunk=cfg.chunk)
        state, losses = None, []
        for k in range(len(plan.starts)):
            x, mask = gather_chunks(train.noisy, plan.starts[k], plan.valid[k], cfg.chunk)  # (lanes, chunk, bins)
            y, _ = gather_chunks(train.target, plan.starts[k], plan.valid[k], cfg.chunk)
            if state is not None:  # carry the state, cut the graph, restart where an utterance starts
                keep = (~plan.reset[k]).to(x.dtype)[None, :, None]  # (1, lanes, 1)
                state = (state[0].detach() * keep, state[1].detach() * keep)
            logits, state = model.forward_state(x, state)
            loss = _loss(cfg)(logits, y, mask, _weight(x, cfg))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            losses.append(loss.detach())
        return {"loss": torch.stack(losses).mean()}

    real = total = updates = 0
    for epoch in range(cfg.epochs):
        for idx in batch_indices(len(train.lengths), group, seed=seed, epoch=epoch, device=train.lengths.device):
            plan = chunk_streams(train.offsets[idx], train.lengths[idx], lanes=lanes, chunk=cfg.chunk)
            real += int(plan.valid.sum())
            total += plan.valid.numel() * cfg.chunk
            updates += len(plan.starts)
    frac = 1 - real / total
    return Strategy((train.offsets, train.lengths), group, None, None, step, frac, frac, updates / cfg.epochs)


def packed_strategy(cfg: Config, train: Frames, seed: int) -> Strategy:
    buckets = length_buckets(train.lengths, _utterances_per_batch(cfg, train))  # (n_buckets, B)

    def transform(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        idx = batch[0][0]
        idx = idx[idx >= 0]
        x, _ = pad_to_longest(train.noisy, train.offsets[idx], train.lengths[idx])  # (B, T, bins)
        y, _ = pad_to_longest(train.target, train.offsets[idx], train.lengths[idx])
        return [x, y, train.lengths[idx]]

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.cpu()
        packed_x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out = model(packed_x)
        target = pack_padded_sequence(y, lengths, batch_first=True, enforce_sorted=False)
        return _loss(cfg)(out.data, target.data, weight=_weight(packed_x.data, cfg))  # packed frames only: no padding

    sizes = train.lengths[buckets.clamp_min(0)] * (buckets >= 0)  # (n_buckets, B) real frames
    tensor_frac = 1 - float(sizes.sum()) / float((sizes.max(1).values * (buckets >= 0).sum(1)).sum())
    return Strategy((buckets,), 1, transform, loss_fn, None, 0.0, tensor_frac, len(buckets))


def make_strategy(name: str, cfg: Config, train: Frames, seed: int, optimizer: torch.optim.Optimizer) -> Strategy:
    if name == "tbptt":
        return tbptt_strategy(cfg, train, seed, optimizer)
    return {"pad": pad_strategy, "chunk": chunk_strategy, "packed": packed_strategy}[name](cfg, train, seed)


# --- inference and scoring -------------------------------------------------------------------


@torch.no_grad()
def infer_logits(model: LSTMDenoiser, strategy: str, data: Frames, chunk: int,
                 sides: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Mask logits (total, bins) for every frame of `data`, utterances whole and of any
    length: the chunk model as it was trained (chunks with `sides` = (before, after) context
    frames, run, the chunks' own frames stitched back exactly), the others over each whole
    utterance (packed, so no utterance ever sees another's padding)."""
    was_training = model.training
    model.eval()
    if strategy == "chunk":
        index, inside, scored = chunk_windows(data.offsets, data.lengths, chunk, *sides)
        x = data.noisy[index.clamp(0, len(data.noisy) - 1)] * inside[..., None]  # (C, W, bins)
        logits = unchunk(model(x), scored)
    else:
        x, mask = pad_to_longest(data.noisy, data.offsets, data.lengths)  # (N, T, bins)
        packed = pack_padded_sequence(x, data.lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(model(packed), batch_first=True, total_length=x.shape[1])
        logits = out[mask]
    model.train(was_training)
    return logits  # (total, bins)


def speech_scores(clean: list[np.ndarray], estimates: list[torch.Tensor], rate: int,
                  stoi_n: int) -> dict[str, float]:
    """Mean SNR and SI-SDR over every utterance, STOI over the first `stoi_n` (0: all)."""
    snr = [metrics.snr_db(c, e) for c, e in zip(clean, estimates, strict=True)]
    sdr = [metrics.si_sdr(c, e) for c, e in zip(clean, estimates, strict=True)]
    n = stoi_n or len(clean)
    stoi = [metrics.stoi(c, e, rate) for c, e in zip(clean[:n], estimates[:n], strict=True)]
    return {"snr_db": mean(snr), "si_sdr_db": mean(sdr), "stoi": mean(stoi)}


def waveforms(masks: list[torch.Tensor], val: Frames, cfg: Config) -> list[torch.Tensor]:
    """Each (bins, frames) mask applied to its noisy spectrum, with the noisy phase."""
    return [masked_waveform(m, s, n_fft=cfg.n_fft, hop=cfg.hop, length=len(c))
            for m, s, c in zip(masks, val.specs, val.clean, strict=True)]


def spread_by_length(seconds: list[float], n: int) -> list[int]:
    """Indices of n utterances spread evenly from the shortest to the longest (n=1: the
    longest), then the rest, shortest first."""
    order = sorted(range(len(seconds)), key=lambda i: seconds[i])
    if not n or n >= len(order):
        return order
    picked = [order[-1]] if n == 1 else [order[round(k * (len(order) - 1) / (n - 1))] for k in range(n)]
    return list(dict.fromkeys(picked + order))


# --- the study ---------------------------------------------------------------------------------


def _check(cfg: Config) -> None:
    unknown = [s for s in cfg.strategies if s not in STRATEGIES]
    if unknown or not cfg.strategies:
        raise ConfigError(f"strategies={cfg.strategies}: give one or more of {', '.join(STRATEGIES)}")
    if cfg.bidirectional and "tbptt" in cfg.strategies:
        raise ConfigError("strategy 'tbptt' carries the LSTM state forward from chunk to chunk, which a "
                          "bidirectional LSTM cannot do; set bidirectional=false or drop tbptt from strategies")
    if not cfg.min_seconds:
        raise ConfigError("min_seconds: give at least one value (one corpus part each)")
    if cfg.chunk < 1 or cfg.batch_frames < cfg.chunk:
        raise ConfigError(f"need 1 <= chunk <= batch_frames, got chunk={cfg.chunk}, batch_frames={cfg.batch_frames}")


def train_one(name: str, cfg: Config, seed: int, train: Frames, val: Frames,
              run: Run) -> tuple[LSTMDenoiser, History, Strategy]:
    """Train one strategy with one seed through the engine; per epoch: validation loss."""
    seed_everything(seed)
    model = LSTMDenoiser(train.noisy.shape[1], cfg.hidden, cfg.layers, cfg.bidirectional, cfg.dropout,
                         cfg.log_input).to(run.device)
    model.norm.fit(train.noisy)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    strategy = make_strategy(name, cfg, train, seed, optimizer)

    # The scheduler steps once per fit batch (for tbptt: once per group of streams).
    fit_batches = -(-len(strategy.tensors[0]) // strategy.batch_size)
    scheduler = one_cycle(optimizer, cfg.lr, cfg.epochs * fit_batches) if cfg.one_cycle else None

    def evaluate(m: nn.Module) -> dict[str, float]:
        t0 = time.perf_counter()
        logits = infer_logits(m, name, val, cfg.chunk, _chunk_sides(cfg))
        loss = float(_loss(cfg)(logits, val.target, None, _weight(val.noisy, cfg)))
        return {"val_loss": loss, "eval_s": time.perf_counter() - t0}

    history = fit(model, strategy.tensors, strategy.loss_fn, step=strategy.step, optimizer=optimizer,
                  epochs=cfg.epochs, batch_size=strategy.batch_size, transform=strategy.transform,
                  evaluate=evaluate, scheduler=scheduler, grad_clip=cfg.grad_clip if strategy.step is None else None,
                  seed=seed, run=run, name=f"{name}-seed{seed}")
    return model, history, strategy


def run(cfg: Config, run: Run) -> dict[str, Any]:
    _check(cfg)
    dirs = corpus_dirs(cfg, run.data_dir)
    train = load_frames(dirs, "train", cfg, keep_audio=False, remix=cfg.remix).to(run.device)
    val = load_frames(dirs, "test", cfg, keep_audio=True).to(run.device)
    rate = val.sample_rate
    run.info(f"corpus: {len(train.lengths)} training / {len(val.lengths)} validation utterances, "
             f"{len(train.noisy)} / {len(val.noisy)} frames of {train.noisy.shape[1]} bins")
    order = spread_by_length(val.seconds, cfg.stoi_utterances)
    clean = [val.clean[i] for i in order]

    def score(masks: list[torch.Tensor]) -> dict[str, Any]:
        estimates = waveforms(masks, val, cfg)
        return speech_scores(clean, [estimates[i] for i in order], rate, cfg.stoi_utterances)

    references = run.cached("references", lambda: {
        "noisy": score([torch.ones_like(m) for m in val.oracle["ibm"]]),  # a mask of ones: X itself
        "ibm_oracle": score(val.oracle["ibm"]),
        "irm_oracle": score(val.oracle["irm"]),
        "psm_oracle": score(val.oracle["psm"]),
    })
    seeds = [cfg.seed + k for k in range(cfg.n_seeds)]
    results: dict[str, list[dict[str, Any]]] = {}
    histories: dict[str, History] = {}
    examples: dict[str, list[torch.Tensor]] = {}
    for name in cfg.strategies:
        trained = [(seed, *train_one(name, cfg, seed, train, val, run)) for seed in seeds]
        logits = [infer_logits(model, name, val, cfg.chunk, _chunk_sides(cfg)) for _, model, _, _ in trained]
        estimates = [f"seed{seed}" for seed in seeds]
        if cfg.ensemble:  # one estimate from all the seeds' models: their mean logit; costs are the first model's
            logits, estimates, trained = [torch.stack(logits).mean(0)], [f"ensemble{len(seeds)}"], trained[:1]
        for (seed, _, history, strategy), member_logits, label in zip(trained, logits, estimates, strict=True):
            masks = [m.T.cpu() for m in torch.sigmoid(member_logits).split(val.lengths.tolist())]  # (bins, frames) each
            scores = run.cached(f"scores-{name}-{label}", lambda masks=masks: score(masks))
            train_s = [e["epoch_s"] - e["eval_s"] for e in history.epochs]
            results.setdefault(name, []).append(scores | {
                "epoch_s": mean(train_s), "padded_frac": strategy.padded_frac,
                "tensor_padded_frac": strategy.tensor_padded_frac,
                "updates_per_epoch": strategy.updates_per_epoch,
                "final_val_loss": history.last["val_loss"]})
            if seed == seeds[0]:
                histories[name] = history
                examples[name] = masks
    return report(cfg, run, val, train, references, results, histories, examples)


# --- the report ---------------------------------------------------------------------------------

SCORES = ("snr_db", "si_sdr_db", "stoi")
COSTS = ("padded_frac", "tensor_padded_frac", "updates_per_epoch", "epoch_s")


def summarise(results: dict[str, list[dict[str, Any]]], references: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy: the mean over seeds (and the std where there are several)."""
    noisy, ibm = references["noisy"]["snr_db"], references["ibm_oracle"]["snr_db"]
    rows = []
    for name, runs in results.items():
        row: dict[str, Any] = {"strategy": name, "n": len(runs)}
        for key in COSTS + SCORES + ("final_val_loss",):
            values = [r[key] for r in runs]
            row[key] = mean(values)
            if len(runs) > 1 and key in SCORES:
                row[f"{key}_std"] = pstdev(values)
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


def _spectrogram_figure(val: Frames, index: int, masks: dict[str, torch.Tensor], title: str) -> Any:
    plt = pyplot()
    panels = {"noisy |X| (dB)": 20 * torch.log10(val.specs[index].abs() + 1e-5)} | masks
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), sharex=True)
    for ax, (name, image) in zip(axes, panels.items(), strict=True):
        ax.imshow(image.cpu().numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("bin")
    axes[-1].set_xlabel("frame")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def report(cfg: Config, run: Run, val: Frames, train: Frames, references: dict[str, dict[str, Any]],
           results: dict[str, list[dict[str, Any]]], histories: dict[str, History],
           examples: dict[str, list[torch.Tensor]]) -> dict[str, Any]:
    rate = val.sample_rate
    rows = summarise(results, references)
    best = max(rows, key=lambda r: r["snr_db"])
    target_gain = 8.0
    seconds = torch.tensor(train.seconds[:: 1 + cfg.remix] + val.seconds)  # remixed copies left out
    copies = f" (each with {cfg.remix} remixed copies)" if cfg.remix else ""
    run.add_text("Data", f"{len(train.lengths) // (1 + cfg.remix)} training{copies} and {len(val.lengths)} "
                 "validation utterances of "
                 f"{float(seconds.min()):.1f} s to {float(seconds.max()):.1f} s (median "
                 f"{float(seconds.median()):.1f} s), {train.noisy.shape[1]} frequency bins, hop {cfg.hop} samples "
                 f"at {rate} Hz; noise at {cfg.snr_range_db[0]:g} to {cfg.snr_range_db[1]:g} dB SNR "
                 f"({', '.join(cfg.noise_types)}). STOI over {cfg.stoi_utterances or len(val.lengths)} "
                 "validation utterances spread over all lengths; SNR and SI-SDR over all.")
    run.add_text("Findings", conclusions(rows, references, target_gain))
    ensemble = (f"Each strategy's scores are those of one ensemble: the mean mask logit of its {cfg.n_seeds} "
                "models (one per seed); its costs are its first model's. ") if cfg.ensemble else ""
    run.add_table("Batching strategies", rows, caption=(
        f"Same data, {cfg.epochs} epochs and about {cfg.batch_frames} real frames per update for every strategy. "
        f"{ensemble}"
        "padded_frac: padding among the frames the LSTM steps over; tensor_padded_frac: among the frames "
        "of the batch tensors; epoch_s: training seconds per epoch (validation excluded); "
        "gap_to_ibm_db: SNR minus the oracle IBM's."))
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(seconds.numpy(), bins=20)
    ax.set(title="Utterance lengths", xlabel="seconds", ylabel="utterances")
    run.add_figure(fig, "lengths", title="Utterance lengths (training and validation)")
    longest = max(range(len(val.seconds)), key=lambda i: val.seconds[i])
    run.add_figure(_spectrogram_figure(val, longest, {"oracle IBM": val.oracle["ibm"][longest],
                                                       f"{best['strategy']} mask": examples[best["strategy"]][longest]},
                                       f"Longest validation utterance ({val.seconds[longest]:.1f} s)"),
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
    headline: dict[str, Any] = {"snr_db.noisy": references["noisy"]["snr_db"],
                                "snr_db.ibm_oracle": references["ibm_oracle"]["snr_db"],
                                "snr_db.psm_oracle": references["psm_oracle"]["snr_db"],
                                "snr_gain_db.best": best["snr_gain_db"], "ibm_gap_db.best": best["gap_to_ibm_db"]}
    for r in rows:
        for key in ("snr_db", "snr_gain_db", "si_sdr_db", "stoi", "padded_frac", "epoch_s"):
            headline[f"{key}.{r['strategy']}"] = r[key]
    return {"headline": headline, "best_strategy": best["strategy"], "strategies": rows,
            "references": {k: {m: v[m] for m in SCORES} for k, v in references.items()},
            "history": {n: h.epochs for n, h in histories.items()}}
