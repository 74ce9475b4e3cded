"""Utterances of a speech corpus as frames and mask targets, for models that estimate masks.

`load_mask_frames` reads a split of one or more corpus folders into a `Frames` store (noisy
|X| in, the chosen mask as target), optionally with remixed copies of every utterance, and
keeps what scoring needs (`References`: noisy spectra, clean waves, oracle masks).
`corpus_parts` builds a corpus in parts of rising minimum length, so lengths spread from
short to long.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dlslab.audio.corpus import CorpusSpec, read_pairs, speech_corpus
from dlslab.audio.frames import Frames
from dlslab.audio.io import read_audio
from dlslab.audio.masks import ideal_binary_mask, ideal_ratio_mask, masked_waveform, phase_sensitive_mask
from dlslab.audio.remix import remix_noise
from dlslab.audio.stft import stft

MASKS = ("ibm", "irm", "psm")


@dataclass(frozen=True)
class MaskSpec:
    """What a mask estimator reads and learns."""

    n_fft: int = 1024  # STFT window length (bins = n_fft // 2 + 1)
    hop: int = 512  # STFT hop in samples
    target: str = "ibm"  # the mask learned: one of MASKS
    level_norm: bool = False  # divide each utterance's |X| by its RMS (the input ignores the recording level)
    remix: int = 0  # remixed copies of each utterance (`audio.remix`), each right after it
    remix_gain_db: float = 3.0  # remix: noise gain within ± this many dB
    fresh_babble: bool = False  # remix of a babble utterance: fresh babble of the other utterances' speech
    remix_seed: int = 0  # seed of the remix draws


@dataclass
class References:
    """Per utterance: its length, and (when kept) what scoring an estimate needs."""

    sample_rate: int
    seconds: list[float] = field(default_factory=list)  # every stored utterance, remixed copies too
    specs: list[torch.Tensor] = field(default_factory=list)  # (bins, frames) complex noisy X
    clean: list[np.ndarray] = field(default_factory=list)  # clean waveforms
    oracle: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # mask name -> (bins, frames) each

    def waveforms(self, masks: list[torch.Tensor], n_fft: int, hop: int) -> list[torch.Tensor]:
        """Each (bins, frames) mask applied to its noisy spectrum, with the noisy phase."""
        return [masked_waveform(m, s, n_fft=n_fft, hop=hop, length=len(c))
                for m, s, c in zip(masks, self.specs, self.clean, strict=True)]


def corpus_parts(spec: CorpusSpec, min_seconds: list[float], data_dir: str | Path | None = None) -> list[Path]:
    """One cached corpus per `min_seconds` value (part p: seed spec.seed + p, its share of
    the spec's utterances), so lengths spread from short to long."""
    parts = len(min_seconds)

    def share(total: int, p: int) -> int:
        return total // parts + (1 if p < total % parts else 0)

    return [speech_corpus(replace(spec, n_train=share(spec.n_train, p), n_test=share(spec.n_test, p),
                                  seed=spec.seed + p, min_seconds=low), data_dir)
            for p, low in enumerate(min_seconds)]


def target_masks(clean: np.ndarray, noise: np.ndarray, noisy: np.ndarray, n_fft: int,
                 hop: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The noisy spectrum X (bins, frames) and the masks of its speech, each (bins, frames):
    "ibm" and "irm" from |S| and |N|, "psm" from the complex S and X."""
    spec = stft(torch.from_numpy(noisy), n_fft, hop)
    s_spec = stft(torch.from_numpy(clean), n_fft, hop)
    s_mag, n_mag = s_spec.abs(), stft(torch.from_numpy(noise), n_fft, hop).abs()
    return spec, {"ibm": ideal_binary_mask(s_mag, n_mag), "irm": ideal_ratio_mask(s_mag, n_mag),
                  "psm": phase_sensitive_mask(s_spec, spec)}


def load_mask_frames(dirs: list[Path], split: str, spec: MaskSpec, keep_audio: bool) -> tuple[Frames, References]:
    """|X| frames and target masks of every utterance of `split` in the corpus folders, each
    followed by `spec.remix` remixed copies; with `keep_audio`, the references of the
    utterances themselves (not of their copies)."""
    rows = [r for d in dirs for r in read_pairs(d, split)]
    rng = np.random.default_rng(spec.remix_seed)
    # fresh babble draws on every utterance's speech, so all of it is read first (once)
    speech = [read_audio(r["clean"]) for r in rows] if spec.remix and spec.fresh_babble else []
    noisy, target = [], []
    refs = References(0, oracle={name: [] for name in MASKS} if keep_audio else {})
    for i, r in enumerate(rows):
        clean_wave, refs.sample_rate = speech[i] if speech else read_audio(r["clean"])
        noise_wave, _ = read_audio(r["noise"], expect_rate=refs.sample_rate)
        noisy_wave, _ = read_audio(r["noisy"], expect_rate=refs.sample_rate)
        # the speech fresh babble is made of, never the utterance's own
        pool = [wave for j, (wave, _) in enumerate(speech) if j != i] if r["noise_type"] == "babble" else []
        mixes = [(noise_wave, noisy_wave), *remix_noise(clean_wave, noise_wave, spec.remix, spec.remix_gain_db, rng, pool)]
        for k, (noise, mix) in enumerate(mixes):
            x, masks = target_masks(clean_wave, noise, mix, spec.n_fft, spec.hop)
            mag = x.abs().T  # (frames, bins)
            noisy.append(mag / mag.square().mean().sqrt().clamp_min(1e-8) if spec.level_norm else mag)
            target.append(masks[spec.target].T)
            refs.seconds.append(r["seconds"])
            if keep_audio and k == 0:
                refs.specs.append(x)
                refs.clean.append(clean_wave)
                for name, m in masks.items():
                    refs.oracle[name].append(m)
    return Frames.stack(noisy, target), refs


def spread_by_length(seconds: list[float], n: int) -> list[int]:
    """Indices of n utterances spread evenly from the shortest to the longest (n=1: the
    longest), then the rest, shortest first."""
    order = sorted(range(len(seconds)), key=lambda i: seconds[i])
    if not n or n >= len(order):
        return order
    picked = [order[-1]] if n == 1 else [order[round(k * (len(order) - 1) / (n - 1))] for k in range(n)]
    return list(dict.fromkeys(picked + order))
