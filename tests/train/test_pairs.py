"""train.pairs.validation_measure: the criterion of every choice made on validation speakers;
calibrated_cllr and best_join: the weight of a join chosen by it, with its scores s-normalised
part by part (audio.speaker_encoder.cohort_norm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlslab.audio.speakers import SpeakerSet
from dlslab.audio.speaker_encoder import FusedCohortNorm, cohort_norm, joined_embedder
from dlslab.metrics.verification import CohortNorm
from dlslab.train.pairs import CRITERION, JOIN_CRITERION, best_join, calibrated_cllr, validation_measure

PER_SPEAKER = 5


def speaker_set(corpora: list[str]) -> SpeakerSet:
    """PER_SPEAKER utterances of one speaker per entry of `corpora` (features unused here)."""
    n = len(corpora) * PER_SPEAKER
    speaker = torch.arange(len(corpora)).repeat_interleave(PER_SPEAKER)
    return SpeakerSet(torch.zeros(n, 2, 3), torch.full((n,), 3), speaker, [f"{c}/s{k}" for k, c in enumerate(corpora)],
                      corpora, torch.zeros(n, 4), [f"u{k}" for k in range(n)])


def embeddings(speaker: np.ndarray, separated: np.ndarray, seed: int = 0) -> np.ndarray:
    """Unit rows: speakers where `separated` is true sit on their own axis (with a little noise),
    the others all on one shared axis (indistinguishable)."""
    rng = np.random.default_rng(seed)
    dim = int(speaker.max()) + 2
    e = np.zeros((len(speaker), dim))
    for k, s in enumerate(speaker):
        e[k, s if separated[s] else dim - 1] = 1.0
    e += 0.05 * rng.standard_normal(e.shape)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_the_criterion_is_one_shot_accuracy_among_the_real_validation_speakers_only() -> None:
    corpora = ["arabic", "arabic", "librispeech", "synthetic", "synthetic", "synthetic", "synthetic", "synthetic"]
    val = speaker_set(corpora)
    spk = val.speaker.numpy()
    measure = validation_measure(val, seed=0)
    is_real = np.array([c != "synthetic" for c in corpora])
    synthetic_apart = measure(embeddings(spk, ~is_real))  # only the synthetic voices are told apart
    real_apart = measure(embeddings(spk, is_real))  # only the real speakers are told apart
    assert real_apart["val_oneshot"] == 1.0 and synthetic_apart["val_oneshot"] < 0.6
    assert real_apart[CRITERION] > synthetic_apart[CRITERION]
    # the pooled AUC, dominated by the synthetic voices, would have chosen the other way
    assert synthetic_apart["val_auc"] > real_apart["val_auc"]


def test_ties_of_the_accuracy_go_to_the_higher_auc_of_real_pairs() -> None:
    val = speaker_set(["fsdd", "fsdd", "arabic", "synthetic"])
    spk = val.speaker.numpy()
    measure = validation_measure(val, seed=0)

    def embed(overlap: float) -> np.ndarray:
        # speaker 0's utterances agree only at cosine 0.6 (each has its own extra axis); speaker 2
        # sits at cosine `overlap` from speaker 1: one-shot identification stays perfect, but for
        # overlap > 0.6 some different-speaker pairs score above same-speaker ones
        e = np.zeros((len(spk), 4 + PER_SPEAKER))
        for k, s in enumerate(spk):
            if s == 0:
                e[k, 0], e[k, 4 + k] = np.sqrt(0.6), np.sqrt(0.4)
            elif s == 2:
                e[k, 1], e[k, 2] = overlap, np.sqrt(1 - overlap ** 2)
            else:
                e[k, s] = 1.0
        return e

    apart, close = measure(embed(0.0)), measure(embed(0.8))
    assert apart["val_oneshot"] == close["val_oneshot"] == 1.0 and apart["val_auc_real"] > close["val_auc_real"]
    assert apart[CRITERION] > close[CRITERION]


def test_without_two_real_speakers_every_validation_speaker_counts() -> None:
    val = speaker_set(["synthetic", "synthetic", "synthetic", "arabic"])
    spk = val.speaker.numpy()
    measure = validation_measure(val, seed=0)
    assert measure(embeddings(spk, np.ones(4, bool)))["val_oneshot"] == 1.0
    assert measure(embeddings(spk, np.array([True, False, False, True])))["val_oneshot"] < 0.9


def test_calibrated_cllr_is_0_for_separated_scores_1_for_uninformative_ones_and_ignores_the_scale() -> None:
    rng = np.random.default_rng(0)
    same = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    overlapping = rng.normal(size=1000) + 2.0 * same  # targets 2 standard deviations higher
    assert calibrated_cllr(np.where(same, 0.9, 0.1) + 0.01 * rng.normal(size=1000), same) < 0.01
    assert calibrated_cllr(rng.normal(size=1000), same) > 0.99
    assert 0.3 < calibrated_cllr(overlapping, same) < 0.6
    assert calibrated_cllr(5.0 * overlapping - 3.0, same) == pytest.approx(calibrated_cllr(overlapping, same), abs=1e-6)
    # further apart is lower, at any threshold accuracy
    assert calibrated_cllr(overlapping + 1.0 * same, same) < calibrated_cllr(overlapping, same)


def test_best_join_keeps_the_weight_of_the_lowest_validation_cllr_and_the_smaller_on_a_tie() -> None:
    val = speaker_set(["arabic", "arabic", "arabic", "fsdd"])
    spk = val.speaker.numpy()
    # each encoder tells only some speakers apart: the first 0 and 1, the second 2 and 3
    first, second = embeddings(spk, np.array([1, 1, 0, 0], bool)), embeddings(spk, np.array([0, 0, 1, 1], bool), 1)
    parts = [(lambda s, e=e: e[[val.paths.index(p) for p in s.paths]], val) for e in (first, second)]
    measure = validation_measure(val, seed=0)
    w, embed, figures = best_join(*parts, [0.0, 0.5, 1.0, 0.5], val, measure)
    assert w == 0.5 and figures == measure(embed(val))  # the join tells all four apart, each part alone two
    assert figures["val_oneshot"] > max(measure(first)["val_oneshot"], measure(second)["val_oneshot"])
    assert figures[JOIN_CRITERION] < min(measure(first)[JOIN_CRITERION], measure(second)[JOIN_CRITERION])
    w, embed, _ = best_join(*parts, [0.3, 0.0], val, lambda e, norm=None: {JOIN_CRITERION: 0.5})  # every weight ties
    assert w == 0.0 and np.array_equal(embed(val), first.astype(np.float32))


def test_best_join_with_a_cohort_scores_the_join_as_the_study_tests_it_s_normalised_part_by_part() -> None:
    data = speaker_set(["arabic", "arabic", "arabic", "fsdd", "fsdd", "fsdd", "fsdd"])  # speakers 4-6: the cohort
    val, cohort = data.subset(data.names[:4]), data.subset(data.names[4:])
    spk = data.speaker.numpy()
    tables = [embeddings(spk, np.array(separated, bool), k)
              for k, separated in enumerate([[1, 1, 0, 0, 1, 0, 1], [0, 0, 1, 1, 0, 1, 1]])]
    parts = [(lambda s, e=e: e[[data.paths.index(p) for p in s.paths]], data) for e in tables]
    measure = validation_measure(val, seed=0)
    w, embed, figures = best_join(*parts, [0.0, 0.5, 1.0], val, measure, cohort)
    assert w == 0.5 and figures == measure(embed(val), cohort_norm(embed, cohort))
    assert figures != measure(embed(val))  # not the cosine scores


def test_a_join_is_s_normalised_part_by_part_each_part_against_its_own_cohort() -> None:
    data = speaker_set(["arabic", "arabic", "fsdd", "fsdd", "fsdd"])
    rng = np.random.default_rng(3)
    tables = [rng.standard_normal((len(data), dim)) for dim in (4, 6)]  # two encoders, embeddings of unequal size
    tables = [e / np.linalg.norm(e, axis=1, keepdims=True) for e in tables]
    first, second = ((lambda s, e=e: e[[data.paths.index(p) for p in s.paths]]) for e in tables)
    join = joined_embedder([(first, data, 0.3), (second, data, 0.7)])
    query, enrol, cohort = (data.subset(data.names[a:b]) for a, b in ((0, 1), (1, 3), (3, 5)))
    norm = cohort_norm(join, cohort)
    assert isinstance(norm, FusedCohortNorm)
    each = [CohortNorm(e(cohort)) for e in (first, second)]
    expected = 0.3 * each[0].matrix(first(query), first(enrol)) + 0.7 * each[1].matrix(second(query), second(enrol))
    assert np.allclose(norm.matrix(join(query), join(enrol)), expected, atol=1e-5)
    half = len(join(enrol)) // 2
    assert np.allclose(norm.pairs(join(enrol)[:half], join(enrol)[half:2 * half]),
                       np.diag(norm.matrix(join(enrol)[:half], join(enrol)[half:2 * half])), atol=1e-6)
    # the other encoder's scale does not leak in: a join of one part is that part's plain s-norm
    alone = joined_embedder([(first, data, 1.0), (second, data, 0.0)])
    assert np.allclose(cohort_norm(alone, cohort).matrix(first(query), first(enrol)),
                       each[0].matrix(first(query), first(enrol)), atol=1e-6)
    assert isinstance(cohort_norm(first, cohort), CohortNorm)  # a single encoder: the plain s-norm
