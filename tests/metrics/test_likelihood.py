"""Bernoulli NLL, KL, ELBO and the importance-weighted bound, in nats."""

from __future__ import annotations

import math

import torch

from dlslab.metrics.likelihood import (bernoulli_nll, binarize, elbo, fixed_binarization, gaussian_kl,
                                       importance_weighted_ll, vae_loss)
from dlslab.models.vae import MLPVAE


def test_bernoulli_nll_is_in_nats_per_image() -> None:
    x = (torch.rand(3, 1, 28, 28) > 0.5).float()
    assert torch.allclose(bernoulli_nll(torch.zeros_like(x), x), torch.full((3,), 784 * math.log(2)))
    logits = torch.randn(3, 1, 28, 28)
    p = torch.sigmoid(logits)
    manual = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(bernoulli_nll(logits, x), manual, rtol=1e-4)


def test_gaussian_kl_matches_torch_distributions() -> None:
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5, 4), torch.ones(5, 4))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1), rtol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_binarization_is_stochastic_with_the_grey_level_as_probability() -> None:
    x = torch.full((200, 1, 28, 28), 0.3)
    b = binarize(x)
    assert set(b.unique().tolist()) <= {0.0, 1.0} and abs(b.mean().item() - 0.3) < 0.01
    assert torch.equal(fixed_binarization(x, 5), fixed_binarization(x, 5))
    assert not torch.equal(fixed_binarization(x, 5), fixed_binarization(x, 6))


def test_importance_weighted_bound_is_above_the_elbo_and_tightens_with_k() -> None:
    torch.manual_seed(0)
    model = MLPVAE(latent=8, hidden=(64,))
    x = (torch.rand(64, 1, 28, 28) < torch.linspace(0.05, 0.6, 28).view(1, 1, 28, 1)).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):  # a partly trained model, so q(z|x) is not the prior
        loss, _ = vae_loss(model, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    lower = elbo(model, x, samples=20).mean()
    iw_1 = importance_weighted_ll(model, x, k=1).mean()
    iw_100 = importance_weighted_ll(model, x, k=100).mean()
    iw_400 = importance_weighted_ll(model, x, k=400, chunk=100).mean()
    assert iw_100 >= lower and iw_400 >= iw_100 - 0.1
    assert abs(iw_1 - lower) < 0.05 * abs(lower)  # k = 1 is an ELBO estimate
