"""Batched image augmentation on the device: every op takes a whole batch (B, C, H, W) and
draws one random choice per image with tensor ops, so there is no per-image Python.

Pixel ops (`flip`, `random_crop`, `cutout`, `color_jitter`, `trivial_augment`) take floats in
[0, 1] and return floats in [0, 1] of the same shape. `mixup` and `cutmix` mix each image with
another one of the batch and mix the (soft) labels in exactly the proportion of the pixels.
`Augmenter` turns a named policy into the `transform` of `train.engine.fit`: uint8 images and
integer labels in, normalised floats (channels-last) and soft labels out.
Randomness comes from torch's global generator, which the engine checkpoints, so a resumed
training draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from dlslab.errors import UsageError

# Each policy adds to the one before it, except mixup, cutmix and trivial, which are each
# flip + crop plus that one thing (so every one of them is compared with flip-crop).
Policy = Literal["none", "flip", "flip-crop", "flip-crop-cutout", "flip-crop-cutout-jitter", "mixup", "cutmix",
                 "trivial"]
POLICIES: tuple[str, ...] = get_args(Policy)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


# --- geometric ------------------------------------------------------------------------------------


def flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    mask = (torch.rand(len(x), device=x.device) < p).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def alternating_flip(x: torch.Tensor, coins: torch.Tensor, epoch: int) -> torch.Tensor:
    """Mirror image i when its own fixed coin (bool, one per image) differs from the parity of
    `epoch`: every image is seen once each way in every two epochs, instead of by chance."""
    mask = (coins != bool(epoch % 2)).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def random_crop(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Pad by `pad` (reflect) and cut a random HxW window per image: one gather for the batch."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[bi, ci, rows, cols]  # (B, C, H, W)


def _boxes(b: int, h: int, w: int, bh: torch.Tensor, bw: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, 1, H, W) bool masks of one box per image, sized (bh, bw), centred uniformly at
    random and clipped at the image border."""
    cy = torch.randint(0, h, (b,), device=device)
    cx = torch.randint(0, w, (b,), device=device)
    y0, y1 = (cy - bh // 2).clamp(0, h), (cy - bh // 2 + bh).clamp(0, h)
    x0, x1 = (cx - bw // 2).clamp(0, w), (cx - bw // 2 + bw).clamp(0, w)
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    inside = ((ys >= y0.view(b, 1, 1)) & (ys < y1.view(b, 1, 1)) & (xs >= x0.view(b, 1, 1)) & (xs < x1.view(b, 1, 1)))
    return inside.unsqueeze(1)


def cutout(x: torch.Tensor, size: int = 8, fill: float = 0.5) -> torch.Tensor:
    """Blank one size x size square per image (clipped at the border) with `fill`."""
    b, _, h, w = x.shape
    side = torch.full((b,), size, device=x.device)
    return x.masked_fill(_boxes(b, h, w, side, side, x.device), fill)


# --- colour ---------------------------------------------------------------------------------------


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])  # (B, 1, H, W)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = _gray(x).mean((1, 2, 3), keepdim=True)
    return (mean + factor.view(-1, 1, 1, 1) * (x - mean)).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    gray = _gray(x)
    return (gray + factor.view(-1, 1, 1, 1) * (x - gray)).clamp(0, 1)


def color_jitter(x: torch.Tensor, brightness: float = 0.3, contrast: float = 0.3,
                 saturation: float = 0.3) -> torch.Tensor:
    """Scale brightness, contrast and saturation by per-image factors in [1 - s, 1 + s]."""
    n, dev = len(x), x.device
    x = adjust_brightness(x, _uniform(n, 1 - brightness, 1 + brightness, dev))
    x = adjust_contrast(x, _uniform(n, 1 - contrast, 1 + contrast, dev))
    return adjust_saturation(x, _uniform(n, 1 - saturation, 1 + saturation, dev))


# --- TrivialAugment: one random op at a random strength per image ---------------------------------


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 2x3 matrix (normalised coordinates), filling with grey."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + 0.5


def _rotate(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    a = m * math.radians(30.0)
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    return _affine(x, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))


