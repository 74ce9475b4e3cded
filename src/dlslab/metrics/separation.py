"""How well a set of embeddings separates its classes, in four numbers.

- `silhouette`: mean over points of (b - a) / max(a, b), a = mean distance to its own class,
  b = to the nearest other class (-1..1; 0 = classes overlap). scikit-learn, on a sample.
- `knn_accuracy`: k-nearest-neighbour accuracy, cross-validated over stratified folds
  (1/classes = chance): are neighbours in this space of the same class?
- `linear_probe_accuracy`: a softmax-regression probe trained (through `train.engine.fit`) on
  part of the points and tested on the rest: are the classes linearly separable?
- `fisher_ratio`: trace of the between-class scatter over trace of the within-class scatter
  (0 = class means coincide); invariant to scaling the whole space.

Inputs are (N, D) float tensors and (N,) int64 labels; everything stays in torch except the
silhouette. All four are deterministic for a given `seed`.
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.data.splits import stratified_indices
from dlslab.errors import UsageError
from dlslab.train.engine import fit, predict


def _check(z: torch.Tensor, y: torch.Tensor) -> None:
    if z.dim() != 2 or y.dim() != 1 or len(z) != len(y):
        raise UsageError(f"separation metrics need embeddings (N, D) and labels (N,); got {tuple(z.shape)} "
                         f"and {tuple(y.shape)}")
    if len(torch.unique(y)) < 2:
        raise UsageError("separation metrics need at least two classes among the labels")


def fisher_ratio(z: torch.Tensor, y: torch.Tensor) -> float:
    """tr(S_between) / tr(S_within) with S_b = sum_c n_c (mu_c - mu)(mu_c - mu)^T and
    S_w = sum_i (z_i - mu_{y_i})(z_i - mu_{y_i})^T."""
    _check(z, y)
    z = z.double()
    classes, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    means = torch.zeros(len(classes), z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, inverse, z)
    means /= counts.unsqueeze(1)  # (C, D)
    between = (counts * ((means - z.mean(0)) ** 2).sum(1)).sum()
    within = ((z - means[inverse]) ** 2).sum()
    return float(between / within) if within > 0 else float("inf")


def silhouette(z: torch.Tensor, y: torch.Tensor, *, max_points: int = 4000, seed: int = 0) -> float:
    """Mean silhouette (Euclidean) on a stratified sample of at most `max_points` points."""
    from sklearn.metrics import silhouette_score

    _check(z, y)
    if len(y) > max_points:
        _, keep = stratified_indices(y.cpu(), max_points / len(y), seed)
        z, y = z[keep.to(z.device)], y[keep.to(y.device)]
    return float(silhouette_score(z.double().cpu().numpy(), y.cpu().numpy(), metric="euclidean"))


def fold_ids(y: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """A stratified fold number (0..folds-1) for each point, seeded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.empty(len(y), dtype=torch.long)
    yc = y.cpu()
    for c in torch.unique(yc):
        members = torch.nonzero(yc == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        ids[members] = torch.arange(len(members)) % folds
    return ids.to(y.device)


@torch.no_grad()
def knn_accuracy(z: torch.Tensor, y: torch.Tensor, *, k: int = 5, folds: int = 5, seed: int = 0,
                 chunk: int = 1024) -> float:
    """Cross-validated k-NN accuracy (majority vote, ties to the nearest neighbour's class)."""
    _check(z, y)
    if folds < 2 or k < 1:
        raise UsageError(f"knn_accuracy: need folds >= 2 and k >= 1 (got folds={folds}, k={k})")
    z = z.float()
    ids = fold_ids(y, folds, seed)
    classes = int(y.max()) + 1
    correct = 0
    for f in range(folds):
        train, test = ids != f, ids == f
        zt, yt = z[train], y[train]
        for q, yq in zip(z[test].split(chunk), y[test].split(chunk)):
            near = torch.cdist(q, zt).topk(min(k, len(yt)), largest=False).indices  # (b, k), nearest first
            votes = nn.functional.one_hot(yt[near], classes).float()  # (b, k, C)
            votes[:, 0] += 0.5  # breaks ties towards the nearest neighbour
            correct += int((votes.sum(1).argmax(1) == yq).sum())
    return correct / len(y)


def linear_probe_accuracy(z: torch.Tensor, y: torch.Tensor, *, test_fraction: float = 0.25, epochs: int = 30,
                          lr: float = 1e-2, seed: int = 0) -> float:
    """Test accuracy of a linear softmax classifier on standardised features, trained with
    Adam on a stratified (1 - test_fraction) of the points."""
    _check(z, y)
    train, test = stratified_indices(y.cpu(), test_fraction, seed)
    train, test = train.to(z.device), test.to(z.device)
    z = z.float()
    mean, std = z[train].mean(0), z[train].std(0).clamp_min(1e-6)
    zs = (z - mean) / std
    torch.manual_seed(seed)
    probe = nn.Linear(z.shape[1], int(y.max()) + 1).to(z.device)
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=1e-4)
    fit(probe, (zs[train], y[train]), lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb),
        optimizer=opt, epochs=epochs, batch_size=256, seed=seed, progress=False, verbose=False)
    return float((predict(probe, zs[test]).argmax(1) == y[test]).float().mean())
