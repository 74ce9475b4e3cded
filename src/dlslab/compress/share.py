"""Weight sharing by k-means with centroid fine-tuning (trained quantisation, as in Deep
Compression, Han et al., 2016).

Each layer's non-zero weights are clustered into 2**bits centroids by one-dimensional
k-means with linear initialisation (spread over [min, max] of each sign, which keeps the
rare large weights that matter most). The layer then computes `weight = table[codes]`, where `table`
is a fixed zero followed by the trainable centroids, so the gradient that reaches a centroid
is the sum of its weights' gradients, and pruned weights stay exactly zero.
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.compress.layers import Parametrization, attach, bake, bias_layers, weight_layers


def linear_init(values: torch.Tensor, k: int) -> torch.Tensor:
    """k centroids spread evenly over the negative and the positive values separately (in
    proportion to their counts): after pruning there are no weights near zero, and a single
    linear spread would waste the centroids that fall in that gap."""
    neg, pos = values[values < 0], values[values >= 0]
    k_neg = min(max(round(k * len(neg) / len(values)), int(len(neg) > 0)), k - int(len(pos) > 0))
    parts = []
    for side, n in ((neg, k_neg), (pos, k - k_neg)):
        if n > 0:
            parts.append(torch.linspace(float(side.min()), float(side.max()), n, device=values.device))
    return torch.cat(parts).sort().values


def kmeans_1d(values: torch.Tensor, k: int, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted centroids (k,), code per value) by Lloyd's algorithm from `linear_init`. In one
    dimension the nearest centroid is found by bucketing against the midpoints."""
    values = values.detach().flatten().float()
    k = max(1, min(k, values.numel()))
    centroids = linear_init(values, k)
    for _ in range(iters):
        codes = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros(k, device=values.device).index_add_(0, codes, values)
        counts = torch.bincount(codes, minlength=k).float()
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.equal(updated, centroids):
            break
        centroids = updated.sort().values
    codes = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
    return centroids, codes


class SharedWeight(Parametrization):
    """weight = cat([0], centroids)[codes]; code 0 is a pruned (zero) weight."""

    def __init__(self, codes: torch.Tensor, centroids: torch.Tensor):
        super().__init__()
        self.register_buffer("codes", codes)
        self.register_buffer("zero", torch.zeros(1, device=centroids.device))
        self.centroids = nn.Parameter(centroids.clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.zero, self.centroids])[self.codes]


def shared_weight(w: torch.Tensor, bits: int) -> SharedWeight:
    """Cluster the non-zero entries of `w` into 2**bits centroids."""
    nonzero = w != 0
    centroids, codes = kmeans_1d(w[nonzero], 2 ** bits)
    full = torch.zeros(w.shape, dtype=torch.long, device=w.device)
    full[nonzero] = codes + 1
    return SharedWeight(full, centroids)


def share_weights(model: nn.Module, bits: dict[str, int], bias_bits: int | None = None) -> nn.Module:
    """Bake earlier parametrizations, then share the weights of each layer in `bits` (layer ->
    bits) and, with `bias_bits`, every bias. Only centroids (and unshared tensors) train."""
    bake(model)
    layers = weight_layers(model)
    for name, b in bits.items():
        attach(layers[name], "weight", shared_weight(layers[name].weight.detach(), b), freeze_original=True)
    if bias_bits is not None:
        for m in bias_layers(model).values():
            attach(m, "bias", shared_weight(m.bias.detach(), bias_bits), freeze_original=True)
    return model
