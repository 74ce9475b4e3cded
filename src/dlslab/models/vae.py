"""Variational autoencoders for 28x28 binary images: an MLP and a convolutional one.

Both share one interface, which `metrics.likelihood` relies on:

    encode(x) -> (mu, logvar)     # q(z|x) = N(mu, diag(exp(logvar))), each (B, latent)
    decode(z) -> logits           # p(x|z) = Bernoulli(sigmoid(logits)), (B, 1, 28, 28)
    forward(x) -> VAEOutput(logits, mu, logvar, z)   with one reparameterised sample z

The prior is N(0, I). The decoder gives Bernoulli logits (not probabilities) so the
likelihood uses the numerically stable `binary_cross_entropy_with_logits`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dlslab.models import register_model


class VAEOutput(NamedTuple):
    logits: torch.Tensor  # (B, 1, H, W) Bernoulli logits of p(x|z)
    mu: torch.Tensor  # (B, latent)
    logvar: torch.Tensor  # (B, latent)
    z: torch.Tensor  # (B, latent) one sample of q(z|x)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, differentiable in (mu, logvar)."""
    return mu + (0.5 * logvar).exp() * torch.randn_like(mu)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear-ReLU layers through `sizes`, ReLU after every layer."""
    layers: list[nn.Module] = []
    for cin, cout in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(cin, cout), nn.ReLU()]
    return nn.Sequential(*layers)


class VAEBase(nn.Module):
    """forward() and sampling from the prior, shared by both VAEs."""

    latent: int

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return VAEOutput(self.decode(z), mu, logvar, z)

    @torch.no_grad()
    def init_output_bias(self, mean_image: torch.Tensor) -> None:
        """Start the decoder at the data's mean image (mean_image (1, H, W) of pixel
        probabilities): the output bias becomes its logit, so the first steps learn structure
        instead of the average brightness of each pixel."""
        self.output_bias.copy_(torch.logit(mean_image.clamp(1e-3, 1 - 1e-3)).view_as(self.output_bias))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means (pixel probabilities) for z ~ N(0, I): (n, 1, 28, 28) in [0, 1]."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent, generator=generator, device="cpu").to(device)
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def traversal(self, base: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
        """Decoder means with one latent dimension swept: one row per (base code (R, latent),
        dimension), one column per value: (R * len(dims) * V, 1, 28, 28)."""
        rows = []
        for z0 in base:
            for d in dims:
                z = z0.repeat(len(values), 1)
                z[:, d] = values
                rows.append(z)
        return torch.sigmoid(self.decode(torch.cat(rows)))

    @torch.no_grad()
    def manifold(self, steps: int = 20) -> torch.Tensor:
        """A 2-D latent plane decoded on a grid of prior quantiles (5%..95%): (steps^2, 1, 28, 28)."""
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, steps))
        zy, zx = torch.meshgrid(q.flip(0), q, indexing="ij")
        z = torch.stack([zx.reshape(-1), zy.reshape(-1)], 1).to(next(self.parameters()).device)
        return torch.sigmoid(self.decode(z))


class MLPVAE(VAEBase):
    """784 -> hidden... -> (mu, logvar); latent -> reversed hidden... -> 784 logits."""

    def __init__(self, latent: int = 20, hidden: tuple[int, ...] = (512, 256), size: int = 28):
        super().__init__()
        self.latent, self.size = latent, size
        pixels = size * size
        self.encoder = mlp([pixels, *hidden])
        self.to_stats = nn.Linear(hidden[-1], 2 * latent)
        self.decoder = nn.Sequential(mlp([latent, *reversed(hidden)]), nn.Linear(hidden[0], pixels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.flatten(1))  # (B, hidden[-1])
        mu, logvar = self.to_stats(h).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar

    @property
    def output_bias(self) -> torch.Tensor:
        return self.decoder[-1].bias  # (784,) one logit offset per pixel

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, self.size, self.size)  # (B, 1, 28, 28)


class ConvVAE(VAEBase):
    """Two stride-2 convolutions down to 7x7, a linear layer to (mu, logvar), and the mirror
    image up with transposed convolutions."""

    def __init__(self, latent: int = 20, width: int = 32, hidden: int = 256):
        super().__init__()
        self.latent, self.width = latent, width
        c1, c2 = width, 2 * width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),  # (B, c2, 7, 7)
            nn.Flatten(), nn.Linear(c2 * 49, hidden), nn.ReLU(),  # (B, hidden)
        )
        self.to_stats = nn.Linear(hidden, 2 * latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, c2 * 49), nn.ReLU(),
            nn.Unflatten(1, (c2, 7, 7)),  # (B, c2, 7, 7)
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),  # (B, c1, 14, 14)
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1, bias=False),  # (B, 1, 28, 28)
        )
        self.output_bias = nn.Parameter(torch.zeros(1, 1, 28, 28))  # one logit offset per pixel

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z) + self.output_bias  # (B, 1, 28, 28) logits


@register_model("vae-mlp", example=lambda: torch.rand(2, 1, 28, 28))
def vae_mlp(latent: int = 20, hidden: tuple[int, ...] = (512, 256)) -> MLPVAE:
    return MLPVAE(latent, tuple(hidden))


@register_model("vae-conv", example=lambda: torch.rand(2, 1, 28, 28))
def vae_conv(latent: int = 20, width: int = 32, hidden: int = 256) -> ConvVAE:
    return ConvVAE(latent, width, hidden)
