"""audio.speaker_encoder: the spec read back from a config, embeddings, and the baseline comparison."""

from __future__ import annotations

import numpy as np
import torch

from dlslab.audio.speaker_encoder import EncoderSpec, baseline_comparison, build_encoder, embed_set


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
