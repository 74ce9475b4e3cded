"""Missing-data masks and GAIN's hint."""

from __future__ import annotations

import pytest
import torch

from dlslab.errors import UsageError
from dlslab.impute.masks import block_mask, hint, hint_reveal, mcar_mask


def test_hint_reveals_exactly_the_intended_fraction() -> None:
    g = torch.Generator().manual_seed(0)
    m = mcar_mask((200, 30), 0.3, g)
    for rate in (0.0, 0.5, 0.9, 1.0):
        reveal = hint_reveal((200, 30), rate, generator=g)
        assert torch.equal(reveal.sum(1), torch.full((200,), float(round(rate * 30))))
        h = hint(m, reveal)
        assert torch.equal(h[reveal == 1], m[reveal == 1])  # revealed: the true mask
        assert torch.all(h[reveal == 0] == 0.5)  # hidden: no information


def test_masks_have_the_asked_missing_fraction_and_shape() -> None:
    g = torch.Generator().manual_seed(0)
    m = mcar_mask((500, 40), 0.2, g)
    assert 1 - m.mean().item() == pytest.approx(0.2, abs=0.01)
    blocks = block_mask(50, 28, 14, g).view(50, 28, 28)
    assert torch.all((1 - blocks).flatten(1).sum(1) == 14 * 14)
    for img in blocks[:5]:  # the missing pixels form one square
        rows, cols = torch.nonzero(img == 0, as_tuple=True)
        assert rows.max() - rows.min() == 13 and cols.max() - cols.min() == 13


def test_bad_rates_and_blocks_are_usage_errors() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(UsageError, match="missing rate"):
        mcar_mask((3, 3), 1.0, g)
    with pytest.raises(UsageError, match="image_block"):
        block_mask(2, 28, 28, g)
