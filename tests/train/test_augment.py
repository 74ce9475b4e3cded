"""Every augmentation keeps shape, dtype and range; label mixing matches pixel mixing."""

from __future__ import annotations

import pytest
import torch

from dlslab.errors import UsageError
from dlslab.train.augment import (POLICIES, TRIVIAL_OPS, Augmenter, color_jitter, cutmix, cutout, flip,
                                  flip_tta, mixup, one_hot, random_crop, soft_cross_entropy, trivial_augment)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(64, 3, 32, 32)


@pytest.mark.parametrize("op", [flip, random_crop, cutout, color_jitter, trivial_augment],
                         ids=lambda f: f.__name__)
def test_pixel_ops_keep_shape_dtype_and_range(op, images):
    out = op(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)  # it did something to at least one image


@pytest.mark.parametrize("name", list(TRIVIAL_OPS))
def test_each_trivial_op_keeps_range(name, images):
    out = trivial_augment(images, ops=[name])
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1


def test_flip_mirrors_or_keeps_each_image(images):
    out = flip(images)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 10 < int(mirrored.sum()) < 54


def test_crop_is_a_shift_of_the_padded_image():
    x = torch.arange(32.0).expand(8, 3, 32, 32) / 31  # column index as value
    out = random_crop(x, pad=4)
    shifts = (out[:, 0, 0, 8:24] - x[:, 0, 0, 8:24]) * 31  # centre columns never hit the reflection
    assert torch.allclose(shifts, shifts[:, :1].expand_as(shifts), atol=1e-5)
    assert shifts.abs().max() <= 4 + 1e-5 and len(torch.unique(shifts[:, 0].round())) > 1


def test_cutout_blanks_at_most_one_square(images):
    out = cutout(images, size=8, fill=0.5)
    changed = (out != images).any(1).flatten(1).sum(1)
    assert int(changed.max()) <= 64 and int(changed.min()) >= 16  # a corner clips it to 4x4 at worst


@pytest.mark.parametrize("mix", [mixup, cutmix], ids=["mixup", "cutmix"])
def test_label_mixing_matches_pixel_mixing(mix):
    torch.manual_seed(1)
    n = 64
    y = torch.randint(0, 10, (n,))
    k = torch.arange(10, dtype=torch.float32)
    # channel 0 holds the class index, channel 1 its square: each mixed image's pixel means
    # must equal the label-weighted means of k and k^2, which pins down both shares
    x = torch.stack([y.float(), y.float() ** 2, torch.ones(n)], 1).view(n, 3, 1, 1).expand(n, 3, 32, 32).contiguous()
    mixed, targets, lam = mix(x, one_hot(y, 10))
    assert mixed.shape == x.shape and targets.shape == (n, 10)
    assert torch.allclose(targets.sum(1), torch.ones(n))
    assert torch.allclose(mixed[:, 0].mean((1, 2)), targets @ k, atol=1e-4)
    assert torch.allclose(mixed[:, 1].mean((1, 2)), targets @ k**2, atol=1e-3)
    assert ((lam > 0.01) & (lam < 0.99)).float().mean() > 0.5  # most images really are mixed
    assert (targets.max(1).values < 0.99).float().mean() > 0.3


def test_policies_as_transform_give_normalised_channels_last_batches():
    torch.manual_seed(2)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (16,))
    for policy in POLICIES:
        xb, targets = Augmenter(policy)([x, y])
        assert xb.shape == (16, 3, 32, 32) and xb.dtype == torch.float32
        assert xb.is_contiguous(memory_format=torch.channels_last)
        assert xb.abs().max() < 3.0  # (x - mean) / std of values in [0, 1]
        assert torch.allclose(targets.sum(1), torch.ones(16))
        if policy in ("mixup", "cutmix"):
            assert (targets.max(1).values < 1).any()
        else:
            assert torch.equal(targets.argmax(1), y) and torch.equal(targets.max(1).values, torch.ones(16))
    with pytest.raises(UsageError, match="valid"):
        Augmenter("rotate-everything")


def test_soft_cross_entropy_matches_torch():
    torch.manual_seed(3)
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    ours = soft_cross_entropy(logits, one_hot(y, 10), smoothing=0.2)
    ref = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.2)
    assert torch.isclose(ours, ref, atol=1e-6)


def test_flip_tta_is_invariant_to_mirroring(images):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    model(images)
    assert torch.allclose(flip_tta(model, images), flip_tta(model, images.flip(-1)), atol=1e-5)
