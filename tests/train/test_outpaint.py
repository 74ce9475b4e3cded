"""Outpainting training pieces: the border loss counts only the border, the crop is the centre."""

from __future__ import annotations

import torch

from dlslab.models.gan import centre_box, centre_mask
from dlslab.train.outpaint import border_loss, crop


def test_border_loss_ignores_the_centre_and_crop_takes_it():
    size, patch = 8, 4
    box, border = centre_box(size, patch), 1 - centre_mask(size, patch)
    real = torch.zeros(2, 1, size, size)
    fake = real.clone()
    a, b = box
    fake[..., a:b, a:b] = 5.0  # wrong only inside the known patch
    assert border_loss(fake, real, border, "l1").item() == 0.0
    assert torch.equal(crop(fake, box), torch.full((2, 1, patch, patch), 5.0))
    fake[..., 0, 0] = 1.0  # one wrong border pixel per image
    n_border = border.sum().item()
    assert abs(border_loss(fake, real, border, "l1").item() - 1 / n_border) < 1e-6
    assert abs(border_loss(2 * fake, real, border, "l2").item() - 4 / n_border) < 1e-6
