"""The twin encoder: tied weights, cosine of identical inputs, length handling, mining, losses."""

from __future__ import annotations

import torch

from dlslab.models.siamese import (SiameseNet, SpeakerIndex, contrastive_loss, hardest_negatives,
                                   sample_pairs, triplet_loss)


def _inputs(b: int = 4, t: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(b, 40, t), torch.ones(b, t)


def test_twins_share_one_parameter_set() -> None:
    torch.manual_seed(0)
    model = SiameseNet(channels=16, embed_dim=8).eval()
    x1, m1 = _inputs()
    x2, m2 = _inputs()
    assert {id(p) for p in model.parameters()} == {id(p) for p in model.encoder.parameters()}
    before1, before2 = model.embed(x1, m1), model.embed(x2, m2)
    sim_before = model(x1, m1, x2, m2)
    with torch.no_grad():
        model.encoder.project.weight.add_(0.5 * torch.randn_like(model.encoder.project.weight))
    after1, after2 = model.embed(x1, m1), model.embed(x2, m2)
    assert not torch.allclose(before1, after1) and not torch.allclose(before2, after2)
    assert not torch.allclose(sim_before, model(x1, m1, x2, m2))
    # swapping the inputs gives the same similarities: one encoder, applied to both
    assert torch.allclose(model(x1, m1, x2, m2), model(x2, m2, x1, m1), atol=1e-6)


def test_identical_inputs_have_cosine_one_and_unit_embeddings() -> None:
    torch.manual_seed(0)
    model = SiameseNet(channels=16, embed_dim=8).eval()
    x, m = _inputs()
    assert torch.allclose(model(x, m, x.clone(), m.clone()), torch.ones(len(x)), atol=1e-5)
    assert torch.allclose(model.embed(x, m).norm(dim=1), torch.ones(len(x)), atol=1e-5)


def test_padding_does_not_change_the_embedding() -> None:
    torch.manual_seed(0)
    model = SiameseNet(channels=16, embed_dim=8).eval()
    x, m = _inputs(2, 25)
    padded = torch.cat([x, torch.zeros(2, 40, 15)], dim=2)
    mask = torch.cat([m, torch.zeros(2, 15)], dim=1)
    # the time-delay layers see zeros beyond the end either way; pooling ignores padded frames
    assert torch.allclose(model.embed(x, m), model.embed(padded, mask), atol=1e-5)
    # an utterance whose second half is different does get a different embedding
    longer = torch.cat([x, torch.randn(2, 40, 15)], dim=2)
    assert not torch.allclose(model.embed(x, m), model.embed(longer, torch.ones(2, 40)), atol=1e-3)


def test_pair_sampler_is_balanced_and_never_pairs_an_utterance_with_itself() -> None:
    speaker = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3])
    index = SpeakerIndex(speaker)
    g = torch.Generator().manual_seed(0)
    anchors = torch.arange(len(speaker)).repeat(50)
    first, second, same = sample_pairs(index, anchors, g)
    assert same.sum() == (~same).sum() == len(anchors)
    assert (first != second).all()
    assert (speaker[first] == speaker[second]).eq(same).all()
    # every other utterance of the speaker is drawn as a positive (not only one)
    pos = second[same][anchors == 7]
    assert set(pos.tolist()) == {8, 9, 10}


def test_sampler_needs_two_utterances_per_speaker() -> None:
    import pytest

    with pytest.raises(ValueError, match="at least 2"):
        SpeakerIndex(torch.tensor([0, 0, 1]))


def test_hardest_negative_is_the_most_similar_other_speaker() -> None:
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    speaker = torch.tensor([0, 0, 1, 2])
    hard = hardest_negatives(emb, speaker, 2)
    assert hard.tolist() == [2, 2]  # row 1 is the same speaker, so row 2 is the hardest


def test_losses_fall_as_speakers_separate() -> None:
    a = torch.tensor([[1.0, 0.0]])
    good_p, good_n = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    bad_p, bad_n = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    assert triplet_loss(a, good_p, good_n) == 0 and triplet_loss(a, bad_p, bad_n) > 1
    sims, same = torch.tensor([1.0, 0.0]), torch.tensor([1, 0])
    assert contrastive_loss(sims, same) == 0
    assert contrastive_loss(torch.tensor([0.0, 1.0]), same) > 0.5  # (1 + 0.7^2) / 2


def test_ensemble_score_is_the_mean_of_the_members_cosines() -> None:
    from dlslab.models.siamese import EncoderEnsemble

    torch.manual_seed(0)
    members = [SiameseNet(channels=16, embed_dim=8).eval() for _ in range(3)]
    ensemble = EncoderEnsemble(members).eval()
    x1, m1 = _inputs()
    x2, m2 = _inputs()
    m2[0, 20:] = 0
    expected = torch.stack([m(x1, m1, x2, m2) for m in members]).mean(0)
    assert torch.allclose(ensemble(x1, m1, x2, m2), expected, atol=1e-6)
    assert torch.allclose(ensemble.embed(x1, m1).norm(dim=1), torch.ones(len(x1)), atol=1e-5)
    assert not torch.allclose(members[0](x1, m1, x2, m2), expected)  # the members do differ


def test_stats_pooling_ignores_padded_frames() -> None:
    from dlslab.models.siamese import stats_pool

    x = torch.tensor([[[1.0, 3.0, 100.0, -50.0]]])  # (1, 1, 4): the last two frames are padding
    pooled = stats_pool(x, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    assert torch.allclose(pooled, torch.tensor([[2.0, 1.0]]))  # mean 2, std 1 of the valid frames
