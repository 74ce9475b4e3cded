"""Splits and subsets: the one place that decides which examples a run trains, tunes and
tests on. Every rule is a pure function of (labels or size, fraction or count, seed), so a run
folder's config names its data exactly.
"""

from __future__ import annotations

import torch


def random_subset(n: int, k: int, seed: int) -> torch.Tensor:
    """`k` of the indices `0..n-1` (all of them when k >= n), a seeded random choice in random order."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[: min(k, n)]


def split_validation(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
                     ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A seeded, class-stratified hold-out: ((train_x, train_y), (val_x, val_y))."""
    idx_train, idx_val = stratified_indices(y, fraction, seed)
    return (x[idx_train], y[idx_train]), (x[idx_val], y[idx_val])


def stratified_indices(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (rest, chosen) where `chosen` holds `fraction` of each class, seeded."""
    g = torch.Generator().manual_seed(seed)
    chosen, rest = [], []
    for c in torch.unique(y):
        members = torch.nonzero(y == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        k = max(1, int(round(fraction * len(members))))
        chosen.append(members[:k])
        rest.append(members[k:])
    return torch.cat(rest).sort().values, torch.cat(chosen).sort().values


def subset_fraction(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded, stratified `fraction` of (x, y) (e.g. 1% of CIFAR-10's training set)."""
    if fraction >= 1.0:
        return x, y
    _, idx = stratified_indices(y, fraction, seed)
    return x[idx], y[idx]
