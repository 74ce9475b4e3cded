"""The row LSTM: causal teacher forcing, and completions that keep the given rows."""

from __future__ import annotations

import torch

from dlslab.models.pixel_lstm import RowLSTM


def test_teacher_forcing_output_t_sees_only_rows_before_t() -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=2)
    x = (torch.rand(2, 28, 28) > 0.5).float()
    changed = x.clone()
    changed[:, 10] = 1 - changed[:, 10]
    a, b = model(x), model(changed)
    assert torch.equal(a[:, :11], b[:, :11])  # rows 0..10 are predicted before row 10 is read
    assert not torch.allclose(a[:, 11:], b[:, 11:])


def test_sampled_lower_half_keeps_the_given_upper_half_untouched() -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=1)
    upper = torch.rand(5, 14, 28)
    kept = upper.clone()
    out = model.complete(upper, 14, sample=True, generator=torch.Generator().manual_seed(1))
    assert out.shape == (5, 28, 28)
    assert torch.equal(out[:, :14], kept) and torch.equal(upper, kept)
    assert set(out[:, 14:].unique().tolist()) <= {0.0, 1.0}
    again = model.complete(upper, 14, sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # a seeded generator reproduces the samples


def test_batched_completion_equals_one_image_at_a_time() -> None:
    torch.manual_seed(0)
    model = RowLSTM(hidden=16, layers=2)
    upper = (torch.rand(4, 14, 28) > 0.5).float()
    batched = model.complete(upper, 14, sample=False)
    single = torch.cat([model.complete(upper[i:i + 1], 14, sample=False) for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-5)
    assert 0 < batched[:, 14:].min() and batched[:, 14:].max() < 1  # probabilities, fed back as they are
