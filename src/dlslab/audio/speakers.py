"""Speaker sets: folders of `SPEAKER/utterance.(wav|flac)` read into frame features.

Three sources, all in that one layout:

- a user's own folder;
- the real recordings of the `speakers` dataset (FSDD, spoken digits) and `speakers2`
  (Arabic Speech Commands speakers `arNN` and LibriSpeech speakers `lsNNNN`), each speaker
  labelled with its corpus so identification can also be measured within one corpus;
- synthetic speakers made with espeak-ng (an accent + voice variant, a pitch and a speed
  per speaker, reading sentences), built once per spec and cached under
  `cache_dir()/speakers/<hash>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlslab.audio.corpus import split_sentences, synth_utterance, voices
from dlslab.audio.features import FeatureKind, cepstrum, frame_features, log_mel
from dlslab.audio.io import read_audio, write_audio
from dlslab.data.locate import cache_dir, locate
from dlslab.errors import DataError
from dlslab.progress import track

AUDIO_SUFFIXES = (".wav", ".flac")
SYNTH_VERSION = 2  # bump when the same spec would synthesise different speakers
# corpus of a real speaker: by dataset, then by the prefix of the speaker's folder name
REAL_CORPORA = {"speakers": {"": "fsdd"}, "speakers2": {"ar": "arabic", "ls": "librispeech"}}


@dataclass
class Utterance:
    speaker: str  # unique speaker name ("corpus/folder")
    corpus: str  # which corpus the speaker comes from
    path: Path
    wave: np.ndarray  # float32 mono at the set's sample rate


def speaker_files(root: str | Path, *, max_per_speaker: int | None = None, seed: int = 0,
                  min_per_speaker: int = 2) -> dict[str, list[Path]]:
    """{speaker folder name: its audio files} of `root`/SPEAKER/*.wav|flac, sorted by name.

    With `max_per_speaker`, a seeded random subset of that many files per speaker. Speakers
    with fewer than `min_per_speaker` files are left out (one utterance can be neither
    enrolled and tested nor paired); no speaker left is a DataError."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"speaker folder {root} does not exist; give a folder holding one "
                        "sub-folder per speaker with .wav or .flac utterances in it")
    rng = np.random.default_rng(seed)
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES)
        if max_per_speaker is not None and len(files) > max_per_speaker:
            files = [files[i] for i in sorted(rng.choice(len(files), max_per_speaker, replace=False))]
        if len(files) >= min_per_speaker:
            found[folder.name] = files
    if not found:
        raise DataError(f"{root} holds no speaker folders with {min_per_speaker}+ utterances "
                        f"({', '.join(AUDIO_SUFFIXES)}); expected the layout SPEAKER/utterance.wav")
    return found


def read_speakers(root: str | Path, corpus: str | dict[str, str], *, sample_rate: int = 16000,
                  max_per_speaker: int | None = None, seed: int = 0) -> list[Utterance]:
    """Every utterance of a speaker folder, resampled to `sample_rate`. `corpus` is one label
    for all speakers, or {folder-name prefix: label} (the longest matching prefix wins)."""
    out = []
    for name, files in speaker_files(root, max_per_speaker=max_per_speaker, seed=seed).items():
        label = corpus if isinstance(corpus, str) else _corpus_of(name, corpus)
        out += [Utterance(f"{label}/{name}", label, f, read_audio(f, sample_rate=sample_rate)[0])
                for f in files]
    return out


def _corpus_of(name: str, prefixes: dict[str, str]) -> str:
    matches = [p for p in prefixes if name.startswith(p)]
    if not matches:
        raise DataError(f"speaker folder {name!r} matches no known corpus prefix ({', '.join(prefixes)})")
    return prefixes[max(matches, key=len)]


def real_speakers(data_dir: str | Path | None = None, *, sample_rate: int = 16000,
                  max_per_speaker: int | None = None, seed: int = 0) -> list[Utterance]:
    """The real recordings found (`speakers`, `speakers2`), labelled by corpus; [] if none."""
    out: list[Utterance] = []
    for dataset, prefixes in REAL_CORPORA.items():
        loc = locate(dataset, data_dir)
        if loc.status == "found":
            out += read_speakers(loc.path, prefixes, sample_rate=sample_rate,
                                 max_per_speaker=max_per_speaker, seed=seed)
    return out


# --- synthetic speakers -------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """A set of espeak-ng speakers: voices()[first : first + n_speakers], each with its own
    pitch and speed, reading `n_utterances` sentences of the `sentences` split."""

    n_speakers: int = 50  # how many speakers
    n_utterances: int = 10  # utterances per speaker
    first: int = 0  # index of the first voice in corpus.voices() (disjoint sets: disjoint ranges)
    sentences: str = "train"  # which sentence split they read (train | test)
    seed: int = 0  # seed of pitch, speed and sentence choices
    sample_rate: int = 16000  # Hz
    pitch_range: tuple[int, int] = (25, 75)  # espeak-ng pitch (0-99), one per speaker
    speed_range: tuple[int, int] = (130, 190)  # words per minute, one per speaker


def _synth_speaker(spec: SyntheticSpec, k: int, voice: str, texts: tuple[str, ...], out: Path) -> None:
    rng = np.random.default_rng([spec.seed, spec.first + k])
    pitch = int(rng.integers(spec.pitch_range[0], spec.pitch_range[1] + 1))
    speed = int(rng.integers(spec.speed_range[0], spec.speed_range[1] + 1))
    folder = out / f"syn{spec.first + k:03d}-{voice.replace('+', '-')}-p{pitch}-s{speed}"
    folder.mkdir()
    for u, t in enumerate(rng.choice(len(texts), spec.n_utterances, replace=False)):
        wave = synth_utterance(texts[t], voice=voice, pitch=pitch, speed=speed, sample_rate=spec.sample_rate)
        # espeak-ng reaches full scale at some pitches and speeds: leave 6 dB of headroom
        write_audio(folder / f"{u:02d}.wav", 0.5 * wave / max(float(np.abs(wave).max()), 1e-8), spec.sample_rate)


def synthetic_speakers(spec: SyntheticSpec) -> Path:
    """The folder of `spec`'s synthetic speakers (SPEAKER/NN.wav), built once and cached.
    The build goes into a temporary folder that is renamed into place when complete."""
    names = voices()
    if spec.first + spec.n_speakers > len(names):
        raise DataError(f"only {len(names)} espeak-ng voices are available; asked for voices "
                        f"{spec.first}..{spec.first + spec.n_speakers - 1}")
    texts = split_sentences(spec.sentences)
    if spec.n_utterances > len(texts):
        raise DataError(f"{spec.n_utterances} utterances per speaker, but the {spec.sentences!r} "
                        f"split has only {len(texts)} sentences")
    chosen = names[spec.first: spec.first + spec.n_speakers]
    key = json.dumps({"v": SYNTH_VERSION, "spec": spec.__dict__, "voices": chosen}, sort_keys=True)
    final = cache_dir() / "speakers" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
            list(track(pool.map(lambda kv: _synth_speaker(spec, kv[0], kv[1], texts, tmp), enumerate(chosen)),
                       f"espeak-ng voices {spec.first}-{spec.first + spec.n_speakers - 1}", len(chosen)))
        (tmp / "speakers.json").write_text(key)
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same build first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --- features -------------------------------------------------------------------------------------


@dataclass
class SpeakerSet:
    """Frame features of utterances, padded, with speaker and corpus labels."""

    frames: torch.Tensor  # (N, F, T) padded with zeros beyond each length
    lengths: torch.Tensor  # (N,) valid frames
    speaker: torch.Tensor  # (N,) index into `names`
    names: list[str]  # speaker names
    corpus: list[str]  # corpus of each speaker (aligned with names)
    mean_mfcc: torch.Tensor  # (N, n_mfcc) MFCCs averaged over each utterance, for the baseline
    paths: list[str]  # source file of each utterance

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def mask(self) -> torch.Tensor:
        return (torch.arange(self.frames.shape[-1])[None] < self.lengths[:, None]).float()  # (N, T)

    def corpus_of_utterance(self) -> np.ndarray:
        return np.asarray(self.corpus)[self.speaker.numpy()]

    def subset(self, speakers: list[str]) -> SpeakerSet:
        """The utterances of the named speakers (speaker indices renumbered 0..)."""
        keep_names = [n for n in self.names if n in set(speakers)]
        old = torch.tensor([self.names.index(n) for n in keep_names])
        remap = torch.full((len(self.names),), -1, dtype=torch.long)
        remap[old] = torch.arange(len(old))
        rows = torch.nonzero(remap[self.speaker] >= 0).squeeze(1)
        t = int(self.lengths[rows].max())
        return SpeakerSet(self.frames[rows, :, :t], self.lengths[rows], remap[self.speaker[rows]], keep_names,
                          [self.corpus[i] for i in old.tolist()], self.mean_mfcc[rows],
                          [self.paths[i] for i in rows.tolist()])


def normalise_level(wave: np.ndarray) -> torch.Tensor:
    """The waveform scaled to unit RMS: loudness says nothing about who speaks."""
    w = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    return w / w.square().mean().sqrt().clamp_min(1e-8)


def featurize(utterances: list[Utterance], sample_rate: int, *, kind: FeatureKind = "logmel",
              n_mels: int = 40, n_fft: int = 512, hop: int = 256, max_frames: int | None = None,
              n_mfcc: int = 20, batch: int = 64) -> SpeakerSet:
    """A SpeakerSet of `utterances` (all at `sample_rate`). Utterances are cut to
    `max_frames`, then transformed in batches of similar length (zero-padded waveforms; each
    utterance keeps only the frames of its own length)."""
    if not utterances:
        raise DataError("no utterances to read features from")
    max_samples = None if max_frames is None else (max_frames - 1) * hop + 1
    waves = [normalise_level(u.wave)[:max_samples] for u in utterances]
    lengths = torch.tensor([len(w) // hop + 1 for w in waves])  # frames of a centred STFT
    n_features = n_mels if kind == "logmel" else n_fft // 2 + 1
    frames = torch.zeros(len(waves), n_features, int(lengths.max()))
    mean_mfcc = torch.zeros(len(waves), n_mfcc - 1)
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        padded = torch.nn.utils.rnn.pad_sequence([waves[i] for i in rows], batch_first=True)  # (B, T)
        mel = log_mel(padded, sample_rate, n_mels=n_mels, n_fft=n_fft, hop=hop)  # (B, n_mels, frames)
        feats = mel if kind == "logmel" else frame_features(padded, sample_rate, kind, n_fft=n_fft, hop=hop)
        cep = cepstrum(mel, n_mfcc)[:, 1:]  # c0 (overall level) left out
        for k, i in enumerate(rows):
            n = int(lengths[i])
            frames[i, :, :n] = feats[k, :, :n]
            mean_mfcc[i] = cep[k, :, :n].mean(-1)
    names = list(dict.fromkeys(u.speaker for u in utterances))
    number = {n: k for k, n in enumerate(names)}
    corpus = {u.speaker: u.corpus for u in utterances}
    speaker = torch.tensor([number[u.speaker] for u in utterances])
    return SpeakerSet(frames, lengths, speaker, names, [corpus[n] for n in names], mean_mfcc,
                      [str(u.path) for u in utterances])


# --- roles: which speakers train, validate and test -------------------------------------------------


def split_speakers(utterances: list[Utterance], val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, str]:
    """{speaker: train | val | test}, drawn per corpus (seeded), every role non-empty in a
    corpus with 3+ speakers; no speaker is in two roles."""
    roles: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for corpus in sorted({u.corpus for u in utterances}):
        names = sorted({u.speaker for u in utterances if u.corpus == corpus})
        rng.shuffle(names)
        n = len(names)
        n_test = max(1, round(test_fraction * n)) if n >= 3 else 0
        n_val = max(1, round(val_fraction * n)) if n >= 3 else 0
        for i, name in enumerate(names):
            roles[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return roles


def validation_folds(roles: dict[str, str], n_folds: int = 4, seed: int = 123) -> list[list[str]]:
    """Folds of the real speakers that are never tested: fold 0 is the validation speakers;
    the training speakers are dealt, per corpus (seeded), into n_folds - 1 more. Synthetic
    speakers and speed-perturbed copies (`name@x<factor>`) are in no fold."""
    real = {n: r for n, r in roles.items() if "@" not in n and not n.startswith("synthetic/")}
    folds: list[list[str]] = [sorted(n for n, r in real.items() if r == "val")] + [[] for _ in range(n_folds - 1)]
    rng = np.random.default_rng(seed)
    for corpus in sorted({n.split("/", 1)[0] for n in real}):
        names = sorted(n for n, r in real.items() if r == "train" and n.startswith(corpus + "/"))
        rng.shuffle(names)
        for k, name in enumerate(names):
            folds[1 + k % (n_folds - 1)].append(name)
    return folds


def synthetic_sets(n_train: int, n_val: int, n_test: int, utterances: int, seed: int,
                   sample_rate: int = 16000) -> dict[str, list[Utterance]]:
    """Disjoint espeak-ng speaker sets for training, validation and testing (consecutive voice
    ranges); the validation and test voices read the test sentences."""
    sets = {"train": (n_train, 0, "train"), "val": (n_val, n_train, "test"), "test": (n_test, n_train + n_val, "test")}
    return {role: read_speakers(synthetic_speakers(SyntheticSpec(n, utterances, first, sentences, seed, sample_rate)),
                                "synthetic", sample_rate=sample_rate)
            for role, (n, first, sentences) in sets.items()}


def role_counts(data: SpeakerSet, roles: dict[str, str], hop: int, sample_rate: int) -> list[dict[str, Any]]:
    """Per corpus and role: speakers, utterances and their mean length in seconds."""
    rows = []
    corpus_of, spk = data.corpus_of_utterance(), data.speaker.numpy()
    for corpus in sorted(set(data.corpus)):
        for role in ("train", "val", "test"):
            names = [k for k, (n, c) in enumerate(zip(data.names, data.corpus)) if c == corpus and roles[n] == role]
            if names:
                rows_mask = np.isin(spk, names) & (corpus_of == corpus)
                rows.append({"corpus": corpus, "role": role, "speakers": len(names), "utterances": int(rows_mask.sum()),
                             "mean seconds": float(data.lengths.numpy()[rows_mask].mean()) * hop / sample_rate})
    return rows
