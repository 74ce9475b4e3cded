"""Every augmentation keeps shape, dtype and range; label mixing matches pixel mixing."""

from __future__ import annotations

import pytest
import torch

from dlslab.errors import UsageError
from dlslab.train.augment import (POLICIES, TRIVIAL_OPS, Augmenter, color_jitter, cutmix, cutout, flip,
                                  alternating_flip, mixup, one_hot, random_crop, soft_cross_entropy, trivial_augment,
                                  tta_logits, tta_views)


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


def test_mirror_tta_is_invariant_to_mirroring_and_weights_the_views(images):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    model(images)
    assert torch.allclose(tta_logits(model, images, 1), tta_logits(model, images.flip(-1), 1), atol=1e-5)
    with torch.no_grad():
        by_hand = sum(w * model(v) for w, v in tta_views(images, 2))
        assert torch.allclose(tta_logits(model, images, 2), by_hand, atol=1e-5)


def test_tta_views_are_the_stated_transforms(images):
    assert [w for w, _ in tta_views(images, 0)] == [1.0] and torch.equal(tta_views(images, 0)[0][1], images)
    (w0, same), (w1, mirror) = tta_views(images, 1)
    assert (w0, w1) == (0.5, 0.5) and torch.equal(same, images) and torch.equal(mirror, images.flip(-1))
    views = tta_views(images, 2)
    assert sum(w for w, _ in views) == 1.0 and [w for w, _ in views] == [0.25, 0.25] + [0.125] * 4
    (_, plain), (_, mirrored), (_, up_left), (_, up_left_m), (_, down_right), (_, down_right_m) = views
    assert torch.equal(plain, images) and torch.equal(mirrored, images.flip(-1))
    assert torch.equal(up_left[..., :-1, :-1], images[..., 1:, 1:])  # content moved one pixel up and left
    assert torch.equal(down_right[..., 1:, 1:], images[..., :-1, :-1])  # one pixel down and right
    assert torch.equal(up_left_m, up_left.flip(-1)) and torch.equal(down_right_m, down_right.flip(-1))
    # the uncovered border row and column are reflections (the reflect padding), not zeros
    assert torch.equal(up_left[..., -1, :-1], images[..., -2, 1:])


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs(images):
    coins = torch.rand(len(images)) < 0.5
    even, odd = alternating_flip(images, coins, 4), alternating_flip(images, coins, 5)
    for i in range(len(images)):
        mirrored = [torch.equal(v[i], images[i].flip(-1)) for v in (even, odd)]
        kept = [torch.equal(v[i], images[i]) for v in (even, odd)]
        assert sorted(mirrored) == [False, True] and sorted(kept) == [False, True]


def test_augmenter_uses_the_alternating_flip_with_indices(images):
    x = (images * 255).to(torch.uint8)
    coins = torch.zeros(len(x), dtype=torch.bool)
    epoch = [0]
    aug = Augmenter("flip", flip_coins=coins, epoch=lambda: epoch[0])
    index = torch.arange(len(x))
    plain = aug.augment(x, torch.zeros(len(x), dtype=torch.long), index)[0]
    epoch[0] = 1
    flipped = aug.augment(x, torch.zeros(len(x), dtype=torch.long), index)[0]
    assert torch.equal(plain, x.float() / 255) and torch.equal(flipped, plain.flip(-1))
