"""The VAEs: shapes, prior samples, and a few hundred steps that raise the ELBO on MNIST."""

from __future__ import annotations

import pytest
import torch

from dlslab.data.images import load_images
from dlslab.metrics.likelihood import binarize, elbo, fixed_binarization, vae_loss
from dlslab.models.vae import ConvVAE, MLPVAE
from dlslab.train.engine import fit


@pytest.mark.parametrize("model", [MLPVAE(latent=5, hidden=(32, 16)), ConvVAE(latent=5, width=4)])
def test_shapes_and_samples(model) -> None:
    x = torch.rand(3, 1, 28, 28)
    out = model(x)
    assert out.logits.shape == (3, 1, 28, 28)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 5)
    s = model.sample(4, torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 28, 28) and 0 <= s.min() and s.max() <= 1
    assert torch.equal(s, model.sample(4, torch.Generator().manual_seed(0)))


def test_a_smoke_vae_elbo_improves(data_root) -> None:
    data = load_images("mnist", data_root)
    train = data.train_x[:2000].float() / 255
    test = fixed_binarization(data.test_x[:500].float() / 255, seed=0)
    torch.manual_seed(0)
    model = MLPVAE(latent=8, hidden=(128,))
    before = elbo(model, test).mean().item()
    fit(model, (train,), lambda m, xb: vae_loss(m, xb), optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
        epochs=3, batch_size=64, transform=lambda b: [binarize(b[0])], verbose=False, progress=False)
    after = elbo(model, test).mean().item()
    assert after > before + 200 and after > -260, (before, after)


@pytest.mark.parametrize("model", [MLPVAE(latent=5, hidden=(32, 16)), ConvVAE(latent=5, width=4)])
def test_init_output_bias_starts_the_decoder_at_the_mean_image(model) -> None:
    mean = torch.rand(1, 28, 28) * 0.8 + 0.1
    model.init_output_bias(mean)
    last = model.decoder[-1]
    torch.nn.init.zeros_(last.weight)  # with the last layer silent, only the bias is left
    decoded = torch.sigmoid(model.decode(torch.randn(3, 5)))
    assert torch.allclose(decoded, mean.expand(3, 1, 28, 28), atol=1e-5)


def test_conv_vae_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    model = ConvVAE(latent=5, width=4, hidden=16).eval()
    x, z = torch.rand(3, 1, 28, 28), torch.randn(3, 5)
    mu, logits = model.encode(x)[0], model.decode(z)
    model = model.to(memory_format=torch.channels_last)
    assert torch.allclose(model.encode(x)[0], mu, atol=1e-5) and torch.allclose(model.decode(z), logits, atol=1e-5)
