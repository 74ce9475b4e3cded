"""The synthetic speech corpus: espeak-ng utterances mixed with noise at chosen SNRs.

Utterances come from many synthetic speakers (an espeak-ng accent, a voice variant, a pitch
and a speed) reading sentences from the list shipped with the package; training and test
utterances read different sentences, and real noise recordings are split in time (see
`noise.py`). Each noisy file is clean + noise, with the noise scaled to an SNR drawn from a
range. Layout of a corpus folder:

    train|test/{clean,noise,noisy}/NNNN.wav, pairs.csv, corpus.json
    long/{clean,noise,noisy}/0000.wav  (optional: one long paired recording of one voice)

Everything is a pure function of the spec: utterance i of a split is made from its own
random generator seeded by (seed, split, i), so the corpus is the same for a seed whatever
the thread count. `speech_corpus` builds a spec's corpus once and caches it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dlslab import atomic
from dlslab.audio.io import read_audio, resample, write_audio
from dlslab.audio.noise import GENERATED, REAL, NoiseBank, find_recordings, mix_at_snr
from dlslab.errors import DataError, UsageError
from dlslab.progress import track

CORPUS_VERSION = 1  # bump when the same spec would build a different corpus
SPLITS = ("train", "test", "long")
PAIR_COLUMNS = ("split", "id", "clean", "noise", "noisy", "snr_db", "seconds", "voice", "noise_type",
                "pitch", "speed", "text")
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
# espeak-ng voice variants that sound like a person (robotic, whispered and effect variants left out)
HUMAN_VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7", "m8",
                  "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene",
                  "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen",
                  "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed",
                  "edward", "grandma", "grandpa", "gustave", "iven", "john", "linda", "max", "michel",
                  "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro",
                  "shelby", "steph", "travis", "victor", "zac")
MISSING_ESPEAK = ("the espeak-ng program is needed to synthesise speech but was not found; "
                  "install it (Debian/Ubuntu: `sudo apt-get install espeak-ng`)")
SILENCE_SECONDS = (0.15, 0.5)  # pause inserted between sentences of one utterance


@dataclass(frozen=True)
class CorpusSpec:
    """What corpus to build. Equal specs (and equal noise recordings) give equal corpora."""

    n_train: int = 200  # training utterances
    n_test: int = 40  # test utterances (their sentences are never read in training)
    seed: int = 0  # seed of every random choice
    sample_rate: int = 16000  # Hz of every file written
    snr_range_db: tuple[float, float] = (0.0, 10.0)  # SNR of each noisy file, drawn uniformly
    min_seconds: float = 1.5  # an utterance reads sentences until it is at least this long
    max_seconds: float = 4.0  # ... and is cut at this length
    noise_types: tuple[str, ...] = (REAL, "white", "pink", "brown", "babble")  # drawn uniformly
    noise_dir: str | None = None  # folder of real noise recordings (None: the 'noise' dataset)
    voices: tuple[str, ...] = ()  # speakers to draw from, e.g. 'en-us+m3' (empty: all of voices())
    pitch_range: tuple[int, int] = (30, 70)  # espeak-ng pitch (0-99), drawn per utterance
    speed_range: tuple[int, int] = (140, 190)  # espeak-ng words per minute, drawn per utterance
    long_seconds: float = 0.0  # > 0: also write one long paired recording of this length
    long_voice: str = "en-us+m3"  # the single (male) speaker of the long recording
    long_noise: str = "babble"  # its noise type (a generated type or a recording name)


# --- speech synthesis --------------------------------------------------------------------------


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError(MISSING_ESPEAK)
    return exe


@cache
def _variants() -> frozenset[str]:
    out = subprocess.run([_espeak(), "--voices=variant"], capture_output=True, text=True, check=True)
    return frozenset(line.split()[-1].split("/")[-1] for line in out.stdout.splitlines()[1:] if "!v/" in line)


def voices() -> list[str]:
    """Synthetic speakers 'accent+variant' that this espeak-ng installation has, ordered so
    that the first len(variants) all differ in variant (accents cycle), then the next round."""
    variants = [v for v in HUMAN_VARIANTS if v in _variants()]
    return [f"{ACCENTS[(i + r) % len(ACCENTS)]}+{v}" for r in range(len(ACCENTS)) for i, v in enumerate(variants)]


def synth_utterance(text: str, *, voice: str = "en", variant: str | None = None, pitch: int = 50,
                    speed: int = 160, sample_rate: int = 16000) -> np.ndarray:
    """float32 mono speech of `text` read by espeak-ng, at `sample_rate` Hz.

    `voice` is an espeak-ng voice ('en-us') or voice+variant ('en-us+f2'); `variant` adds one.
    """
    name = f"{voice}+{variant}" if variant else voice
    cmd = [_espeak(), "--stdout", "-v", name, "-p", str(int(pitch)), "-s", str(int(speed)), text]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or len(proc.stdout) < 100:
        raise DataError(f"espeak-ng could not speak with voice {name!r}: "
                        f"{proc.stderr.decode(errors='replace').strip() or 'no audio'}; "
                        "see `espeak-ng --voices` for valid voices")
    wave, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return resample(wave, rate, sample_rate)


@cache
def sentences() -> tuple[str, ...]:
    """The sentences shipped with the package."""
    text = resources.files("dlslab.audio").joinpath("sentences.txt").read_text(encoding="utf-8")
    return tuple(s.strip() for s in text.splitlines() if s.strip() and not s.startswith("#"))


def split_sentences(split: str) -> tuple[str, ...]:
    """Every fifth sentence is for testing; the rest for training (the long recording reads all)."""
    every = sentences()
    if split == "test":
        return every[4::5]
    if split == "train":
        return tuple(s for i, s in enumerate(every) if i % 5 != 4)
    return every


# --- building --------------------------------------------------------------------------------


@dataclass
class _Plan:
    """Resolved inputs of a build: the spec, its speakers and its noise recordings."""

    spec: CorpusSpec
    voices: list[str]
    noise_types: list[str]  # after resolving 'real' to what was found
    recordings: dict[str, Path] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        recs = {name: p.stat().st_size for name, p in self.recordings.items()}
        spec = asdict(self.spec) | {"noise_dir": None}
        return {"version": CORPUS_VERSION, "spec": spec, "noise_types": self.noise_types,
                "voices": self.voices, "recordings": recs}


def _plan(spec: CorpusSpec, noise_dir: str | Path | None) -> _Plan:
    if spec.n_train < 0 or spec.n_test < 0 or spec.n_train + spec.n_test + (spec.long_seconds > 0) == 0:
        raise UsageError("the corpus spec asks for no audio: give n_train/n_test > 0 or long_seconds > 0")
    if not 0 < spec.min_seconds <= spec.max_seconds:
        raise UsageError(f"need 0 < min_seconds <= max_seconds, got {spec.min_seconds}, {spec.max_seconds}")
    found = find_recordings(spec.noise_dir or noise_dir)
    types: list[str] = []
    for t in spec.noise_types:
        if t == REAL:
            types += [] if not found else [REAL]
        elif t in GENERATED or t in found:
            types.append(t)
        else:
            raise DataError(f"noise type {t!r} is neither generated ({', '.join(GENERATED)}) nor a "
                            f"recording in the noise folder ({', '.join(found) or 'none found'})")
    if (spec.n_train or spec.n_test) and not types:
        raise DataError("no noise to mix: only real recordings were asked for and none were found; "
                        "give a noise folder (--noise-dir, or the 'noise' dataset under DLSLAB_DATA)")
    if spec.long_seconds > 0 and spec.long_noise not in GENERATED and spec.long_noise not in found:
        raise DataError(f"long-recording noise {spec.long_noise!r} is not a generated type or a "
                        f"recording in the noise folder ({', '.join(found) or 'none found'})")
    all_voices = voices()
    chosen = list(spec.voices) or all_voices
    used = set(found) if REAL in types else {t for t in types if t in found}
    if spec.long_seconds > 0 and spec.long_noise in found:
        used.add(spec.long_noise)
    return _Plan(spec, chosen, types, {k: v for k, v in found.items() if k in used})


def _read_aloud(texts: list[str], voice: str, pitch: int, speed: int, rate: int,
                rng: np.random.Generator, min_samples: int) -> tuple[np.ndarray, list[str]]:
    """Sentences drawn from `texts` read one after another, with short pauses between
    them, until at least `min_samples` long; returns the wave and the sentences read."""
    parts: list[np.ndarray] = []
    read: list[str] = []
    total = 0
    while total < min_samples:
        if parts:
            parts.append(np.zeros(int(rng.uniform(*SILENCE_SECONDS) * rate), np.float32))
        read.append(texts[int(rng.integers(len(texts)))])
        parts.append(synth_utterance(read[-1], voice=voice, pitch=pitch, speed=speed, sample_rate=rate))
        total = sum(len(x) for x in parts)
    return np.concatenate(parts), read


def _utterance(plan: _Plan, bank: NoiseBank, split: str, index: int) -> dict[str, Any]:
    spec = plan.spec
    rng = np.random.default_rng([spec.seed, SPLITS.index(split), index])
    voice = plan.voices[int(rng.integers(len(plan.voices)))]
    pitch = int(rng.integers(spec.pitch_range[0], spec.pitch_range[1] + 1))
    speed = int(rng.integers(spec.speed_range[0], spec.speed_range[1] + 1))
    clean, texts = _read_aloud(split_sentences(split), voice, pitch, speed, spec.sample_rate, rng,
                               int(spec.min_seconds * spec.sample_rate))
    clean = clean[: int(spec.max_seconds * spec.sample_rate)]
    kind = plan.noise_types[int(rng.integers(len(plan.noise_types)))]
    if kind == REAL:
        kind = sorted(bank.recordings)[int(rng.integers(len(bank.recordings)))]
    snr = float(rng.uniform(*spec.snr_range_db))
    level_db = float(rng.uniform(-30, -20))  # RMS of the clean speech in dBFS
    return _mix(clean, kind, snr, level_db, bank, split, rng) | {
        "voice": voice, "pitch": pitch, "speed": speed, "text": " ".join(texts)}


def _long_recording(plan: _Plan, bank: NoiseBank) -> dict[str, Any]:
    """One voice at a fixed pitch and speed reading every sentence (in a seeded order)."""
    spec = plan.spec
    rng = np.random.default_rng([spec.seed, SPLITS.index("long")])
    n = int(spec.long_seconds * spec.sample_rate)
    parts: list[np.ndarray] = []
    texts: list[str] = []
    order = rng.permutation(len(sentences()))
    while sum(len(p) for p in parts) < n:
        texts.append(sentences()[order[len(texts) % len(order)]])
        parts += [synth_utterance(texts[-1], voice=spec.long_voice, sample_rate=spec.sample_rate),
                  np.zeros(int(rng.uniform(*SILENCE_SECONDS) * spec.sample_rate), np.float32)]
    clean = np.concatenate(parts)[:n]
    snr = float(np.mean(spec.snr_range_db))
    return _mix(clean, spec.long_noise, snr, -25.0, bank, "long", rng) | {
        "voice": spec.long_voice, "pitch": 50, "speed": 160, "text": " ".join(texts)}


def _mix(clean: np.ndarray, kind: str, snr: float, level_db: float, bank: NoiseBank, split: str,
         rng: np.random.Generator) -> dict[str, Any]:
    clean = clean * (10 ** (level_db / 20) / (np.sqrt(np.mean(clean.astype(np.float64) ** 2)) + 1e-12))
    noisy, noise = mix_at_snr(clean.astype(np.float32), bank.segment(kind, len(clean), rng, split), snr)
    peak = float(np.max(np.abs(noisy)))
    scale = 0.9 / peak if peak > 0.9 else 1.0  # keep the mixture off full scale: no clipping
    return {"clean": clean * scale, "noise": noise * scale, "noisy": noisy * scale, "noise_type": kind,
            "snr_db": snr, "seconds": len(clean) / bank.sample_rate}


def _babble_pool(plan: _Plan, split: str, size: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng([plan.spec.seed, SPLITS.index(split), 1_000_000])
    pool = split_sentences(split)
    return [synth_utterance(pool[int(rng.integers(len(pool)))], voice=plan.voices[int(rng.integers(len(plan.voices)))],
                            pitch=int(rng.integers(30, 71)), sample_rate=plan.spec.sample_rate)
            for _ in range(size)]


def _write_item(out_dir: Path, split: str, index: int, item: dict[str, Any], rate: int) -> dict[str, Any]:
    name = f"{index:04d}.wav"
    row = {"split": split, "id": f"{index:04d}"}
    for part in ("clean", "noise", "noisy"):
        rel = Path(split) / part / name
        write_audio(out_dir / rel, item[part], rate)
        row[part] = rel.as_posix()
    return row | {k: item[k] for k in PAIR_COLUMNS if k not in row}


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _build(out_dir: Path, plan: _Plan) -> Path:
    spec = plan.spec
    bank = NoiseBank.load(plan.recordings, spec.sample_rate)
    if "babble" in plan.noise_types or spec.long_noise == "babble":
        bank.babble_pools = {split: _babble_pool(plan, "test" if split == "test" else "train")
                             for split in SPLITS}

    def job(split: str, i: int) -> dict[str, Any]:
        return _write_item(out_dir, split, i, _utterance(plan, bank, split, i), spec.sample_rate)

    jobs = [("train", i) for i in range(spec.n_train)] + [("test", i) for i in range(spec.n_test)]
    with ThreadPoolExecutor(_workers()) as pool:  # espeak-ng runs as a subprocess: threads overlap
        rows = list(track(pool.map(lambda j: job(*j), jobs), "speech corpus: utterances", len(jobs)))
    if spec.long_seconds > 0:
        rows.append(_write_item(out_dir, "long", 0, _long_recording(plan, bank), spec.sample_rate))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PAIR_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic.write_json(out_dir / "corpus.json", plan.fingerprint())
    atomic.write_text(out_dir / "pairs.csv", buf.getvalue())  # written last: its presence means complete
    return out_dir


def build_corpus(out_dir: str | Path, spec: CorpusSpec, *, noise_dir: str | Path | None = None) -> Path:
    """Build the corpus of `spec` into `out_dir` (which must be empty or not exist).

    Real noise comes from `spec.noise_dir`, else `noise_dir`; with neither, only generated
    noise types are used (a spec asking only for real noise is then an error).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} is not empty; give a new folder for the corpus")
    return _build(out_dir, _plan(spec, noise_dir))


