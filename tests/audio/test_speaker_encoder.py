"""audio.speaker_encoder: the spec read back from a config, embeddings, and the baseline comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlslab.audio.speaker_encoder import (EncoderSpec, baseline_comparison, build_encoder, cached_embedder, embed_set,
                                          joined_embedder)
from dlslab.audio.speakers import SpeakerSet
from dlslab.errors import UsageError


def test_spec_of_a_config_mapping_keeps_only_its_fields() -> None:
    spec = EncoderSpec.of({"channels": 48, "dilations": [1, 2], "epochs": 8, "features": "stft"})
    assert spec == EncoderSpec(channels=48, dilations=(1, 2), features="stft")
    assert spec.max_frames == int(4.0 * 16000 / 256) + 1


def test_embeddings_are_unit_length_and_ignore_padding() -> None:
    torch.manual_seed(0)
    model = build_encoder(EncoderSpec(channels=16, embed_dim=8), 40)
    frames = torch.randn(3, 40, 30)
    padded = frames.clone()
    padded[1, :, 20:] = 99.0  # beyond utterance 1's length: must not count
    lengths = torch.tensor([30, 20, 25])
    a, b = embed_set(model, frames, lengths), embed_set(model, padded, lengths)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5) and np.allclose(a, b, atol=1e-5)


def test_baseline_comparison_counts_lower_eer_as_better() -> None:
    def result(auc: float, eer: float, acc: float) -> dict:
        return {"g": {"auc": auc, "eer": eer, "acc_at_val_threshold": acc, "threshold": 0.5,
                      "oneshot_all": {"n_way": 4, "acc": acc, "chance": 0.25}}}

    results = {"m": result(0.9, 0.1, 0.6), "b1": result(0.8, 0.2, 0.7), "b2": result(0.95, 0.3, 0.5)}
    won = {key: w for _, key, w in baseline_comparison(results, "m", ["b1", "b2"])}
    assert won == {"auc": False, "eer": True, "acc_at_val_threshold": False, "oneshot_all": False}


def _speakers(n_features: int, frames: int, seed: int) -> SpeakerSet:
    """6 utterances of 3 speakers (`n_features` rows of random frames), in one fixed order."""
    g = torch.Generator().manual_seed(seed)
    return SpeakerSet(torch.randn(6, n_features, frames, generator=g), torch.tensor([frames] * 3 + [frames - 5] * 3),
                      torch.tensor([0, 0, 1, 1, 2, 2]), ["a", "b", "c"], ["x", "x", "y"], torch.zeros(6, 20),
                      [f"u{k}.wav" for k in range(6)])


def test_a_join_is_unit_length_its_cosine_is_the_weighted_mean_and_weight_0_is_the_other_encoder() -> None:
    torch.manual_seed(0)
    logmel, mel = _speakers(40, 30, 0), _speakers(24, 50, 1)  # the same utterances, two front ends
    first = cached_embedder(build_encoder(EncoderSpec(channels=16, embed_dim=8), 40).eval())
    second = cached_embedder(build_encoder(EncoderSpec(channels=16, embed_dim=12), 24).eval())
    e1, e2 = first(logmel), second(mel)
    joined = joined_embedder([(first, logmel, 0.3), (second, mel, 0.7)])(mel)  # any of the sets may be asked
    assert joined.shape == (6, 20) and np.allclose(np.linalg.norm(joined, axis=1), 1.0, atol=1e-5)
    assert np.allclose(joined @ joined.T, 0.3 * e1 @ e1.T + 0.7 * e2 @ e2.T, atol=1e-5)
    assert np.array_equal(joined_embedder([(first, logmel, 0.0), (second, mel, 2.0)])(logmel), e2)
    sub = logmel.subset(["b", "c"])  # a set of some speakers gets their utterances only
    assert np.allclose(joined_embedder([(first, logmel, 1.0), (second, mel, 1.0)])(sub)[:, :8] * np.sqrt(2), first(sub),
                       atol=1e-6)
    with pytest.raises(UsageError):
        joined_embedder([(first, logmel, 0.0), (second, mel, 0.0)])
    other = _speakers(24, 50, 1)
    other.paths = other.paths[::-1]
    with pytest.raises(UsageError, match="same utterances"):
        joined_embedder([(first, logmel, 1.0), (second, other, 1.0)])(logmel)
