"""Study 8: one-shot speaker identification with a Siamese network and cosine similarity.

Twin networks with tied weights (a time-delay encoder with statistics pooling over the valid
frames) map log-mel frames to unit embeddings, compared by cosine similarity. The encoder is
trained on one set of speakers (contrastive, triplet or additive-margin softmax loss; fresh
positives and negatives every epoch) and evaluated on speakers it never heard: verification
(ROC-AUC, EER, accuracy at the threshold chosen on validation speakers) and one-shot
identification among N = 5, 10, 20, all enrolled speakers (one utterance each), on all real
test speakers pooled, within each real corpus, and on unseen synthetic voices. Encoders from
several seeds are joined (their scores averaged) and scores are s-normalised against the
training utterances; settings are chosen by `cross_validate` over folds of untested speakers.

Rows beside it: mean MFCC vectors (no learning), the encoder untrained, and an anchor pretrained on other data, the
GE2E encoder of the `resemblyzer` wheel (LibriSpeech and VoxCeleb speakers; `audio.pretrained`, an optional extra:
without it the row says "not installed"), frozen, fine-tuned from it with the study's losses (`init`), and that joined
with the one trained here (score fusion, each part s-normalised, weighted by the lowest calibrated Cllr on
validation).

Scientific variable: the encoder (from scratch with each loss in `losses`, fine-tuned from the pretrained one, the
baselines). Nuisance (chosen by `cross_validate`, then fixed): width, crop length, margins, learning rates, ensemble
size, score normalisation, augmentations. Fixed: the speaker split (per corpus, seeded), the features (40 log-mel
bands, 32 ms window, 16 ms hop; the pretrained encoder: its own front end), the evaluation protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dlslab.audio import pretrained
from dlslab.audio.augment import speed_perturbed
from dlslab.audio.speaker_encoder import (SAMPLE_RATE, EncoderSpec, baseline_comparison, build_encoder, cached_embedder,
                                          featurize_utterances, mfcc_embeddings, noise_frames, result_rows, role_set,
                                          score_method, ten_way, test_groups)
from dlslab.audio.speakers import SpeakerSet, Utterance, read_speakers, real_speakers, role_counts, split_speakers, synthetic_sets
from dlslab.config import StudyConfig, require
from dlslab.errors import ConfigError, DataError
from dlslab.metrics.projection import tsne
from dlslab.models.siamese import GE2EEncoder
from dlslab.report.figures import confusion_matrix, overlaid_histograms, scatter_2d
from dlslab.report.plots import line_plot
from dlslab.runs import Run
from dlslab.train.optim import OptimizerName
from dlslab.train.pairs import CRITERION, LOSSES, PairTraining, best_join, fold_accuracies, train_ensemble, validation_measure

Loss = Literal["contrastive", "triplet", "am-softmax"]
MFCC, UNTRAINED, PRETRAINED = "mean MFCC (no learning)", "untrained encoder", "pretrained GE2E, frozen (other data)"
FINETUNED, JOINED = "fine-tuned from pretrained", "fine-tuned + trained, joined"  # JOINED: weight chosen on validation
INIT_OF = {"trained": "scratch", FINETUNED: "pretrained"}  # each trained kind's starting point (`init`)


@dataclass
class Config(StudyConfig):
    data: Literal["real+synthetic", "real", "synthetic", "folder"] = "real+synthetic"  # speakers used: the real corpora found, espeak-ng voices, both, or speakers_dir
    speakers_dir: str | None = None  # your own folder SPEAKER/utterance.wav|flac (with data=folder): split by speaker like a real corpus
    real_per_speaker: int = 20  # utterances per real speaker at most (a seeded random subset)
    val_fraction: float = 0.15  # fraction of each real corpus's speakers held out for validation (threshold, early stop, loss choice)
    test_fraction: float = 0.4  # fraction of each real corpus's speakers held out for testing (unseen)
    synth_train_speakers: int = 50  # espeak-ng training speakers (the classic setting: 50 x 10 utterances)
    synth_val_speakers: int = 10  # espeak-ng validation speakers (other voices)
    synth_test_speakers: int = 20  # espeak-ng test speakers (other voices, test sentences)
    synth_utterances: int = 10  # utterances per synthetic speaker
    features: Literal["logmel", "stft"] = "logmel"  # input frames: log-mel energies or log STFT magnitudes
    n_mels: int = 40  # mel bands (features=logmel)
    n_fft: int = 512  # STFT window in samples (32 ms at 16 kHz)
    hop: int = 256  # STFT hop in samples (16 ms)
    max_seconds: float = 4.0  # longer utterances keep their first max_seconds
    crop_frames: int = 48  # training sees a random crop of this many frames per utterance (evaluation: whole utterances)
    channels: int = 128  # channels of the time-delay layers
    dilations: list[int] = field(default_factory=lambda: [1, 2, 3])  # one time-delay layer per entry (its dilation)
    embed_dim: int = 128  # embedding size
    mean_norm: bool = False  # subtract each utterance's mean frame (removes the recording channel's colour)
    speed_perturb: list[float] = field(default_factory=list)  # each training utterance also resampled by these speed factors; each factor makes new pseudo-speakers
    losses: list[Loss] = field(default_factory=lambda: list(LOSSES))  # losses trained and compared; the best on validation is reported as "trained"
    margin: float = 0.3  # margin of the contrastive and triplet losses (on cosine similarity)
    am_margin: float = 0.2  # additive margin of the AM-softmax loss
    am_scale: float = 20.0  # logit scale of the AM-softmax loss
    noise_snr: list[float] = field(default_factory=list)  # [low, high] dB: each training crop gets a crop of a real noise recording (dataset 'noise') at a random SNR in this range; [] = off
    band_mask: int = 0  # each training crop has a random band of up to this many feature rows set to the crop's mean (SpecAugment-style); 0 = off
    hard_negatives: bool = False  # pair each anchor with the most similar other-speaker utterance in its batch
    epochs: int = 60  # passes over the training utterances (each one an anchor once per epoch)
    batch_size: int = 64  # anchors per batch
    optimizer: OptimizerName = "adam"  # optimizer (see dlslab.train.optim)
    lr: float = 2e-3  # learning rate
    patience: int = 15  # stop after this many epochs without a better validation criterion
    ensemble: int = 5  # encoders trained per loss (seeds seed, seed + 1, ...) and joined: a score is the mean of their cosines
    score_norm: Literal["none", "s-norm"] = "s-norm"  # test-time scores: cosine, or adaptive symmetric s-norm against a cohort of training utterances
    cohort_top_k: int | None = None  # s-norm: each side is normalised by its most similar cohort utterances (None: the whole cohort)
    eval_rounds: int = 10  # random enrolments averaged in one-shot identification
    init: list[Literal["scratch", "pretrained"]] = field(default_factory=lambda: ["scratch", "pretrained"])  # encoders trained: from scratch (the main row) and fine-tuned from the pretrained GE2E encoder (skipped when the extra is not installed)
    finetune_lr: float = 1e-4  # learning rate of fine-tuning (chosen on validation: scripts/siamese_finetune_grid.py)
    finetune_epochs: int = 4  # most epochs of fine-tuning, the best on validation kept (crops of one 160-frame window; 4: scripts/siamese_fusion_grid.py)
    finetune_ensemble: int = 1  # fine-tuned encoders per loss (seeds seed, seed + 1, ...)
    join_weights: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])  # weights w of the from-scratch encoder tried in the JOINED row (score fusion with the fine-tuned one, 1 - w; with s-norm each part is normalised against its own cohort first); the one whose scores of the real validation pairs have the lowest calibrated Cllr kept; [] = no such row


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"data": "synthetic", "synth_train_speakers": 12, "synth_val_speakers": 5,
              "synth_test_speakers": 8, "synth_utterances": 5, "channels": 48, "embed_dim": 48,
              "losses": ["triplet"], "epochs": 8, "batch_size": 32, "ensemble": 2, "eval_rounds": 3,
              "finetune_epochs": 1},
    "quick": {"synth_train_speakers": 30, "synth_utterances": 8, "channels": 64,
              "losses": ["am-softmax"], "epochs": 25, "patience": 8, "eval_rounds": 5,
              "init": ["scratch"]},  # the frozen anchor, no fine-tuning (one epoch: 0.842 vs frozen 0.848, +40 s)
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return (["speakers", "speakers2"] if "real" in cfg.data else []) + \
        (["speech-corpus"] if "synthetic" in cfg.data else []) + (["noise"] if cfg.noise_snr else [])


def check(cfg: Config) -> None:
    """Refuse out-of-range values before anything runs."""
    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: {allowed}")

    need(bool(cfg.losses), "losses", "give one or more of " + ", ".join(LOSSES))
    need(bool(cfg.init), "init", "give scratch, pretrained or both")
    require(cfg, at_least_1=("real_per_speaker", "synth_utterances", "n_mels", "n_fft", "hop", "channels", "embed_dim",
                             "epochs", "patience", "ensemble", "eval_rounds", "finetune_epochs", "finetune_ensemble"),
            non_negative=("synth_train_speakers", "synth_val_speakers", "synth_test_speakers", "band_mask", "margin",
                          "am_margin"), positive=("max_seconds", "lr", "am_scale", "finetune_lr", "speed_perturb"),
            probabilities=("join_weights",))
    need(cfg.crop_frames >= 4, "crop_frames", "must be >= 4")
    need(cfg.batch_size >= 2, "batch_size", "must be >= 2 (a batch needs two speakers)")
    need(0 <= cfg.val_fraction < 1, "val_fraction", "must be a fraction in [0, 1)")
    need(0 < cfg.test_fraction < 1 - cfg.val_fraction, "test_fraction",
         f"must be a fraction in (0, 1) with val_fraction + test_fraction < 1 (val_fraction={cfg.val_fraction})")
    need(bool(cfg.dilations) and min(cfg.dilations) >= 1, "dilations", "give one or more dilations >= 1")
    need(not cfg.noise_snr or (len(cfg.noise_snr) == 2 and cfg.noise_snr[0] <= cfg.noise_snr[1]), "noise_snr",
         "give [low, high] in dB, or [] for no noise")
    need(cfg.cohort_top_k is None or cfg.cohort_top_k >= 2, "cohort_top_k",
         "use 2 or more cohort utterances, or null for all")


# --- data -----------------------------------------------------------------------------------------


def load_utterances(cfg: Config, data_dir: str | Path | None) -> tuple[list[Utterance], dict[str, str]]:
    """Every utterance, and each speaker's role."""
    real: list[Utterance] = []
    if cfg.data == "folder":
        if not cfg.speakers_dir:
            raise ConfigError("data=folder needs speakers_dir=PATH (a folder SPEAKER/utterance.wav)")
        real = read_speakers(cfg.speakers_dir, "folder", sample_rate=SAMPLE_RATE,
                             max_per_speaker=cfg.real_per_speaker, seed=cfg.seed)
    elif "real" in cfg.data:
        real = real_speakers(data_dir, sample_rate=SAMPLE_RATE, max_per_speaker=cfg.real_per_speaker, seed=cfg.seed)
        if not real and cfg.data == "real":
            raise DataError("no real speaker recordings found (datasets 'speakers', 'speakers2'); "
                            "put them under DLSLAB_DATA or --data-dir, or run with --set data=synthetic")
    roles = split_speakers(real, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    utterances = list(real)
    if "synthetic" in cfg.data:
        for role, utts in synthetic_sets(cfg.synth_train_speakers, cfg.synth_val_speakers, cfg.synth_test_speakers,
                                         cfg.synth_utterances, cfg.seed, SAMPLE_RATE).items():
            roles |= {u.speaker: role for u in utts}
            utterances += utts
    perturbed = speed_perturbed([u for u in utterances if roles[u.speaker] == "train"], cfg.speed_perturb)
    roles |= {u.speaker: "train" for u in perturbed}
    utterances += perturbed
    for role in ("train", "val", "test"):
        if sum(r == role for r in roles.values()) < 2:
            raise DataError(f"fewer than 2 {role} speakers; use more speakers (a corpus needs 3+ "
                            "speakers to be split) or change val_fraction/test_fraction")
    return utterances, roles


# --- choosing settings: folds of the non-test speakers -------------------------------------------------


def cross_validate(cfg: Config, data_dir: str | Path | None = None, n_folds: int = 4,
                   rounds: int = 30) -> dict[str, float]:
    """Settings are chosen here, never on the test speakers: one-shot accuracies of
    cfg.losses[0]'s encoders over folds of the untested real speakers (`train.pairs.fold_accuracies`)."""
    utterances, roles = load_utterances(cfg, data_dir)
    spec = EncoderSpec.of(cfg)
    return fold_accuracies(featurize_utterances(utterances, spec), roles, PairTraining.of(cfg), spec, cfg.losses[0],
                           members=cfg.ensemble, seed=cfg.seed, cohort_top_k=cfg.cohort_top_k,
                           noise=noise_frames(spec, cfg.noise_snr, data_dir), n_folds=n_folds, rounds=rounds)


# --- the study ----------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    check(cfg)
    utterances, roles = load_utterances(cfg, run.data_dir)
    data = featurize_utterances(utterances, EncoderSpec.of(cfg))
    # the pretrained encoder's own front end, when the extra is installed
    ge2e = EncoderSpec.pretrained(cfg.max_seconds)
    sets = {"tdnn": data, "ge2e": featurize_utterances(utterances, ge2e) if pretrained.installed() else None}
    if cfg.init == ["pretrained"] and sets["ge2e"] is None:
        raise DataError(f"init=[pretrained] fine-tunes the pretrained encoder, which is {pretrained.NOT_INSTALLED}")
    train, val, groups = role_set(data, roles, "train"), role_set(data, roles, "val"), test_groups(data, roles)
    run.info(f"[siamese] {len(train.names)} training speakers ({len(train)} utterances), "
             f"{len(val.names)} validation, test groups: " + ", ".join(f"{g} ({len(s.names)})" for g, s in groups.items()))

    embedder = partial(cached_embedder, device=run.device)
    # every method maps a SpeakerSet of its own features (sets[source]) to unit embeddings
    torch.manual_seed(cfg.seed)
    untrained = build_encoder(EncoderSpec.of(cfg), data.frames.shape[1]).to(run.device).eval()
    train_mean = train.mean_mfcc.mean(0)
    methods: dict[str, tuple[Any, str]] = {MFCC: (lambda s: mfcc_embeddings(s, train_mean), "tdnn"),
                                           UNTRAINED: (embedder(untrained), "tdnn")}
    if sets["ge2e"] is not None:
        methods[PRETRAINED] = (embedder(build_encoder(ge2e, pretrained.N_MELS).to(run.device).eval()), "ge2e")
    histories, val_scores, selected = train_encoders(cfg, run, sets, roles, methods, embedder)

    scoring = {"rounds": cfg.eval_rounds, "seed": cfg.seed, "cohort_top_k": cfg.cohort_top_k}
    results = {m: score_method(embed, sets[src], roles, s_norm=cfg.score_norm == "s-norm", **scoring)
               for m, (embed, src) in methods.items()}
    if sets["ge2e"] is not None:  # the anchor with the other scoring too
        other = "cosine" if cfg.score_norm == "s-norm" else "s-norm"
        results[f"{PRETRAINED}, {other}"] = score_method(methods[PRETRAINED][0], sets["ge2e"], roles,
                                                         s_norm=other == "s-norm", **scoring)
    main_key = f"trained ({selected['trained']})" if "trained" in selected else f"{FINETUNED} ({selected[FINETUNED]})"

    _record_tables(run, data, roles, cfg.hop, results, groups, cfg.score_norm, sets["ge2e"] is not None)
    _record_figures(run, cfg, results, test_groups(sets[methods[main_key][1]], roles), histories,
                    methods[main_key][0], main_key)
    wins = _record_conclusions(run, results, main_key, [MFCC, UNTRAINED], selected, histories, val_scores)
    return {"headline": _headline(results, groups, main_key, selected, wins), "selected_loss": selected.get("trained"),
            "selected_loss_of": {INIT_OF[k]: v for k, v in selected.items()}, "join_weight": val_scores.get(JOINED, {}).get("join_weight"),
            "pretrained": "installed" if sets["ge2e"] is not None else pretrained.NOT_INSTALLED,
            "n_features": int(data.frames.shape[1]),
            "speakers": {role: sorted(n for n, r in roles.items() if r == role) for role in ("train", "val", "test")},
            "results": {m: {g: {k: v for k, v in r.items() if k not in ("scores", "same", "confusion")}
                            for g, r in res.items()} for m, res in results.items()},
            **{k: {key: v[k] for key, v in val_scores.items()} for k in ("val_oneshot", "val_auc")},
            "epochs": {key: [h.epochs for h in hs] for key, hs in histories.items()}}


def train_encoders(cfg: Config, run: Run, sets: dict[str, SpeakerSet | None], roles: dict[str, str],
                   methods: dict[str, tuple[Any, str]], embedder: Any) -> tuple[dict, dict, dict]:
    """Each init's encoders, one (ensemble) per loss, added to `methods`; the loss of each init
    is chosen by `validation_measure` (one-shot accuracy among the real validation speakers).
    Returns (histories, {row: its validation figures}, {kind: chosen loss})."""
    histories: dict[str, list[Any]] = {}
    val_scores: dict[str, dict[str, float]] = {}
    finetune = replace(PairTraining.of(cfg), lr=cfg.finetune_lr, epochs=cfg.finetune_epochs,
                       patience=cfg.finetune_epochs, crop_frames=GE2EEncoder().window)
    trainings = {"trained": (EncoderSpec.of(cfg), PairTraining.of(cfg), cfg.ensemble, "tdnn"),
                 FINETUNED: (EncoderSpec.pretrained(cfg.max_seconds), finetune, cfg.finetune_ensemble, "ge2e")}
    selected: dict[str, str] = {}
    for kind, (spec, training, members, source) in trainings.items():
        if INIT_OF[kind] not in cfg.init or sets[source] is None:
            continue
        train, val = role_set(sets[source], roles, "train"), role_set(sets[source], roles, "val")
        measure = validation_measure(val, cfg.seed)
        noise = noise_frames(spec, cfg.noise_snr, run.data_dir) if source == "tdnn" else None
        for loss in cfg.losses:
            key = f"{kind} ({loss})"
            model, histories[key] = train_ensemble(training, spec, loss, train, val, run, members=members,
                                                   seed=cfg.seed, noise=noise)
            methods[key] = (embedder(model), source)
            val_scores[key] = measure(methods[key][0](val))
        selected[kind] = max(cfg.losses, key=lambda loss: val_scores[f"{kind} ({loss})"][CRITERION])
    if cfg.join_weights and len(selected) == 2:  # the fine-tuned encoder (weight 1 - w) joined with the trained one (w)
        (e1, s1), (e2, s2) = (methods[f"{kind} ({selected[kind]})"] for kind in (FINETUNED, "trained"))
        cohort = role_set(sets[s1], roles, "train") if cfg.score_norm == "s-norm" else None  # scored as on test
        w, embed, val_scores[JOINED] = best_join((e1, sets[s1]), (e2, sets[s2]), cfg.join_weights, val, measure, cohort, cfg.cohort_top_k)
        methods[JOINED], val_scores[JOINED]["join_weight"] = (embed, s1), w
    return histories, val_scores, selected


def _headline(results: dict[str, dict[str, Any]], groups: dict[str, SpeakerSet], main_key: str,
              selected: dict[str, str], wins: float) -> dict[str, Any]:
    rows = {"mfcc": MFCC, "untrained": UNTRAINED, "pretrained": PRETRAINED,
            "finetuned": f"{FINETUNED} ({selected.get(FINETUNED)})", "joined": JOINED}
    headline: dict[str, Any] = {"oneshot10_acc": {}, "auc": {}, "eer": {}, "wins_over_baselines": wins}
    for g in groups:
        name = g.replace("within ", "within_")
        headline["oneshot10_acc"][name] = ten_way(results[main_key][g])["acc"]
        headline["auc"][name], headline["eer"][name] = results[main_key][g]["auc"], results[main_key][g]["eer"]
        headline["oneshot10_acc"] |= {f"{name}_{label}": ten_way(results[m][g])["acc"]
                                      for label, m in rows.items() if m in results}
    return headline


def _record_tables(run: Run, data: SpeakerSet, roles: dict[str, str], hop: int, results: dict[str, dict[str, Any]],
                   groups: dict[str, SpeakerSet], scoring: str, installed: bool) -> None:
    run.add_table("Data used", role_counts(data, roles, hop, SAMPLE_RATE),
                  caption="Speakers are split by speaker: no speaker is in two roles. Real corpora: fsdd (spoken "
                  "digits), arabic (Arabic speech commands, 1 s), librispeech (read English, test-other, ~3 s); "
                  "synthetic: espeak-ng voices (accent, variant, pitch, speed).")
    for g, s in groups.items():
        run.add_table(f"Unseen speakers: {g}", result_rows(results, g, {} if installed else
                                                           {PRETRAINED: pretrained.NOT_INSTALLED}),
                      caption=f"{len(s.names)} test speakers, {len(s)} utterances. One-shot: one enrolment "
                              f"utterance per speaker, every other utterance identified among N speakers. Scores: "
                              f"{scoring} (unless the method says otherwise). The pretrained GE2E encoder was "
                              "trained on other data (LibriSpeech train-other, VoxCeleb 1 and 2 speakers).")


def _record_figures(run: Run, cfg: Config, results: dict[str, dict[str, Any]], groups: dict[str, SpeakerSet],
                    histories: dict[str, Any], trained_embed: Any, trained_key: str) -> None:
    main = "real" if "real" in groups else next(iter(groups))
    label = "cosine similarity" + (", s-normalised" if cfg.score_norm == "s-norm" else "")
    panels = {f"{m}\nAUC {r[main]['auc']:.3f}, EER {r[main]['eer']:.3f}": r[main] for m, r in results.items()
              if not m.startswith(PRETRAINED + ",")}  # the anchor's other scoring is on another scale
    run.add_figure(overlaid_histograms({t: {"same speaker": r["scores"][r["same"]],
                                            "different speakers": r["scores"][~r["same"]]} for t, r in panels.items()},
                                       xlabel=label, lines={t: r["threshold"] for t, r in panels.items()},
                                       line_label="threshold (validation)"),
                   f"similarity_{main}", title=f"Same/different-speaker scores: {label} ({main} test speakers)")
    test = groups[main]
    xy = tsne(torch.from_numpy(trained_embed(test)), perplexity=30.0, seed=cfg.seed).numpy()
    corpora = sorted(set(test.corpus))
    run.add_figure(scatter_2d(xy, test.speaker.numpy(), marker=[corpora.index(c) for c in test.corpus_of_utterance()],
                              names=test.names, title="t-SNE of test embeddings (colour: speaker, marker: corpus)"),
                   f"tsne_{main}", title=f"t-SNE of {trained_key} embeddings ({main} test speakers)")
    truth, predicted = results[trained_key][main]["confusion"]
    run.add_figure(confusion_matrix(truth, predicted, [n.split("/", 1)[-1] for n in test.names],
                                    xlabel="identified as", ylabel="true speaker"), f"confusion_{main}",
                   title=f"One-shot identification among all {main} test speakers: confusion ({trained_key})")
    series = {key + (f" #{k}" if len(hs) > 1 else ""): (list(range(1, len(h.epochs) + 1)), h.series("val_oneshot"))
              for key, hs in histories.items() for k, h in enumerate(hs)}
    run.add_figure(line_plot(series, title="validation one-shot accuracy (real speakers)", xlabel="epoch",
                             ylabel="accuracy"), "val_oneshot", title="Training: validation one-shot accuracy per epoch")


def _record_conclusions(run: Run, results: dict[str, dict[str, Any]], main_key: str, baselines: list[str],
                        selected: dict[str, str], histories: dict[str, list[Any]], val_scores: dict[str, dict]) -> float:
    """Findings, targets and the answer, computed from the results; returns the fraction of
    measures the main encoder wins over the baselines."""
    measures = baseline_comparison(results, main_key, baselines)
    lost = [f"{g} {k}" for g, k, won in measures if not won]
    text = [f"{kind}: the loss chosen on validation is {loss} (one-shot accuracy among the real validation speakers "
            f"{val_scores[f'{kind} ({loss})']['val_oneshot']:.3f}; best "
            "epoch of each encoder: " + ", ".join(str(h.best_epoch) for h in histories[f"{kind} ({loss})"]) + ")."
            for kind, loss in selected.items()]
    text += [f"{JOINED}: the weight of the trained encoder chosen on validation is {v['join_weight']:g} (lowest Cllr of the real "
             f"validation pairs, {v['val_cllr']:.3f}; validation one-shot {v['val_oneshot']:.3f}, scored as on test)." for v in [val_scores.get(JOINED)] if v]
    text.append(f"The {main_key} encoder beats both baselines on {len(measures) - len(lost)} of {len(measures)} "
                "measures" + (f"; not on: {', '.join(lost)}." if lost else " (all of them)."))
    rows = [main_key] + [m for m in results if m.startswith((PRETRAINED, FINETUNED, JOINED)) and m != main_key]
    for g in results[main_key]:
        text.append(f"{g}: one-shot {ten_way(results[main_key][g])['n_way']}-way accuracy: " + ", ".join(
            f"{m} {ten_way(results[m][g])['acc']:.1%}" for m in rows + baselines) + ".")
    run.add_text("Findings", " ".join(text))
    acc = {(m, g): results[m][g]["oneshot_10"]["acc"] for m in rows for g in ("real", "within arabic")
           if "oneshot_10" in results[m].get(g, {})}
    for (m, g), value in acc.items():
        run.target(f"oneshot10_acc.{g.replace('within ', 'within_')} ({m})", value, at_least=0.9 if g == "real" else 0.8,
                   anchor="issue 22: >= 0.90 pooled, >= 0.80 within Arabic (full preset)")
    best = max(rows, key=lambda m: ten_way(results[m][next(iter(results[m]))])["acc"])
    g = next(iter(results[main_key]))
    run.answer(f"One-shot {ten_way(results[main_key][g])['n_way']}-way identification of unseen speakers ({g}): "
               f"{ten_way(results[main_key][g])['acc']:.1%} for the {main_key} encoder; the best encoder here is "
               f"{best} ({ten_way(results[best][g])['acc']:.1%}; chance {ten_way(results[best][g])['chance']:.1%}).")
    return (len(measures) - len(lost)) / max(len(measures), 1)
