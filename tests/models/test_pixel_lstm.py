"""The row LSTM: causal teacher forcing (across rows and, with the head, within a row), and
completions that keep the given rows."""

from __future__ import annotations

import torch

import pytest

from dlslab.models.pixel_lstm import RowLSTM


@pytest.mark.parametrize("head_hidden", [0, 32])
def test_teacher_forcing_output_t_sees_only_rows_before_t(head_hidden: int) -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=2, head_hidden=head_hidden)
    x = (torch.rand(2, 28, 28) > 0.5).float()
    changed = x.clone()
    changed[:, 10] = 1 - changed[:, 10]
    a, b = model(x), model(changed)
    # rows 0..10 are predicted before row 10 is read (row 10's own pixels, by the head: below)
    assert torch.equal(a[:, :10], b[:, :10]) and (head_hidden or torch.equal(a[:, 10], b[:, 10]))
    assert not torch.allclose(a[:, 11:], b[:, 11:])


def test_within_a_row_pixel_j_sees_only_the_pixels_left_of_it() -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=1, head_hidden=40)
    x = (torch.rand(2, 28, 28) > 0.5).float()
    changed = x.clone()
    changed[:, 10, 15] = 1 - changed[:, 10, 15]
    a, b = model(x), model(changed)
    assert torch.equal(a[:, :10], b[:, :10]) and torch.equal(a[:, 10, :16], b[:, 10, :16])
    assert not torch.allclose(a[:, 10, 16:], b[:, 10, 16:])  # pixels to its right see it


@pytest.mark.parametrize("head_hidden", [0, 32])
def test_sampled_lower_half_keeps_the_given_upper_half_untouched(head_hidden: int) -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=1, head_hidden=head_hidden)
    upper = torch.rand(5, 14, 28)
    kept = upper.clone()
    out = model.complete(upper, 14, sample=True, generator=torch.Generator().manual_seed(1))
    assert out.shape == (5, 28, 28)
    assert torch.equal(out[:, :14], kept) and torch.equal(upper, kept)
    assert set(out[:, 14:].unique().tolist()) <= {0.0, 1.0}
    again = model.complete(upper, 14, sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # a seeded generator reproduces the samples


def test_written_probabilities_are_the_teacher_forced_ones() -> None:
    """The probability recorded for each written pixel is what teacher forcing on the finished
    image gives: writing and scoring are the same model."""
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=1, head_hidden=32)
    upper = (torch.rand(3, 14, 28) > 0.5).float()
    written, probs = model.write(upper, 14, sample=True, generator=torch.Generator().manual_seed(2))
    forced = torch.sigmoid(model(torch.cat([upper, written], 1)))[:, 14:]
    assert torch.allclose(probs, forced, atol=1e-5)


def test_expected_lower_half_averages_the_sampled_probabilities() -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=1, head_hidden=32)
    upper = (torch.rand(3, 14, 28) > 0.5).float()
    mean, samples = model.expected_lower(upper, 14, 3, torch.Generator().manual_seed(3))
    assert mean.shape == (3, 14, 28) and samples.shape == (3, 3, 14, 28)
    assert 0 < mean.min() and mean.max() < 1
    gen = torch.Generator().manual_seed(3)
    by_hand = torch.stack([model.write(upper, 14, sample=True, generator=gen)[1] for _ in range(3)]).mean(0)
    assert torch.allclose(mean, by_hand)


@pytest.mark.parametrize("head_hidden", [0, 32])
def test_batched_completion_equals_one_image_at_a_time(head_hidden: int) -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=2, head_hidden=head_hidden)
    upper = (torch.rand(4, 14, 28) > 0.5).float()
    batched = model.complete(upper, 14, sample=False)
    single = torch.cat([model.complete(upper[i:i + 1], 14, sample=False) for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-5)
    assert 0 < batched[:, 14:].min() and batched[:, 14:].max() < 1  # probabilities, fed back as they are
