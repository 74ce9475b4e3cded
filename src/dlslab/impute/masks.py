"""Missing-data masks (1 = observed, 0 = missing) and GAIN's hint.

`mcar_mask`: every entry missing completely at random with probability `rate`.
`block_mask`: one missing square per image, at a uniformly random place.
"""

from __future__ import annotations

import torch

from dlslab.errors import UsageError


def mcar_mask(shape: tuple[int, ...], rate: float, generator: torch.Generator) -> torch.Tensor:
    """Observed-entry mask (1 = observed) with each entry missing with probability `rate`."""
    if not 0.0 <= rate < 1.0:
        raise UsageError(f"missing rate {rate} must be in [0, 1)")
    return (torch.rand(shape, generator=generator) >= rate).float()


def block_mask(n: int, side: int, block: int, generator: torch.Generator) -> torch.Tensor:
    """(n, side*side) observed mask with one missing `block` x `block` square per image, at a
    uniformly random position inside the image."""
    if not 0 < block < side:
        raise UsageError(f"image_block={block} must be between 1 and the image side {side}")
    top = torch.randint(0, side - block + 1, (n,), generator=generator)
    left = torch.randint(0, side - block + 1, (n,), generator=generator)
    rows = torch.arange(side)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + block)  # (n, side)
    in_cols = (rows[None] >= left[:, None]) & (rows[None] < left[:, None] + block)
    missing = in_rows[:, :, None] & in_cols[:, None, :]  # (n, side, side)
    return (~missing).flatten(1).float()


def hint_reveal(shape: tuple[int, int], rate: float, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """B: exactly round(rate * d) revealed entries (1) in every row, at random places."""
    n, d = shape
    k = round(rate * d)
    scores = torch.rand(shape, device=device, generator=generator)
    return torch.zeros(shape, device=device).scatter_(1, scores.topk(k, dim=1, sorted=False).indices, 1.0)


def hint(m: torch.Tensor, reveal: torch.Tensor) -> torch.Tensor:
    """The paper's hint H = B * M + 0.5 (1 - B): the mask where revealed, 0.5 elsewhere."""
    return reveal * m + 0.5 * (1 - reveal)
