"""Verification (ROC-AUC, EER, threshold) and one-shot identification metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dlslab.metrics.verification import (CohortNorm, accuracy_at, best_threshold, equal_error_rate,
                                         one_shot_identification, pair_scores, roc_auc, roc_curve,
                                         verification_pairs)


def test_auc_matches_sklearn_and_its_extremes() -> None:
    rng = np.random.default_rng(0)
    same = rng.random(500) < 0.5
    scores = rng.normal(size=500) + same * 1.0
    scores[:50] = np.round(scores[:50], 1)  # ties count half
    assert roc_auc(scores, same) == pytest.approx(roc_auc_score(same, scores))
    assert roc_auc(same * 1.0, same) == 1.0 and roc_auc(-1.0 * same, same) == 0.0


def test_eer_zero_when_separable_and_half_when_random() -> None:
    same = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    eer, thr = equal_error_rate(np.r_[np.linspace(0.6, 1, 100), np.linspace(-1, 0.5, 100)], same)
    assert eer == 0.0 and 0.5 < thr <= 0.6
    rng = np.random.default_rng(1)
    eer, _ = equal_error_rate(rng.random(20000), rng.random(20000) < 0.5)
    assert eer == pytest.approx(0.5, abs=0.02)
    # a known case: scores 4 3 2 1 with labels 1 0 1 0 -> the rates cross at 0.5
    assert equal_error_rate(np.array([4, 3, 2, 1.0]), np.array([1, 0, 1, 0], bool))[0] == pytest.approx(0.5)


def test_roc_curve_ends_at_one_one() -> None:
    fpr, tpr, thr = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool))
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(thr) < 0)


def test_threshold_chosen_on_validation_transfers() -> None:
    rng = np.random.default_rng(2)
    def trials(n: int) -> tuple[np.ndarray, np.ndarray]:
        same = rng.random(n) < 0.5
        return rng.normal(size=n) * 0.1 + np.where(same, 0.7, 0.2), same
    val_s, val_y = trials(400)
    thr = best_threshold(val_s, val_y)
    assert 0.3 < thr < 0.6
    assert accuracy_at(*trials(400), thr) > 0.95
    assert accuracy_at(val_s, val_y, 10.0) == 0.5  # rejecting everything is chance (balanced accuracy)


def test_verification_pairs_are_balanced_distinct_and_never_self() -> None:
    speaker = np.repeat(np.arange(6), 5)
    i, j, same = verification_pairs(speaker, max_pairs=40, seed=0)
    assert same.sum() == (~same).sum() == 20
    assert np.all(i != j) and np.all((speaker[i] == speaker[j]) == same)
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i)


def test_one_shot_identification_perfect_random_and_chance() -> None:
    rng = np.random.default_rng(3)
    speaker = np.repeat(np.arange(20), 6)
    clean = np.eye(20)[speaker] + 0.05 * rng.normal(size=(120, 20))
    for n in (5, 10, None):
        res = one_shot_identification(clean, speaker, n, rounds=3, seed=0)
        assert res.accuracy == 1.0 and res.chance == 1 / (n or 20)
        assert res.queries == 3 * (120 - 20)
    noise = rng.normal(size=(120, 16))
    res = one_shot_identification(noise, speaker, 5, rounds=20, seed=0)
    assert abs(res.accuracy - 0.2) < 0.05
    with pytest.raises(ValueError, match="n_way"):
        one_shot_identification(clean, speaker, 21)


def test_cohort_norm_is_symmetric_and_keeps_a_separated_gallery_perfect() -> None:
    rng = np.random.default_rng(4)
    speaker = np.repeat(np.arange(12), 5)
    clean = np.eye(24)[speaker] + 0.05 * rng.normal(size=(60, 24))
    cohort = np.eye(24)[12 + rng.integers(0, 12, 80)] + 0.05 * rng.normal(size=(80, 24))  # other speakers
    for top_k in (None, 10):
        norm = CohortNorm(cohort, top_k)
        a, b = clean[:7], clean[20:31]
        assert np.allclose(norm.matrix(a, b), norm.matrix(b, a).T)
        assert np.allclose(norm.pairs(a, b[:7]), norm.pairs(b[:7], a))
        assert np.allclose(norm.pairs(a, b[:7]), np.diag(norm.matrix(a, b[:7])))
        assert one_shot_identification(clean, speaker, None, rounds=3, seed=0, norm=norm).accuracy == 1.0
        i, j, same = verification_pairs(speaker, seed=0)
        assert roc_auc(pair_scores(clean, i, j, norm), same) == 1.0
    with pytest.raises(ValueError, match="top_k"):
        CohortNorm(cohort, 81)


def test_cohort_norm_discounts_an_enrolment_that_resembles_everybody() -> None:
    def unit(v: list[float]) -> np.ndarray:
        return np.asarray(v) / np.linalg.norm(v)

    hub, other = unit([1, 0, 0]), unit([0, 0.8, 0.6])  # enrolments of speakers 0 and 1
    query = unit([0.6, 0, 0.8])  # speaker 1, yet closer to the hub in raw cosine
    rng = np.random.default_rng(5)
    cohort = np.c_[np.ones(50), 0.3 * rng.normal(size=(50, 2))]  # other speakers, all near the hub
    raw = query @ np.stack([hub, other]).T
    normed = CohortNorm(cohort).matrix(query[None], np.stack([hub, other]))[0]
    assert raw.argmax() == 0 and normed.argmax() == 1
    emb = np.stack([hub, other, query])
    assert pair_scores(emb, np.array([2]), np.array([0]))[0] == pytest.approx(raw[0])
    assert pair_scores(emb, np.array([2]), np.array([0]), CohortNorm(cohort))[0] == pytest.approx(normed[0])