def _shear(x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    one, zero, s = torch.ones_like(m), torch.zeros_like(m), m * 0.3
    rows = ([one, s, zero], [zero, one, zero]) if axis == 0 else ([one, zero, zero], [s, one, zero])
    return _affine(x, torch.stack([torch.stack(r, 1) for r in rows], 1))


def _translate(x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    one, zero, t = torch.ones_like(m), torch.zeros_like(m), m * 0.6  # 0.6 = 30% of the width
    rows = ([one, zero, t], [zero, one, zero]) if axis == 0 else ([one, zero, zero], [zero, one, t])
    return _affine(x, torch.stack([torch.stack(r, 1) for r in rows], 1))


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    levels = 2.0 ** (8 - (m.abs() * 4).round()).view(-1, 1, 1, 1)  # 8 down to 4 bits
    return (x * (levels - 1)).round() / (levels - 1)


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    threshold = (1.0 - m.abs()).view(-1, 1, 1, 1)
    return torch.where(x >= threshold, 1.0 - x, x)


def _autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-3)).clamp(0, 1)


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(x.shape[1], 1, 3, 3),
                       groups=x.shape[1])
    factor = (1 + m).view(-1, 1, 1, 1)
    return (blurred + factor * (x - blurred)).clamp(0, 1)


# name -> op(x, m) with m in [-1, 1] the signed strength (TrivialAugment draws it uniformly)
TRIVIAL_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "identity": lambda x, m: x,
    "brightness": lambda x, m: adjust_brightness(x, 1 + 0.9 * m),
    "contrast": lambda x, m: adjust_contrast(x, 1 + 0.9 * m),
    "saturation": lambda x, m: adjust_saturation(x, 1 + 0.9 * m),
    "sharpness": lambda x, m: _sharpness(x, 0.9 * m),
    "posterize": _posterize,
    "solarize": _solarize,
    "autocontrast": _autocontrast,
    "rotate": _rotate,
    "shear_x": lambda x, m: _shear(x, m, 0),
    "shear_y": lambda x, m: _shear(x, m, 1),
    "translate_x": lambda x, m: _translate(x, m, 0),
    "translate_y": lambda x, m: _translate(x, m, 1),
}


def trivial_augment(x: torch.Tensor, ops: Sequence[str] = tuple(TRIVIAL_OPS)) -> torch.Tensor:
    """TrivialAugment (Müller & Hutter, 2021): each image gets one op drawn uniformly from
    `ops` at a strength drawn uniformly; images that drew the same op are done together."""
    n = len(x)
    choice = torch.randint(0, len(ops), (n,), device=x.device)
    strength = _uniform(n, -1.0, 1.0, x.device)
    out = x.clone()
    for k, name in enumerate(ops):
        idx = torch.nonzero(choice == k).flatten()
        if len(idx):
            out[idx] = TRIVIAL_OPS[name](x[idx], strength[idx]).clamp(0, 1)
    return out


# --- label-mixing ---------------------------------------------------------------------------------


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y, num_classes).float()


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float = 0.4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend each image with a partner from the batch: x' = lam x + (1 - lam) x[perm], the
    soft labels likewise, lam ~ Beta(alpha, alpha) per image. Returns (x', targets', lam)."""
    n = len(x)
    lam = torch.distributions.Beta(alpha, alpha).sample((n,)).to(x.device)
    perm = torch.randperm(n, device=x.device)
    mixed = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm]
    return mixed, lam[:, None] * targets + (1 - lam[:, None]) * targets[perm], lam


def cutmix(x: torch.Tensor, targets: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste a box from a partner image into each image; the label weight of the image is
    the fraction of its own pixels that are left (after clipping the box at the border)."""
    n, _, h, w = x.shape
    share = torch.distributions.Beta(alpha, alpha).sample((n,)).to(x.device)  # box area ~ 1 - lam
    side = (1 - share).sqrt()
    boxes = _boxes(n, h, w, (side * h).round().long(), (side * w).round().long(), x.device)  # (B, 1, H, W)
    perm = torch.randperm(n, device=x.device)
    mixed = torch.where(boxes, x[perm], x)
    lam = 1 - boxes.float().mean((1, 2, 3))
    return mixed, lam[:, None] * targets + (1 - lam[:, None]) * targets[perm], lam


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against soft targets (B, C), with label smoothing towards uniform."""
    if smoothing:
        targets = targets * (1 - smoothing) + smoothing / targets.shape[1]
    return -(targets * logits.float().log_softmax(1)).sum(1).mean()


# --- the policy as a transform --------------------------------------------------------------------


def normalize(x: torch.Tensor, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> torch.Tensor:
    """(x - mean) / std per channel, x in [0, 1]; returned channels-last for fast convolutions."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous(memory_format=torch.channels_last)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1]."""
    return x.float().div_(255.0)


