"""Speaker verification and one-shot identification metrics.

Verification scores pairs of utterances (a similarity per pair, higher = more likely the
same speaker): ROC curve, ROC-AUC, equal error rate, and accuracy at a threshold chosen on
other (validation) pairs. One-shot identification enrols each speaker with ONE utterance
and identifies every other utterance among N enrolled speakers (the true one and N - 1
others drawn at random), with chance level 1 / N beside each accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def _arrays(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    same = np.asarray(same, dtype=bool).reshape(-1)
    if scores.shape != same.shape:
        raise ValueError(f"scores {scores.shape} and labels {same.shape} differ in length")
    if same.all() or not same.any():
        raise ValueError("verification needs both same-speaker and different-speaker pairs")
    return scores, same


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random same-speaker pair scores
    higher than a random different-speaker pair (ties count half)."""
    scores, same = _arrays(scores, same)
    ranks = rankdata(scores)
    n_pos, n_neg = same.sum(), (~same).sum()
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false accept rate, true accept rate, threshold) at every distinct threshold,
    accepting a pair when its score >= threshold; starts at (0, 0, +inf)."""
    scores, same = _arrays(scores, same)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tpr = np.cumsum(y)[last] / y.sum()
    fpr = np.cumsum(~y)[last] / (~y).sum()
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, s[last]]


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where the false accept and false reject rates cross (interpolated
    between the two ROC points that straddle the crossing)."""
    fpr, tpr, thr = roc_curve(scores, same)
    fnr = 1 - tpr
    i = int(np.nonzero(fpr >= fnr)[0][0])
    if i == 0:
        return 0.0, float(thr[1])
    # the crossing lies between points i-1 and i, on the segment where fpr - fnr changes sign
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    w = d0 / (d0 - d1) if d1 != d0 else 0.0
    eer = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    return float(eer), float(thr[i])


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest balanced accuracy on these (validation) pairs: midway
    between the best score and the next lower one."""
    fpr, tpr, thr = roc_curve(scores, same)
    i = int(np.argmax(tpr - fpr))  # balanced accuracy = (tpr + 1 - fpr) / 2
    if i == 0:
        return float(thr[1]) + 1e-6
    below = thr[i + 1] if i + 1 < len(thr) else thr[i] - 1e-6
    return float((thr[i] + below) / 2)


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Balanced accuracy (mean of the same- and different-pair accuracies) at `threshold`."""
    scores, same = _arrays(scores, same)
    accept = scores >= threshold
    return float(0.5 * (accept[same].mean() + (~accept[~same]).mean()))


