"""The outpainting and imputation networks: shapes, the pasted patch, spectral norm."""

from __future__ import annotations

import pytest
import torch

from dlslab.models.gan import GAIN, ImageDiscriminator, ImputerMLP, OutpaintGenerator, centre_box


@pytest.mark.parametrize("channels,size,patch,classes", [(1, 28, 14, 0), (3, 32, 16, 10), (1, 28, 10, 10)])
def test_generator_keeps_the_given_patch_exactly(channels: int, size: int, patch: int, classes: int) -> None:
    torch.manual_seed(0)
    gen = OutpaintGenerator(channels, size, patch, width=8, noise_dim=4, num_classes=classes)
    gen.set_prior(torch.full((1, channels, size, size), 0.3))
    images = torch.rand(5, channels, size, size)
    a, b = centre_box(size, patch)
    y = torch.randint(0, 10, (5,)) if classes else None
    out = gen(images[..., a:b, a:b], torch.randn(5, 4), y)
    assert out.shape == images.shape
    assert torch.equal(out[..., a:b, a:b], images[..., a:b, a:b])
    assert out.min() >= 0 and out.max() <= 1
    # the border is drawn, not copied: it does not depend on the hidden real border
    other = images.clone()
    other[..., :a, :] = 1 - other[..., :a, :]
    torch.manual_seed(1)
    z = torch.randn(5, 4)
    assert torch.equal(gen.eval()(images[..., a:b, a:b], z, y), gen(other[..., a:b, a:b], z, y))


def test_generator_noise_changes_the_border_only() -> None:
    torch.manual_seed(0)
    gen = OutpaintGenerator(1, 28, 14, width=8, noise_dim=4).eval()
    patch = torch.rand(3, 1, 14, 14)
    one, two = gen(patch, torch.randn(3, 4)), gen(patch, torch.randn(3, 4))
    assert not torch.allclose(one, two)
    assert torch.equal(one[..., 7:21, 7:21], two[..., 7:21, 7:21])


def test_label_conditioned_generator_requires_the_label() -> None:
    gen = OutpaintGenerator(1, 28, 14, width=8, noise_dim=4, num_classes=10)
    with pytest.raises(ValueError, match="pass y"):
        gen(torch.rand(2, 1, 14, 14), torch.randn(2, 4))


def test_discriminator_outputs_one_logit_per_image_or_per_patch() -> None:
    x = torch.rand(4, 3, 32, 32)
    assert ImageDiscriminator(3, 32, 8)(x).shape == (4,)
    assert ImageDiscriminator(3, 32, 8, patch=True)(x).shape == (4, 8 * 8)
    labelled = ImageDiscriminator(3, 32, 8, num_classes=10)
    assert labelled(x, torch.tensor([0, 1, 2, 3])).shape == (4,)


def test_spectral_norm_bounds_each_layer_to_unit_gain() -> None:
    torch.manual_seed(0)
    disc = ImageDiscriminator(1, 28, 8, spectral_norm=True)
    x = torch.rand(8, 1, 28, 28)
    for _ in range(30):  # power iterations run in training-mode forward passes
        disc(x)
    disc.eval()
    convs = [m for m in disc.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs
    for layer in convs:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)
    plain = ImageDiscriminator(1, 28, 8, spectral_norm=False)
    assert not any("parametrizations" in n for n, _ in plain.named_parameters())


def test_gain_networks_shapes_and_ranges() -> None:
    model = GAIN(12, hidden=16)
    x, m = torch.rand(5, 12), (torch.rand(5, 12) > 0.3).float()
    proposal = model(x, m)
    assert proposal.shape == (5, 12) and proposal.min() >= 0 and proposal.max() <= 1
    logits = model.discriminator(proposal, m)
    assert logits.shape == (5, 12)
    assert ImputerMLP(12, logits=True)(x, m).min() < 0  # logits are not squashed