def speech_corpus(spec: CorpusSpec, data_dir: str | Path | None = None) -> Path:
    """The folder of `spec`'s corpus, built once under the user cache and reused after.

    Real noise recordings come from `spec.noise_dir`, else the 'noise' dataset (see
    `dlslab data status`). The build goes to a temporary folder renamed into place, so a
    killed build leaves nothing half-made, and concurrent builders agree on one copy.
    """
    from dlslab.data.locate import cache_dir, locate

    loc = locate("noise", data_dir)
    plan = _plan(spec, loc.path if loc.status == "found" else None)
    key = hashlib.sha256(json.dumps(plan.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
    final = cache_dir() / "speech" / key
    if (final / "pairs.csv").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        _build(tmp, plan)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "pairs.csv").is_file():  # not another builder's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_pairs(corpus_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The rows of pairs.csv for `split` ('train', 'test' or 'long'), with clean/noise/noisy
    as absolute paths and snr_db/seconds as floats."""
    corpus_dir = Path(corpus_dir)
    table = corpus_dir / "pairs.csv"
    if not table.is_file():
        raise DataError(f"{corpus_dir} is not a speech corpus (no pairs.csv); build one with "
                        "`dlslab data speech OUT_DIR`")
    with open(table, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    for r in rows:
        for part in ("clean", "noise", "noisy"):
            r[part] = corpus_dir / r[part]
        r["snr_db"], r["seconds"] = float(r["snr_db"]), float(r["seconds"])
    return rows


@dataclass
class Pair:
    """One noisy/clean waveform pair at one rate."""

    name: str
    noisy: np.ndarray
    clean: np.ndarray


def read_pair(noisy: str | Path, clean: str | Path, sample_rate: int, name: str) -> Pair:
    """A noisy file and its clean version, resampled to `sample_rate`; a few samples of
    length difference are cut, more is a DataError (a pair must be sample-aligned)."""
    x, _ = read_audio(noisy, sample_rate=sample_rate)
    s, _ = read_audio(clean, sample_rate=sample_rate)
    if abs(len(x) - len(s)) > sample_rate // 100:
        raise DataError(f"{noisy} and {clean} differ in length ({len(x)} vs {len(s)} samples at "
                        f"{sample_rate} Hz); a pair must be the same speech, sample-aligned")
    n = min(len(x), len(s))
    return Pair(name, x[:n], s[:n])
