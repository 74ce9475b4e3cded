"""Likelihoods of binary images in nats: Bernoulli NLL, the VAE's ELBO and the
importance-weighted bound (IWAE, Burda et al. 2016), and the binarizations they assume.

Conventions (those of the published MNIST numbers): images are binarized stochastically,
each pixel ~ Bernoulli(grey level). Training sees a fresh binarization every batch
("dynamic"); the test set is binarized once with a fixed seed, so every model is scored on
the same binary images. Every quantity is per image, summed over its 784 pixels, in nats.

The VAE functions need only `model.encode(x) -> (mu, logvar)` and `model.decode(z) -> logits`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dlslab.data.splits import random_subset
from dlslab.seeding import derive


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization: each pixel of `x` (grey levels in [0, 1]) becomes 1 with
    probability equal to its value. With a seeded CPU `generator` the result is reproducible."""
    u = torch.rand(x.shape, generator=generator, device="cpu" if generator is not None else x.device)
    return (u.to(x.device) < x).to(x.dtype)


def fixed_binarization(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The test set's one fixed stochastic binarization (seeded)."""
    return binarize(x, torch.Generator().manual_seed(seed))


def binarized_splits(train_grey: torch.Tensor, test_grey: torch.Tensor, *, seed: int, val_size: int,
                     train_size: int = 0, test_size: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, val, test) from grey-level images in [0, 1]: a seeded validation hold-out of
    `val_size` images binarized once, the rest kept grey for dynamic binarization (capped at
    `train_size` when it is > 0), and the test set's fixed binarization (first `test_size`)."""
    perm = random_subset(len(train_grey), len(train_grey), derive(seed, "validation")).to(train_grey.device)
    val = fixed_binarization(train_grey[perm[:val_size]], derive(seed, "binarize", "validation"))
    train_idx = perm[val_size:]
    if train_size:
        train_idx = train_idx[:train_size]
    test = fixed_binarization(test_grey, derive(seed, "binarize", "test"))[:test_size]
    return train_grey[train_idx], val, test


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats per image, for Bernoulli pixels with `logits`: (B, ...) -> (B,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) in nats per row: (B, D) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def vae_loss(model: nn.Module, x: torch.Tensor, beta: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The (beta-weighted) negative ELBO averaged over the batch, for training, with its
    reconstruction and KL parts. beta = 1 is the ELBO; beta > 1 is the beta-VAE objective."""
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    rec = bernoulli_nll(model.decode(z), x).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return rec + beta * kl, {"rec": rec.detach(), "kl": kl.detach()}


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def elbo(model: nn.Module, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) in nats per image (B,), with the
    expectation estimated from `samples` draws and the KL in closed form."""
    mu, logvar = model.encode(x)
    rec = torch.zeros(len(x), device=x.device)
    for _ in range(samples):
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        rec += bernoulli_nll(model.decode(z), x)
    return -(rec / samples) - gaussian_kl(mu, logvar)


@torch.no_grad()
def importance_weighted_ll(model: nn.Module, x: torch.Tensor, k: int = 100, chunk: int = 50) -> torch.Tensor:
    """log p(x) estimated as log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), in nats
    per image (B,). A lower bound on log p(x) that is >= the ELBO in expectation and tightens
    as k grows; with k >= 100 it is the usual "test NLL" of a VAE (NLL = -this value).
    The k samples are drawn `chunk` at a time, each chunk as one batched decode."""
    mu, logvar = model.encode(x)  # (B, D)
    b, d = mu.shape
    log_w = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        eps = torch.randn(m, b, d, device=x.device)
        z = mu + (0.5 * logvar).exp() * eps  # (m, B, D)
        logits = model.decode(z.reshape(m * b, d))  # (m*B, 1, H, W)
        log_px = -bernoulli_nll(logits, x.repeat(m, *([1] * (x.dim() - 1)))).view(m, b)
        log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))  # (m, B)
        log_qz = _log_normal(z, mu, logvar)  # (m, B)
        log_w.append(log_px + log_pz - log_qz)
    return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)  # (B,)


def evaluate_in_batches(fn, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Apply a per-image function `fn(xb) -> (b,)` over `x` in batches; (N,) on x's device."""
    return torch.cat([fn(xb) for xb in x.split(batch_size)])
