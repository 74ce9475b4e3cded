"""The speaker encoder of a `siamese` run: building it, embedding utterances, loading a
finished run's encoder, and scoring embeddings of unseen speakers.

An encoder is the twin network of `dlslab.models.siamese` over frame features; `EncoderSpec`
holds everything needed to rebuild it and to compute its input from a waveform, so the run's
resolved config (`config.yaml`) is enough to load it back (`load_encoder`). The spec of
`EncoderSpec.pretrained` is the GE2E encoder pretrained on other data (`audio.pretrained`,
an optional extra), with its own front end; `build_encoder` starts it from those weights,
so it can be used frozen or fine-tuned like a fresh encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlslab import config
from dlslab.audio.augment import noise_features
from dlslab.audio.io import read_audio
from dlslab.audio.speakers import SpeakerSet, Utterance, featurize
from dlslab.data.locate import locate
from dlslab.errors import DataError, UsageError
from dlslab.metrics.verification import (CohortNorm, accuracy_at, best_threshold, equal_error_rate,
                                         one_shot_identification, pair_scores, roc_auc, verification_pairs)
from dlslab.models.siamese import EncoderEnsemble, GE2EEncoder, SiameseNet
from dlslab.runs import safe_torch_load

SAMPLE_RATE = 16000  # Hz every utterance is resampled to
N_WAYS = (5, 10, 20)  # one-shot identification among N speakers, plus all of them


@dataclass(frozen=True)
class EncoderSpec:
    """Features and architecture of a speaker encoder (field names as in the siamese Config)."""

    features: str = "logmel"  # logmel | stft | ge2e-mel (the pretrained encoder's mel power frames)
    n_mels: int = 40  # mel bands (logmel)
    n_fft: int = 512  # STFT window in samples
    hop: int = 256  # STFT hop in samples
    max_seconds: float = 4.0  # longer utterances keep their first max_seconds
    channels: int = 128  # channels of the time-delay layers
    dilations: tuple[int, ...] = (1, 2, 3)  # one time-delay layer per entry
    embed_dim: int = 128  # embedding size
    mean_norm: bool = False  # subtract each utterance's mean frame
    arch: str = "tdnn"  # tdnn (time-delay network, trained here) | ge2e (the pretrained LSTM)

    @classmethod
    def of(cls, values: Any) -> EncoderSpec:
        """The spec in a config object or mapping that has these fields (and maybe more)."""
        get = values.get if isinstance(values, dict) else lambda k, d: getattr(values, k, d)
        picked = {f.name: get(f.name, f.default) for f in fields(cls)}
        return cls(**(picked | {"dilations": tuple(picked["dilations"])}))

    @classmethod
    def pretrained(cls, max_seconds: float = 4.0) -> EncoderSpec:
        """The GE2E encoder pretrained on other data, with its front end (`audio.pretrained`)."""
        from dlslab.audio import pretrained

        return cls(features="ge2e-mel", n_mels=pretrained.N_MELS, n_fft=pretrained.WINDOW, hop=pretrained.HOP,
                   max_seconds=max_seconds, embed_dim=256, arch="ge2e")

    @property
    def max_frames(self) -> int:
        return int(self.max_seconds * SAMPLE_RATE / self.hop) + 1


def build_encoder(spec: EncoderSpec, n_features: int, n_centres: int = 0) -> SiameseNet:
    """A fresh encoder (arch ge2e: the pretrained one); `n_centres` > 0 adds the speaker
    centres of additive-margin training."""
    if spec.arch == "ge2e":
        from dlslab.audio import pretrained

        return SiameseNet(n_centres=n_centres, encoder=pretrained.pretrained_encoder())
    return SiameseNet(n_features, spec.channels, spec.embed_dim, spec.dilations, spec.mean_norm, n_centres)


def noise_frames(spec: EncoderSpec, snr: list[float] | tuple[float, ...],
                 data_dir: str | Path | None) -> torch.Tensor | None:
    """The real noise recordings (dataset 'noise') as `spec`'s features (F, T), for noisy
    training crops; None when `snr` is empty (noise off)."""
    if not snr:
        return None
    loc = locate("noise", data_dir)
    if loc.status != "found":
        raise DataError("noise_snr needs the 'noise' dataset (real noise recordings); put it under "
                        "DLSLAB_DATA or --data-dir, or run with --set noise_snr=[]")
    return noise_features(loc.path, SAMPLE_RATE, spec.features, n_mels=spec.n_mels, n_fft=spec.n_fft, hop=spec.hop)


def featurize_utterances(utterances: list[Utterance], spec: EncoderSpec) -> SpeakerSet:
    """The encoder's input frames of utterances at SAMPLE_RATE."""
    if spec.features == "ge2e-mel":
        from dlslab.audio import pretrained

        frames, lengths = pretrained.mel_frames(utterances, spec.max_seconds)
        return replace(featurize(utterances, SAMPLE_RATE, max_frames=EncoderSpec().max_frames),
                       frames=frames, lengths=lengths)
    return featurize(utterances, SAMPLE_RATE, kind=spec.features, n_mels=spec.n_mels, n_fft=spec.n_fft,
                     hop=spec.hop, max_frames=spec.max_frames)