@dataclass
class Augmenter:
    """A named policy as a `fit` transform: (uint8 x, int y) -> (normalised x, soft y)."""

    policy: str
    num_classes: int = 10
    crop_pad: int = 4  # reflect padding of the random crop
    cutout_size: int = 8  # side of the cutout square
    jitter: float = 0.3  # colour jitter strength (factors in [1 - s, 1 + s])
    mixup_alpha: float = 0.4  # Beta(alpha, alpha) of mixup's mixing weight
    cutmix_alpha: float = 1.0  # Beta(alpha, alpha) of cutmix's kept area
    # alternating flip: one fixed coin per training image and the current epoch; the batch
    # then carries the images' indices as its third tensor. None: a random flip per image.
    flip_coins: torch.Tensor | None = None
    epoch: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UsageError(f"unknown augmentation policy {self.policy!r}; valid: {', '.join(POLICIES)}")

    def pixels(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The policy's pixel ops on floats in [0, 1] (no label mixing, no normalisation);
        `index`: the images' rows in the training set (for alternating flip)."""
        p = self.policy
        if p == "trivial":
            x = trivial_augment(x)
        if p == "flip-crop-cutout-jitter":
            x = color_jitter(x, self.jitter, self.jitter, self.jitter)
        if p != "none":
            alternate = self.flip_coins is not None and self.epoch is not None and index is not None
            x = alternating_flip(x, self.flip_coins[index], self.epoch()) if alternate else flip(x)
        if p not in ("none", "flip"):
            x = random_crop(x, self.crop_pad)
        if p in ("flip-crop-cutout", "flip-crop-cutout-jitter"):
            x = cutout(x, self.cutout_size)
        return x

    def augment(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images and integer labels -> augmented floats in [0, 1] and soft labels."""
        x = self.pixels(to_unit(x), index)
        targets = one_hot(y, self.num_classes)
        if self.policy == "mixup":
            x, targets, _ = mixup(x, targets, self.mixup_alpha)
        elif self.policy == "cutmix":
            x, targets, _ = cutmix(x, targets, self.cutmix_alpha)
        return x, targets

    def __call__(self, batch: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[uint8 x, y] or [uint8 x, y, index] -> [normalised x, soft y]."""
        x, targets = self.augment(batch[0], batch[1], batch[2] if len(batch) > 2 else None)
        return [normalize(x), targets]


# --- test-time augmentation -----------------------------------------------------------------------


def tta_views(x: torch.Tensor, level: int) -> list[tuple[float, torch.Tensor]]:
    """(weight, view) pairs whose weighted logits are averaged; the weights sum to 1.

    level 0: x alone; 1: x and its mirror; 2: x and its mirror (1/4 each), and both of them
    translated by one pixel up-left and down-right (reflect padding; 1/8 each)."""
    if level <= 0:
        return [(1.0, x)]
    if level == 1:
        return [(0.5, x), (0.5, x.flip(-1))]
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    down_right, up_left = padded[..., :h, :w], padded[..., 2:, 2:]  # content moved by +1 / -1 pixel
    views = [(0.25, x), (0.25, x.flip(-1))]
    return views + [(0.125, v) for t in (up_left, down_right) for v in (t, t.flip(-1))]


def tta_logits(model: torch.nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """The weighted mean of the model's logits over the `tta_views` of x."""
    views = tta_views(x, level)
    return sum(weight * model(v.contiguous(memory_format=torch.channels_last)).float() for weight, v in views)
