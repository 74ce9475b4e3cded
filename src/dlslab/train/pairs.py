"""Training a speaker encoder on mined pairs and triplets.

Every epoch each training utterance is an anchor once; each anchor gets a fresh positive
(another utterance of its speaker) and negative (an utterance of another speaker) from
`models.siamese.SpeakerIndex`, so a batch holds as many same- as different-speaker pairs
(optionally the hardest negative in the batch instead). The three are cropped and augmented
(`audio.augment`), embedded, and scored by a contrastive, triplet or additive-margin softmax
loss. Early stopping, the best epoch and every other choice made on validation speakers
follow `validation_measure`: one-shot identification among the real validation speakers (the
weight of a join: the calibrated Cllr of their pairs, `best_join`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlslab.audio.augment import add_noise, mask_band, random_crops
from dlslab.audio.speaker_encoder import (EncoderSpec, build_encoder, checkpoint_name, cohort_norm, embed_set,
                                          joined_embedder)
from dlslab.audio.speakers import SpeakerSet, validation_folds
from dlslab.metrics.verification import CohortNorm, one_shot_identification, roc_auc, verification_pairs
from dlslab.models.siamese import (EncoderEnsemble, SiameseNet, SpeakerIndex, additive_margin_loss, contrastive_loss,
                                   hardest_negatives, triplet_loss)
from dlslab.runs import Run
from dlslab.train.engine import History, fit, seed_everything
from dlslab.train.optim import make_optimizer

LOSSES = ("contrastive", "triplet", "am-softmax")
CRITERION = "val_score"  # the key of `validation_measure` that every validation choice maximises (but the join's)
JOIN_CRITERION = "val_cllr"  # the key of `validation_measure` that the weight of a join minimises (`best_join`)
VAL_ROUNDS = 20  # random enrolments of the validation one-shot identification


@dataclass(frozen=True)
class PairTraining:
    """How an encoder is trained (field names as in the siamese Config)."""

    crop_frames: int = 48  # each anchor, positive and negative is a random crop of this many frames
    margin: float = 0.3  # contrastive and triplet margin (on cosine similarity)
    am_margin: float = 0.2  # additive margin of the AM-softmax loss
    am_scale: float = 20.0  # logit scale of the AM-softmax loss
    noise_snr: tuple[float, ...] = ()  # (low, high) dB of noise added to each crop; () = off
    band_mask: int = 0  # band of up to this many feature rows replaced by the crop's mean; 0 = off
    hard_negatives: bool = False  # the most similar other-speaker utterance of the batch as negative
    epochs: int = 60  # passes over the training utterances
    batch_size: int = 64  # anchors per batch
    optimizer: str = "adam"  # see train.optim
    lr: float = 2e-3  # learning rate
    patience: int = 15  # early stop after this many epochs without a better validation AUC
    grad_clip: float = 5.0  # gradient-norm clipping

    @classmethod
    def of(cls, cfg: Any) -> PairTraining:
        """The training fields of a config object that has them."""
        picked = {f: getattr(cfg, f) for f in cls.__dataclass_fields__ if hasattr(cfg, f)}
        return cls(**(picked | {"noise_snr": tuple(picked.get("noise_snr", ()))}))


def pair_loss(spec: PairTraining, loss: str, train: SpeakerSet, device: torch.device,
              noise: torch.Tensor | None = None) -> Any:
    """loss_fn(model, anchors) for `fit`: mines a positive and a negative for each anchor,
    crops, augments, embeds and scores them with `loss` (one of LOSSES)."""
    frames, lengths = train.frames.to(device), train.lengths.to(device)
    speaker = train.speaker.to(device)
    index = SpeakerIndex(speaker)
    noise = None if noise is None else noise.to(device)

    def loss_fn(model: SiameseNet, anchors: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = len(anchors)
        trio = torch.cat([anchors, index.positives(anchors), index.negatives(anchors)])  # (3B,)
        x, mask = random_crops(frames, lengths, trio, spec.crop_frames)
        if noise is not None:
            x = add_noise(x, noise, spec.noise_snr) * mask[:, None]
        if spec.band_mask:
            x = mask_band(x, mask, spec.band_mask) * mask[:, None]
        emb = model.embed(x, mask)  # (3B, E)
        a, p, n = emb.split(b)
        if spec.hard_negatives:
            n = emb[hardest_negatives(emb, speaker[trio], b)]
        pos_sim, neg_sim = (a * p).sum(1), (a * n).sum(1)
        if loss == "contrastive":
            value = contrastive_loss(torch.cat([pos_sim, neg_sim]),
                                     torch.cat([torch.ones_like(pos_sim), torch.zeros_like(neg_sim)]), spec.margin)
        elif loss == "triplet":
            value = triplet_loss(a, p, n, spec.margin)
        else:
            value = additive_margin_loss(emb, speaker[trio], model.centres, spec.am_margin, spec.am_scale)
        return value, {"pos_sim": pos_sim.mean().detach(), "neg_sim": neg_sim.mean().detach()}

    return loss_fn


def calibrated_cllr(scores: np.ndarray, same: np.ndarray, steps: int = 50) -> float:
    """Cllr in bits (0: perfect; 1: uninformative) of verification scores mapped to
    log-likelihood ratios by the affine map a * s + b that minimises it (logistic regression by
    Newton's method, same- and different-speaker trials weighted equally): how well the scores
    separate the two kinds of trial, whatever their scale, and unlike an accuracy it does not
    stop moving once every trial falls on the right side (the usual criterion for calibrating
    and fusing speaker-verification systems)."""
    x = np.stack([scores, np.ones_like(scores)], 1).astype(np.float64)  # (P, 2)
    weight = np.where(same, 0.5 / same.sum(), 0.5 / (~same).sum())
    theta = np.zeros(2)
    for _ in range(steps):
        p = np.exp(-np.logaddexp(0, -x @ theta))  # sigmoid, without overflow
        grad = x.T @ (weight * (p - same))
        hess = (x * (weight * p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        theta -= np.linalg.solve(hess, grad)
    llr = x @ theta
    return float(np.sum(weight * np.logaddexp(0, np.where(same, -llr, llr))) / np.log(2))


def validation_measure(val: SpeakerSet, seed: int, rounds: int = VAL_ROUNDS) -> Callable[..., dict[str, float]]:
    """measure(unit embeddings (N, E) of `val`'s utterances, norm=None) -> the validation
    figures, with cosine scores, or those of `norm` (a `CohortNorm`-like s-norm) if given:

    - `val_oneshot`: one-shot identification accuracy among all the real validation speakers
      (`rounds` random enrolments), the study's question; all validation speakers when fewer
      than 2 are real (synthetic data only);
    - `val_auc_real`, `val_cllr`: verification ROC-AUC and `calibrated_cllr` of balanced pairs
      of those same speakers;
    - `val_auc`: ROC-AUC of pairs of all validation speakers, real and synthetic, with cosine
      scores (the criterion before 2026-12-05, kept for the record: the synthetic voices
      dominate it and it sits near 1 for every loss);
    - CRITERION (`val_score`): val_oneshot + val_auc_real / 1000, what choices maximise (the
      AUC only breaks ties of the accuracy, e.g. when it reaches 1)."""
    spk = val.speaker.numpy()
    real = val.corpus_of_utterance() != "synthetic"
    rows = real if len(np.unique(spk[real])) >= 2 else np.ones(len(spk), bool)
    i, j, same = verification_pairs(spk, seed=seed)
    ri, rj, rsame = verification_pairs(spk[rows], seed=seed)

    def measure(emb: np.ndarray, norm: Any = None) -> dict[str, float]:
        sub = emb[rows]
        acc = one_shot_identification(sub, spk[rows], None, rounds=rounds, seed=seed, norm=norm).accuracy
        scores = (sub[ri] * sub[rj]).sum(1) if norm is None else norm.pairs(sub[ri], sub[rj])
        auc_real = roc_auc(scores, rsame)
        return {"val_oneshot": acc, "val_auc_real": auc_real, "val_cllr": calibrated_cllr(scores, rsame),
                "val_auc": roc_auc((emb[i] * emb[j]).sum(1), same), CRITERION: acc + auc_real / 1000}
    return measure


def best_join(first: tuple[Any, SpeakerSet], second: tuple[Any, SpeakerSet], weights: list[float], val: SpeakerSet,
              measure: Callable[..., dict[str, float]], cohort: SpeakerSet | None = None,
              cohort_top_k: int | None = None) -> tuple[float, Any, dict[str, float]]:
    """Two encoders (embed, their features) joined (`audio.speaker_encoder.joined_embedder`:
    `second` weighted w, `first` 1 - w) with the w among `weights` whose join separates the
    validation speakers best: the lowest `val_cllr` of the validation figures `measure` of its
    embeddings of `val` (the smaller w on a tie), with the scores the study tests with, s-norm
    part by part against the `cohort` utterances (cosine without a cohort). Returns (w, the
    joined embed, its validation figures)."""
    tried = {}
    for w in sorted(set(weights)):
        embed = joined_embedder([(*first, 1 - w), (*second, w)])
        norm = None if cohort is None else cohort_norm(embed, cohort, cohort_top_k)
        tried[w] = (embed, measure(embed(val), norm))
    w = min(tried, key=lambda w: tried[w][1][JOIN_CRITERION])
    return w, *tried[w]


def train_encoder(spec: PairTraining, encoder: EncoderSpec, loss: str, train: SpeakerSet, val: SpeakerSet,
                  run: Run, *, seed: int, member: int = 0, noise: torch.Tensor | None = None) -> tuple[SiameseNet, History]:
    """One encoder trained with `loss`, its best epoch by `validation_measure` on `val` kept;
    ensemble member k starts from seed + k (its validation draws are the same for every member)."""
    device = run.device
    seed_everything(seed + member)
    model = build_encoder(encoder, train.frames.shape[1], len(train.names) if loss == "am-softmax" else 0).to(device)
    val_frames, val_lengths = val.frames.to(device), val.lengths.to(device)
    measure = validation_measure(val, seed)

    def evaluate(m: SiameseNet) -> dict[str, float]:
        return measure(embed_set(m, val_frames, val_lengths))

    opt = make_optimizer(spec.optimizer, model.parameters(), spec.lr)
    history = fit(model, (torch.arange(len(train), device=device),), pair_loss(spec, loss, train, device, noise),
                  optimizer=opt, epochs=spec.epochs, batch_size=spec.batch_size, evaluate=evaluate,
                  monitor=CRITERION, patience=spec.patience, restore_best=True, grad_clip=spec.grad_clip,
                  seed=seed + member, run=run, name=checkpoint_name(loss, member, encoder), drop_last=True)
    return model.eval(), history


def train_ensemble(spec: PairTraining, encoder: EncoderSpec, loss: str, train: SpeakerSet, val: SpeakerSet,
                   run: Run, *, members: int, seed: int,
                   noise: torch.Tensor | None = None) -> tuple[SiameseNet | EncoderEnsemble, list[History]]:
    """`members` encoders trained with `loss` (seeds seed, seed + 1, ...) joined into one, and
    their training histories."""
    trained = [train_encoder(spec, encoder, loss, train, val, run, seed=seed, member=k, noise=noise)
               for k in range(members)]
    return EncoderEnsemble.join([m for m, _ in trained]), [h for _, h in trained]


def fold_accuracies(data: SpeakerSet, roles: dict[str, str], spec: PairTraining, encoder: EncoderSpec, loss: str, *,
                    members: int, seed: int, cohort_top_k: int | None, noise: torch.Tensor | None = None,
                    n_folds: int = 4, rounds: int = 30) -> dict[str, float]:
    """Cross-validation over the speakers that are never tested: each fold of
    `audio.speakers.validation_folds` in turn is held out (with its speed-perturbed copies),
    an ensemble is trained on the other real and the synthetic training speakers (early
    stopping on the held-out fold and the synthetic validation voices), and the held-out
    speakers are identified one-shot among all of them (`all`) and within each corpus, with
    cosine and s-norm scores. Returns {"<scoring> <group>": accuracy averaged over folds}."""
    out: dict[str, list[float]] = {}
    for fold in validation_folds(roles, n_folds):
        held = set(fold)
        r = {n: "val" if n in held else "held out" if n.split("@")[0] in held
             else "train" if roles[n] == "val" and not n.startswith("synthetic/") else roles[n] for n in roles}
        train = data.subset([n for n in data.names if r[n] == "train"])
        val = data.subset([n for n in data.names if r[n] == "val"])
        with tempfile.TemporaryDirectory() as tmp:
            model, _ = train_ensemble(spec, encoder, loss, train, val, Run(Path(tmp), "cross-validation", spec, quiet=True),
                                      members=members, seed=seed, noise=noise)
        test = data.subset(fold)
        emb, spk, corpus = embed_set(model, test.frames, test.lengths), test.speaker.numpy(), test.corpus_of_utterance()
        cohort = CohortNorm(embed_set(model, train.frames, train.lengths), cohort_top_k)
        for scoring, norm in (("cosine", None), ("s-norm", cohort)):
            for group in ["all"] + sorted(set(corpus)):
                rows = np.ones(len(spk), bool) if group == "all" else corpus == group
                if len(np.unique(spk[rows])) >= 2:
                    acc = one_shot_identification(emb[rows], spk[rows], None, rounds=rounds, seed=seed,
                                                  norm=norm).accuracy
                    out.setdefault(f"{scoring} {group}", []).append(acc)
    return {k: float(np.mean(v)) for k, v in out.items()}