@torch.no_grad()
def embed_set(model: Any, frames: torch.Tensor, lengths: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Unit embeddings (N, E) of whole utterances (frames (N, F, T), lengths (N,)), in eval mode."""
    was_training = model.training
    model.eval()
    mask = (torch.arange(frames.shape[-1], device=frames.device)[None] < lengths[:, None]).float()
    out = [model.embed(frames[i:i + batch], mask[i:i + batch]) for i in range(0, len(frames), batch)]
    model.train(was_training)
    return torch.cat(out).cpu().numpy()


def cached_embedder(model: Any, device: torch.device | str = "cpu") -> Any:
    """embed(SpeakerSet) -> unit embeddings (N, E) with `model`; each set of utterances is
    embedded once (the same set asked again gets the same array)."""
    done: dict[tuple, np.ndarray] = {}

    def embed(s: SpeakerSet) -> np.ndarray:
        key = (tuple(s.paths), tuple(s.names), len(s))
        if key not in done:
            done[key] = embed_set(model, s.frames.to(device), s.lengths.to(device))
        return done[key]
    return embed


class FusedCohortNorm:
    """S-norm of a join's scores part by part: each part's cosine similarity s-normalised
    against its own encoder's cohort (`CohortNorm`), then the normalised scores averaged with
    the join's weights (score fusion after normalising each system, the usual way of joining
    speaker-verification systems whose scores lie on different scales). Has the `matrix` and
    `pairs` of a `CohortNorm`, so it scores joined embeddings wherever one does."""

    def __init__(self, norms: list[CohortNorm], dims: list[int], weights: list[float]):
        self.norms, self.weights = norms, weights
        self.cuts = np.cumsum([0] + dims)  # part k is columns cuts[k]:cuts[k + 1] of a joined embedding

    def _parts(self, x: np.ndarray) -> list[np.ndarray]:
        return [x[:, a:b] for a, b in zip(self.cuts[:-1], self.cuts[1:])]

    def matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Fused normalised scores (A, B) of every row of `a` against every row of `b`."""
        parts = zip(self.weights, self.norms, self._parts(a), self._parts(b))
        return sum(w * norm.matrix(pa, pb) for w, norm, pa, pb in parts)

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Fused normalised scores (N,) of the row pairs (a[k], b[k])."""
        parts = zip(self.weights, self.norms, self._parts(a), self._parts(b))
        return sum(w * norm.pairs(pa, pb) for w, norm, pa, pb in parts)


class JoinedEmbedder:
    """embed(SpeakerSet) -> the weighted join of several encoders' unit embeddings of the same
    utterances, each encoder reading its own features: part (embed_k, features_k, w_k) adds
    sqrt(w_k / sum w) * embed_k(the same speakers' utterances in features_k) side by side, so
    the joined embedding has unit length and the cosine similarity of two is the w-weighted
    mean of the parts' (score fusion). A part of weight 0 is left out: with one part left the
    join is that encoder's embedding. `features_k` hold the same utterances in the same order
    (`featurize_utterances` of one utterance list). `cohort_norm` s-normalises its scores part
    by part (`FusedCohortNorm`)."""

    def __init__(self, parts: list[tuple[Any, SpeakerSet, float]]):
        total = sum(w for _, _, w in parts)
        if not parts or min(w for _, _, w in parts) < 0 or total <= 0:
            raise UsageError(f"a join needs weights >= 0 that sum above 0, got {[w for _, _, w in parts]}")
        self.parts = [(embed, source, w / total) for embed, source, w in parts if w > 0]

    def _part_embeddings(self, s: SpeakerSet) -> list[np.ndarray]:
        out = []
        for part, source, _ in self.parts:
            same = source.subset(s.names)
            if same.paths != s.paths:
                raise UsageError("joined encoders must read the same utterances in the same order")
            out.append(part(same))  # (N, E_k), unit rows
        return out

    def __call__(self, s: SpeakerSet) -> np.ndarray:
        scaled = [np.sqrt(w) * e for (_, _, w), e in zip(self.parts, self._part_embeddings(s))]
        return np.concatenate(scaled, axis=1).astype(np.float32)  # (N, sum E_k), unit rows

    def cohort_norm(self, cohort: SpeakerSet, top_k: int | None = None) -> FusedCohortNorm:
        """Each part's s-norm against its own embeddings of the `cohort` utterances, fused."""
        parts = self._part_embeddings(cohort)
        return FusedCohortNorm([CohortNorm(e, top_k) for e in parts], [e.shape[1] for e in parts],
                               [w for _, _, w in self.parts])


def joined_embedder(parts: list[tuple[Any, SpeakerSet, float]]) -> JoinedEmbedder:
    """The join of `parts` (embed_k, features_k, w_k): see `JoinedEmbedder`."""
    return JoinedEmbedder(parts)


def cohort_norm(embed: Any, cohort: SpeakerSet, top_k: int | None = None) -> CohortNorm | FusedCohortNorm:
    """S-norm of `embed`'s scores against its embeddings of the `cohort` utterances (the
    training speakers'); a join's part by part (`JoinedEmbedder.cohort_norm`)."""
    if isinstance(embed, JoinedEmbedder):
        return embed.cohort_norm(cohort, top_k)
    return CohortNorm(embed(cohort), top_k)


def embed_files(model: Any, spec: EncoderSpec, files: list[Path], max_seconds: float | None = None) -> np.ndarray:
    """Unit embeddings (N, E) of audio files (any rate; longer than `max_seconds`: an error)."""
    utts = [Utterance(f"file/{k}", "file", f, read_audio(f, sample_rate=SAMPLE_RATE, max_seconds=max_seconds)[0])
            for k, f in enumerate(files)]
    data = featurize_utterances(utts, spec)
    return embed_set(model, data.frames, data.lengths)


def checkpoint_name(loss: str, member: int = 0, spec: EncoderSpec | None = None) -> str:
    """The `fit` name (checkpoint stem) of ensemble member `member` trained with `loss`
    (from scratch, or fine-tuned from the pretrained encoder when `spec.arch` is ge2e)."""
    kind = "finetuned" if spec is not None and spec.arch == "ge2e" else "encoder"
    return f"{kind}-{loss}" + (f"-{member}" if member else "")


def load_encoder(run_dir: str | Path, init: str = "scratch") -> tuple[SiameseNet | EncoderEnsemble, EncoderSpec]:
    """The trained encoder of a finished `siamese` run (the loss chosen on validation; all
    its ensemble members) and its spec: the one trained from scratch, or (init="pretrained")
    the one fine-tuned from the pretrained encoder."""
    run_dir = Path(run_dir)
    metrics_path, cfg_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if not metrics_path.is_file() or not cfg_path.is_file():
        raise UsageError(f"{run_dir} is not a finished run folder (no metrics.json/config.yaml); "
                         "give the folder printed as `run: PATH` by `dlslab run siamese`")
    data = config.load_yaml(cfg_path)
    if data["study"] != "siamese":
        raise UsageError(f"{run_dir} is a run of {data['study']!r}, not of 'siamese'")
    metrics = json.loads(metrics_path.read_text())
    if init == "pretrained":
        if "pretrained" not in metrics.get("selected_loss_of", {}):
            raise UsageError(f"{run_dir} has no encoder fine-tuned from the pretrained one (run with init "
                             "including pretrained, with the pretrained extra installed)")
        spec = EncoderSpec.pretrained(float(data["config"]["max_seconds"]))
        loss, members_n = metrics["selected_loss_of"]["pretrained"], int(data["config"]["finetune_ensemble"])
    else:
        spec, loss, members_n = EncoderSpec.of(data["config"]), metrics["selected_loss"], int(data["config"]["ensemble"])
    members = []
    for k in range(members_n):
        path = run_dir / "checkpoints" / f"{checkpoint_name(loss, k, spec)}.done.pt"
        state = safe_torch_load(path)["model"]
        state.pop("centres", None)  # only used in training
        members.append(build_encoder(spec, metrics["n_features"]) if spec.arch == "tdnn"
                       else SiameseNet(encoder=GE2EEncoder()))
        members[-1].load_state_dict(state)
    return EncoderEnsemble.join(members).eval(), spec


def open_encoder(name: str | Path, init: str = "scratch") -> tuple[SiameseNet | EncoderEnsemble, EncoderSpec]:
    """`pretrained` (the GE2E encoder pretrained on other data, frozen; an optional extra) or
    a finished siamese run's encoder (`load_encoder`: from scratch, or fine-tuned with init="pretrained")."""
    if str(name) == "pretrained":
        from dlslab.audio import pretrained

        return SiameseNet(encoder=pretrained.pretrained_encoder()).eval(), EncoderSpec.pretrained()
    return load_encoder(name, init)


# --- scoring embeddings of unseen speakers -------------------------------------------------------


def role_set(data: SpeakerSet, roles: dict[str, str], role: str, corpora: list[str] | None = None) -> SpeakerSet:
    """The utterances of the speakers in `role` (train | val | test), of `corpora` only if given."""
    return data.subset([n for n, c in zip(data.names, data.corpus)
                        if roles[n] == role and (corpora is None or c in corpora)])


def test_groups(data: SpeakerSet, roles: dict[str, str]) -> dict[str, SpeakerSet]:
    """The test speakers: all real ones pooled, each real corpus with 2+ of them, the synthetic ones."""
    tested = [c for n, c in zip(data.names, data.corpus) if roles[n] == "test"]
    real = sorted(set(tested) - {"synthetic"})
    groups = {"real": role_set(data, roles, "test", real)} if real else {}
    if len(real) > 1:
        groups |= {f"within {c}": role_set(data, roles, "test", [c]) for c in real if tested.count(c) >= 2}
    if "synthetic" in tested:
        groups["synthetic"] = role_set(data, roles, "test", ["synthetic"])
    return groups


def score_method(embed: Any, data: SpeakerSet, roles: dict[str, str], *, rounds: int, seed: int,
                 s_norm: bool, cohort_top_k: int | None = None) -> dict[str, dict[str, Any]]:
    """`evaluate_embeddings` of one method (`embed`: SpeakerSet -> unit embeddings) on every
    test group of `data`; with `s_norm`, against its own embeddings of the training utterances
    (`cohort_norm`: a join's part by part)."""
    val = role_set(data, roles, "val")
    val_emb = embed(val)
    norm = cohort_norm(embed, role_set(data, roles, "train"), cohort_top_k) if s_norm else None
    return {g: evaluate_embeddings(embed(s), s.speaker.numpy(), val_emb, val.speaker.numpy(),
                                   rounds=rounds, seed=seed, norm=norm)
            for g, s in test_groups(data, roles).items()}



def mfcc_embeddings(data: SpeakerSet, centre: torch.Tensor) -> np.ndarray:
    """The no-learning baseline: each utterance's mean MFCC vector minus `centre`, unit length."""
    e = data.mean_mfcc - centre
    return (e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


def evaluate_embeddings(test_emb: np.ndarray, test_speaker: np.ndarray, val_emb: np.ndarray,
                        val_speaker: np.ndarray, *, rounds: int, seed: int,
                        norm: CohortNorm | FusedCohortNorm | None = None) -> dict[str, Any]:
    """Verification (threshold from validation pairs) and one-shot N-way identification;
    scores are cosine similarities, cohort-normalised with `norm`."""
    vi, vj, vsame = verification_pairs(val_speaker, seed=seed)
    threshold = best_threshold(pair_scores(val_emb, vi, vj, norm), vsame)
    i, j, same = verification_pairs(test_speaker, seed=seed)
    scores = pair_scores(test_emb, i, j, norm)
    eer, _ = equal_error_rate(scores, same)
    out: dict[str, Any] = {"auc": roc_auc(scores, same), "eer": eer,
                           "acc_at_val_threshold": accuracy_at(scores, same, threshold),
                           "threshold": threshold, "scores": scores, "same": same}
    n_spk = len(np.unique(test_speaker))
    for n in sorted({n for n in N_WAYS if n < n_spk} | {n_spk}):
        ident = one_shot_identification(test_emb, test_speaker, n, rounds=rounds, seed=seed, norm=norm)
        key = "all" if n == n_spk else str(n)
        out[f"oneshot_{key}"] = {"n_way": n, "acc": ident.accuracy, "chance": ident.chance}
        if n == n_spk:
            out["confusion"] = (ident.truth, ident.predicted)
    return out


def ten_way(res: dict[str, Any]) -> dict[str, Any]:
    """The one-shot 10-way identification of an `evaluate_embeddings` result (N = all of
    the group's speakers when it has fewer than 10)."""
    return res.get("oneshot_10", res["oneshot_all"])


def result_rows(results: dict[str, dict[str, dict[str, Any]]], group: str,
                missing: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A table of `score_method` results in `group`: one row per method (AUC, EER, accuracy
    at the validation threshold, every N-way accuracy), a row per `missing` method saying
    why it is missing, and chance."""
    rows = []
    for method, res in results.items():
        r = res[group]
        rows.append({"method": method, "ROC-AUC": r["auc"], "EER": r["eer"], "acc @ val threshold":
                     r["acc_at_val_threshold"]} | {f"{r[k]['n_way']}-way acc": r[k]["acc"] for k in r if k.startswith("oneshot_")})
    rows += [{"method": method, "ROC-AUC": why} for method, why in (missing or {}).items()]
    first = next(iter(results.values()))[group]
    return rows + [{"method": "chance", "ROC-AUC": 0.5, "EER": 0.5, "acc @ val threshold": 0.5}
                   | {f"{first[k]['n_way']}-way acc": first[k]["chance"] for k in first if k.startswith("oneshot_")}]


def baseline_comparison(results: dict[str, dict[str, dict[str, Any]]], method: str,
                        baselines: list[str]) -> list[tuple[str, str, bool]]:
    """(group, measure, whether `method` beats every baseline) for each measure of
    `evaluate_embeddings` in each group: AUC, EER (lower is better), accuracy at the
    validation threshold and every N-way accuracy."""
    def value(r: dict[str, Any], key: str) -> float:
        return r[key]["acc"] if key.startswith("oneshot_") else -r[key] if key == "eer" else r[key]

    return [(g, key, value(r, key) > max(value(results[b][g], key) for b in baselines))
            for g, r in results[method].items() for key in r
            if key in ("auc", "eer", "acc_at_val_threshold") or key.startswith("oneshot_")]


# --- the Python API: embed, enrol, verify ---------------------------------------------------------

THRESHOLD_FILE = "speaker-threshold.json"  # in the run folder: the calibrated verification threshold


@dataclass(frozen=True)
class Verification:
    """Two recordings compared: their cosine similarity, the threshold, and the verdict."""

    score: float  # cosine similarity of the two embeddings, in [-1, 1]
    threshold: float  # equal-error-rate threshold on the run's validation speakers
    same: bool  # score >= threshold


def validation_utterances(cfg: dict[str, Any], names: list[str], data_dir: str | Path | None = None) -> list[Utterance]:
    """The utterances of a siamese run's validation speakers `names`, read as the run read them."""
    from dlslab.audio.speakers import read_speakers, real_speakers, synthetic_sets

    found: list[Utterance] = []
    common = {"sample_rate": SAMPLE_RATE, "max_per_speaker": cfg["real_per_speaker"], "seed": cfg["seed"]}
    if cfg["data"] == "folder":
        found += read_speakers(cfg["speakers_dir"], "folder", **common)
    elif "real" in cfg["data"]:
        found += real_speakers(data_dir, **common)
    if "synthetic" in cfg["data"]:
        found += synthetic_sets(cfg["synth_train_speakers"], cfg["synth_val_speakers"], cfg["synth_test_speakers"],
                                cfg["synth_utterances"], cfg["seed"], SAMPLE_RATE)["val"]
    wanted = set(names)
    return [u for u in found if u.speaker in wanted]


class SpeakerEncoder:
    """The speaker encoder of a finished `siamese` run, for use from Python:

        enc = dlslab.SpeakerEncoder.from_run("runs/siamese/...")
        e = enc.embed(wave, 16000)                 # unit embedding (E,)
        enc.verify("a.wav", "b.wav")               # Verification(score, threshold, same)
        enc.enrol(["x1.wav", "x2.wav"])            # one speaker's mean embedding

    Scores are cosine similarities. The threshold is the equal-error-rate threshold on the
    run's validation speakers (never its test speakers), computed on first use and stored
    in the run folder as THRESHOLD_FILE.
    """

    def __init__(self, model: Any, spec: EncoderSpec, run_dir: Path | None, data_dir: str | Path | None = None):
        self.model, self.spec, self.data_dir = model, spec, data_dir
        self.run_dir = None if run_dir is None else Path(run_dir)  # None: the pretrained encoder, no run
        self._threshold: float | None = None

    @classmethod
    def from_run(cls, path: str | Path, data_dir: str | Path | None = None, init: str = "scratch") -> SpeakerEncoder:
        """The encoder of a finished `dlslab run siamese` folder (`data_dir`: where its
        validation speakers are, for calibrating the threshold; default as the run found them);
        init="pretrained": the run's encoder fine-tuned from the pretrained one. `path` may also
        be `pretrained`: the GE2E encoder pretrained on other data (no run, so no threshold)."""
        return cls(*open_encoder(path, init), None if str(path) == "pretrained" else Path(path), data_dir)

    def embed(self, wave: np.ndarray, rate: int) -> np.ndarray:
        """The unit embedding (E,) of a mono recording `wave` (T,) at `rate` Hz."""
        from dlslab.audio.io import check_wave, resample

        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise UsageError(f"embed takes a mono wave of shape (T,), got shape {wave.shape}; mix it down first")
        utt = Utterance("wave/0", "wave", Path("-"), resample(check_wave(wave, "the wave"), rate, SAMPLE_RATE))
        data = featurize_utterances([utt], self.spec)
        return embed_set(self.model, data.frames, data.lengths)[0]

    def embed_files(self, files: list[str | Path]) -> np.ndarray:
        """Unit embeddings (N, E) of audio files, each at most MAX_IN_MEMORY_SECONDS long."""
        from dlslab.audio.io import MAX_IN_MEMORY_SECONDS

        return embed_files(self.model, self.spec, [Path(f) for f in files], max_seconds=MAX_IN_MEMORY_SECONDS)

    def enrol(self, files: list[str | Path]) -> np.ndarray:
        """One speaker's embedding from several utterances: their mean, at unit length."""
        mean = self.embed_files(files).mean(0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def _embedding(self, x: str | Path | tuple[np.ndarray, int]) -> np.ndarray:
        return self.embed(*x) if isinstance(x, tuple) else self.embed_files([x])[0]

    def verify(self, a: str | Path | tuple[np.ndarray, int], b: str | Path | tuple[np.ndarray, int],
               threshold: float | None = None) -> Verification:
        """Whether `a` and `b` (audio files, or (wave, rate) pairs) are the same speaker."""
        score = float(np.dot(self._embedding(a), self._embedding(b)))
        t = self.threshold if threshold is None else threshold
        return Verification(score, t, score >= t)

    @property
    def threshold(self) -> float:
        """The calibrated verification threshold (see `calibrate`)."""
        if self._threshold is None and self.run_dir is None:
            raise UsageError("the pretrained encoder has no validation speakers to calibrate a threshold on; "
                             "give --threshold (a cosine similarity)")
        if self._threshold is None:
            path = self.run_dir / THRESHOLD_FILE
            try:
                self._threshold = float(json.loads(path.read_text())["threshold"])
            except (OSError, ValueError, KeyError, TypeError):
                self._threshold = float(self.calibrate()["threshold"])
        return self._threshold

    def calibrate(self) -> dict[str, Any]:
        """The equal-error-rate threshold of cosine scores on balanced same/different pairs of
        the run's validation speakers; stored in the run folder when it is writable."""
        from dlslab import atomic

        cfg = config.load_yaml(self.run_dir / "config.yaml")["config"]
        names = json.loads((self.run_dir / "metrics.json").read_text()).get("speakers", {}).get("val", [])
        utts = validation_utterances(cfg, names, self.data_dir)
        if len({u.speaker for u in utts}) < 2:
            raise UsageError(f"cannot calibrate the threshold of {self.run_dir}: its validation speakers were not "
                             "found (give the data folder the run used, or pass a threshold)")
        data = featurize_utterances(utts, self.spec)
        emb = embed_set(self.model, data.frames, data.lengths)
        i, j, same = verification_pairs(data.speaker.numpy(), seed=int(cfg["seed"]))
        eer, threshold = equal_error_rate(pair_scores(emb, i, j), same)
        result = {"threshold": threshold, "eer": eer, "speakers": len(set(data.speaker.tolist())),
                  "pairs": len(same), "score": "cosine similarity of the encoder's unit embeddings"}
        try:
            atomic.write_json(self.run_dir / THRESHOLD_FILE, result)
        except OSError:
            pass  # a read-only run folder: calibrate again next time
        self._threshold = threshold
        return result