def verification_pairs(speaker: np.ndarray, *, max_pairs: int = 20000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced verification trials over utterances with labels `speaker` (N,):
    (first, second, same). Same-speaker pairs are all distinct pairs (subsampled to
    max_pairs / 2); as many different-speaker pairs are drawn at random."""
    speaker = np.asarray(speaker)
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(speaker), k=1)
    pos = np.nonzero(speaker[i] == speaker[j])[0]
    neg = np.nonzero(speaker[i] != speaker[j])[0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("verification pairs need 2+ speakers, one of them with 2+ utterances")
    n = min(len(pos), len(neg), max_pairs // 2)
    pos = rng.choice(pos, n, replace=False)
    neg = rng.choice(neg, n, replace=False)
    pick = np.r_[pos, neg]
    return i[pick], j[pick], np.r_[np.ones(n, bool), np.zeros(n, bool)]


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class CohortNorm:
    """Adaptive symmetric score normalisation (AS-norm) against a cohort.

    Each side of a trial is z-normalised by the mean and standard deviation of its cosine
    similarities to the `top_k` most similar cohort embeddings (all of them when None), and
    the two normalised scores are averaged: s' = ((s - m_a) / sd_a + (s - m_b) / sd_b) / 2.
    The cohort holds utterances of speakers that are never enrolled or tested (the training
    speakers)."""

    cohort: np.ndarray  # (C, E) embeddings of cohort utterances
    top_k: int | None = None  # cohort scores used per side (None: all)

    def __post_init__(self) -> None:
        self.cohort = unit_rows(self.cohort)
        if self.top_k is not None and not 2 <= self.top_k <= len(self.cohort):
            raise ValueError(f"top_k={self.top_k} must be between 2 and the cohort size ({len(self.cohort)})")

    def stats(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of each row's cohort similarities, (N,) each."""
        sims = unit_rows(emb) @ self.cohort.T  # (N, C)
        if self.top_k is not None:
            sims = -np.partition(-sims, self.top_k - 1, axis=1)[:, :self.top_k]
        return sims.mean(1), np.maximum(sims.std(1), 1e-6)

    def matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Normalised scores (A, B) of every row of `a` against every row of `b`."""
        (ma, sa), (mb, sb) = self.stats(a), self.stats(b)
        s = unit_rows(a) @ unit_rows(b).T
        return 0.5 * ((s - ma[:, None]) / sa[:, None] + (s - mb[None]) / sb[None])

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Normalised scores (N,) of the row pairs (a[k], b[k])."""
        (ma, sa), (mb, sb) = self.stats(a), self.stats(b)
        s = (unit_rows(a) * unit_rows(b)).sum(1)
        return 0.5 * ((s - ma) / sa + (s - mb) / sb)


def pair_scores(emb: np.ndarray, i: np.ndarray, j: np.ndarray, norm: CohortNorm | None = None) -> np.ndarray:
    """Scores of the trials (emb[i], emb[j]): cosine similarity, cohort-normalised with `norm`."""
    emb = unit_rows(emb)
    return (emb[i] * emb[j]).sum(1) if norm is None else norm.pairs(emb[i], emb[j])


@dataclass
class Identification:
    """One-shot N-way identification results."""

    n_way: int
    accuracy: float
    chance: float
    queries: int
    truth: np.ndarray  # (queries,) speaker of each query (only for N = all speakers)
    predicted: np.ndarray  # (queries,) the enrolled speaker it was identified as


def one_shot_identification(embeddings: np.ndarray, speaker: np.ndarray, n_way: int | None = None, *,
                            rounds: int = 5, seed: int = 0, norm: CohortNorm | None = None) -> Identification:
    """Enrol each speaker with one random utterance, then identify each of its other
    utterances among `n_way` enrolled speakers (None: all), by cosine similarity
    (cohort-normalised with `norm`).

    Repeated over `rounds` random enrolments; the N - 1 other speakers are drawn at random
    for every query. `embeddings` (N, E) need not be normalised."""
    emb = unit_rows(embeddings)
    names, spk = np.unique(np.asarray(speaker), return_inverse=True)
    n_spk = len(names)
    counts = np.bincount(spk)
    if n_spk < 2 or counts.min() < 2:
        raise ValueError("one-shot identification needs 2+ speakers with 2+ utterances each")
    n_way = n_spk if n_way is None else n_way
    if not 2 <= n_way <= n_spk:
        raise ValueError(f"n_way={n_way} must be between 2 and the number of speakers ({n_spk})")
    rng = np.random.default_rng(seed)
    order = np.argsort(spk, kind="stable")
    starts = np.cumsum(counts) - counts
    truth, predicted = [], []
    for _ in range(rounds):
        enrol = order[starts + (rng.random(n_spk) * counts).astype(int)]  # (S,) one utterance each
        query = np.setdiff1d(np.arange(len(spk)), enrol)
        sims = emb[query] @ emb[enrol].T if norm is None else norm.matrix(emb[query], emb[enrol])  # (Q, S)
        keys = rng.random(sims.shape)
        keys[np.arange(len(query)), spk[query]] = 2.0  # the true speaker is always a candidate
        candidates = np.argsort(-keys, axis=1)[:, :n_way]  # (Q, N)
        best = np.take_along_axis(sims, candidates, 1).argmax(1)
        truth.append(spk[query])
        predicted.append(candidates[np.arange(len(query)), best])
    t, p = np.concatenate(truth), np.concatenate(predicted)
    return Identification(n_way, float((t == p).mean()), 1.0 / n_way, len(t), names[t], names[p])
