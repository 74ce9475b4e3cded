"""An image's orientation from its second-order moments, rotation by known angles, and the
scores that say which latent dimension of a model controls rotation.

Angles are in degrees, counter-clockwise positive, as a person sees the image (row 0 at the
top). `orientation` measures the tilt of the principal axis away from vertical, in
(-90, 90]: 0 for an upright stroke, +30 for one leaning 30 degrees to the left (rotated
counter-clockwise). `rotate(images, +a)` turns images counter-clockwise, so it adds `a` to
their orientation (up to the axis' 180-degree ambiguity).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def orientation(images: torch.Tensor) -> torch.Tensor:
    """Principal-axis tilt from vertical, in degrees, of each image (B, 1, H, W) or (B, H, W)
    with non-negative intensities: (B,). An image with no mass gets 0."""
    x = images.reshape(-1, *images.shape[-2:]).float()  # (B, H, W)
    b, h, w = x.shape
    rows = torch.arange(h, device=x.device, dtype=x.dtype)
    cols = torch.arange(w, device=x.device, dtype=x.dtype)
    yy = -(rows - (h - 1) / 2).view(1, h, 1)  # y points up
    xx = (cols - (w - 1) / 2).view(1, 1, w)
    mass = x.sum((1, 2)).clamp_min(1e-8)  # (B,)
    cx = (x * xx).sum((1, 2)) / mass
    cy = (x * yy).sum((1, 2)) / mass
    dx = xx - cx.view(b, 1, 1)
    dy = yy - cy.view(b, 1, 1)
    mu20 = (x * dx * dx).sum((1, 2)) / mass
    mu02 = (x * dy * dy).sum((1, 2)) / mass
    mu11 = (x * dx * dy).sum((1, 2)) / mass
    theta = 0.5 * torch.atan2(2 * mu11, mu20 - mu02)  # principal axis from the +x axis
    tilt = torch.rad2deg(theta) - 90.0  # from vertical, in (-180, 0]
    return torch.where(tilt <= -90.0, tilt + 180.0, tilt)  # (-90, 90]


def rotate(images: torch.Tensor, degrees: torch.Tensor | float) -> torch.Tensor:
    """Rotate each image (B, C, H, W) counter-clockwise about its centre by `degrees` (a
    number, or one angle per image), bilinear, zero fill outside."""
    b = images.shape[0]
    a = torch.deg2rad(torch.as_tensor(degrees, dtype=images.dtype, device=images.device).expand(b))
    cos, sin = torch.cos(a), torch.sin(a)
    # affine_grid maps output coordinates (x right, y down) to input ones: the inverse rotation
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(a)], 1),
                         torch.stack([sin, cos, torch.zeros_like(a)], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def angle_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a - b for axis angles (period 180 degrees), wrapped into (-90, 90]."""
    d = torch.remainder(a - b + 90.0, 180.0) - 90.0
    return torch.where(d <= -90.0, d + 180.0, d)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of `a` (N,) with each column of `b` (N, D): (D,). A constant
    column gets 0 (it explains nothing)."""
    a = a.double() - a.double().mean()
    b = b.double() - b.double().mean(0)
    denom = a.norm() * b.norm(dim=0)
    return torch.where(denom > 1e-12, (a @ b) / denom.clamp_min(1e-12), torch.zeros_like(denom))


def heldout_r2(target: torch.Tensor, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """R^2 on held-out data of a 1-D linear regression of `target` (N,) on each column of
    `features` (N, D): fit on the rows whose group id is even, score on the odd ones (so
    rotations of one digit never sit on both sides). (D,); can be negative."""
    fit_rows, test_rows = groups % 2 == 0, groups % 2 == 1
    y, x = target.double(), features.double()
    xf, yf = x[fit_rows], y[fit_rows]
    xm, ym = xf.mean(0), yf.mean()
    var = (xf - xm).pow(2).sum(0)
    slope = torch.where(var > 1e-12, ((xf - xm) * (yf - ym).unsqueeze(1)).sum(0) / var.clamp_min(1e-12),
                        torch.zeros_like(var))
    pred = ym + slope * (x[test_rows] - xm)  # (Nt, D)
    yt = y[test_rows]
    ss_res = (yt.unsqueeze(1) - pred).pow(2).sum(0)
    ss_tot = (yt - yt.mean()).pow(2).sum().clamp_min(1e-12)
    return 1.0 - ss_res / ss_tot


def traversal_rotation(decode, base: torch.Tensor, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """(a) Traverse every latent dimension: for each base code (M, D) and each value (V,), set
    dimension d to the value, decode (`decode(z) -> images in [0, 1]`) and measure the
    orientation. Per dimension, pooled over the bases with each base's mean angle removed:
    `slope`, the tilt in degrees per unit of the dimension, and `abs_corr`, |correlation| of
    angle with value. A rotation dimension turns every digit the same way, so it has a large
    slope; a dimension that reshapes digits can have a high |corr| with a small slope.
    Also returns `angles` (D, M, V)."""
    m, d = base.shape
    v = len(values)
    z = base.view(1, m, 1, d).repeat(d, 1, v, 1)  # (D, M, V, D)
    dims = torch.arange(d, device=base.device)
    z[dims, :, :, dims] = values.to(base).view(1, 1, v).expand(d, m, v)
    angles = orientation(decode(z.view(-1, d))).view(d, m, v)
    centred = angle_difference(angles, circular_axis_mean(angles).unsqueeze(-1)).double()  # (D, M, V)
    x = values.double().to(angles.device).repeat(m)  # (M*V,)
    y = centred.reshape(d, m * v).T  # (M*V, D)
    slope = ((x - x.mean()) @ (y - y.mean(0))) / (x - x.mean()).pow(2).sum().clamp_min(1e-12)
    return {"slope": slope, "abs_corr": pearson(x, y).abs(), "angles": angles}


def circular_axis_mean(angles: torch.Tensor) -> torch.Tensor:
    """Mean of axis angles (period 180) over the last dimension, in (-90, 90]."""
    doubled = torch.deg2rad(2 * angles.double())
    mean = 0.5 * torch.rad2deg(torch.atan2(doubled.sin().mean(-1), doubled.cos().mean(-1)))
    return mean.to(angles.dtype)


def rotation_regression(encode, images: torch.Tensor, angles: list[float]) -> dict[str, torch.Tensor]:
    """(b) Rotate each image (N, 1, H, W) by every angle, encode (`encode(x) -> means (N, D)`),
    and regress the angle on the shift of each latent dimension from the unrotated image's
    code (removing the between-digit spread). Returns per-dimension |corr| and held-out R^2,
    and the held-out R^2 of all dimensions together (a linear read-out of the angle)."""
    n = len(images)
    a = torch.tensor(angles, dtype=images.dtype, device=images.device)
    rotated = rotate(images.repeat(len(a), 1, 1, 1), a.repeat_interleave(n))  # (A*N, 1, H, W)
    codes = encode(rotated).view(len(a), n, -1)  # (A, N, D)
    code0 = encode(images)  # (N, D)
    shift = (codes - code0.unsqueeze(0)).reshape(len(a) * n, -1)  # (A*N, D)
    target = a.repeat_interleave(n)
    groups = torch.arange(n, device=images.device).repeat(len(a))
    corr = pearson(target, shift).abs()
    r2 = heldout_r2(target, shift, groups)
    return {"abs_corr": corr, "r2": r2, "r2_all_dims": _heldout_r2_joint(target, shift, groups)}


def _heldout_r2_joint(target: torch.Tensor, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    fit_rows, test_rows = groups % 2 == 0, groups % 2 == 1
    x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.double,
                                                  device=features.device)], 1)
    coef = torch.linalg.lstsq(x[fit_rows], target.double()[fit_rows].unsqueeze(1)).solution
    pred = (x[test_rows] @ coef).squeeze(1)
    yt = target.double()[test_rows]
    return 1.0 - (yt - pred).pow(2).sum() / (yt - yt.mean()).pow(2).sum().clamp_min(1e-12)
