"""Generators and discriminators for image outpainting and for missing-value imputation.

Outpainting (Context Encoders, Pathak et al. 2016; pix2pix, Isola et al. 2017): a U-Net-like
encoder-decoder reads the centre patch on an empty canvas plus a mask channel, takes noise
(and optionally the class label) at the bottleneck, and draws the whole image; the known
patch is pasted back, so it is kept exactly. The discriminator judges whole images or, as a
patch discriminator, each receptive field; spectral norm is an option.

Imputation (GAIN, Yoon et al. 2018): the generator reads (data with noise in the missing
entries, mask) and proposes every entry; the discriminator reads (imputed data, hint) and
guesses, per entry, whether it was observed. A reconstruction-only denoising autoencoder is
the baseline with the same inputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dlslab.models import register_model

# --- shared blocks -----------------------------------------------------------------------------


def conv_block(cin: int, cout: int, kernel: int = 3, stride: int = 1, norm: bool = True) -> nn.Sequential:
    """conv (same padding for stride 1, halving for stride 2) -> BatchNorm -> LeakyReLU."""
    pad = (kernel - stride + 1) // 2
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, pad, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def up_block(cin: int, cout: int) -> nn.Sequential:
    """Transposed conv that doubles height and width -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def centre_box(size: int, patch: int) -> tuple[int, int]:
    """(start, stop) of the centre `patch` rows (and columns) of a `size`-pixel side."""
    if not 0 < patch < size:
        raise ValueError(f"patch side {patch} must be between 1 and the image side {size} (exclusive)")
    start = (size - patch) // 2
    return start, start + patch


def centre_mask(size: int, patch: int) -> torch.Tensor:
    """(1, 1, size, size) float mask: 1 on the centre patch (known), 0 on the border."""
    a, b = centre_box(size, patch)
    mask = torch.zeros(1, 1, size, size)
    mask[..., a:b, a:b] = 1.0
    return mask


def mlp(sizes: list[int], out_act: nn.Module | None = None) -> nn.Sequential:
    """Linear-ReLU layers through `sizes`, no activation after the last unless `out_act`."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def _spectral(module: nn.Module) -> nn.Module:
    """Spectral norm on every conv and linear weight inside `module` (Miyato et al. 2018)."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            _spectral(child)
    return module


# --- outpainting ---------------------------------------------------------------------------------


class OutpaintGenerator(nn.Module):
    """Centre patch (+ noise, + optional label) -> whole image with the patch pasted back.

    The encoder halves the side twice (28 -> 14 -> 7, or 32 -> 16 -> 8); noise and the label
    embedding enter as extra channels at the bottleneck; the decoder mirrors the encoder with
    skip connections (U-Net). Output pixels are in [0, 1]."""

    def __init__(self, in_channels: int = 1, size: int = 28, patch: int = 14, width: int = 32,
                 noise_dim: int = 16, num_classes: int = 0):
        super().__init__()
        if size % 4:
            raise ValueError(f"image side {size} must be divisible by 4")
        self.size, self.patch, self.noise_dim, self.num_classes = size, patch, noise_dim, num_classes
        self.box = centre_box(size, patch)
        self.register_buffer("mask", centre_mask(size, patch), persistent=False)
        # logits the drawing starts from (0 = grey); `set_prior(mean_image)` starts it at the data's mean
        self.register_buffer("prior", torch.zeros(1, in_channels, size, size))
        q = size // 4
        extra = 8 if noise_dim else 0
        self.noise = nn.Linear(noise_dim, extra * q * q) if noise_dim else None
        self.label = nn.Embedding(num_classes, 8) if num_classes else None
        self.enc1 = conv_block(in_channels + 1, width, norm=False)
        self.enc2 = conv_block(width, 2 * width, 4, 2)
        self.enc3 = conv_block(2 * width, 4 * width, 4, 2)
        self.mid = conv_block(4 * width + extra + (8 if num_classes else 0), 4 * width)
        self.up2 = up_block(4 * width, 2 * width)
        self.dec2 = conv_block(4 * width, 2 * width)
        self.up1 = up_block(2 * width, width)
        self.dec1 = conv_block(2 * width, width)
        self.out = nn.Conv2d(width, in_channels, 1)

    def set_prior(self, image: torch.Tensor) -> None:
        """Start drawing from `image` (1, C, S, S) in [0, 1], e.g. the training set's mean image,
        so training learns what differs from it instead of first learning the background."""
        self.prior.copy_(torch.logit(image.clamp(0.01, 0.99)))

    def canvas(self, patch: torch.Tensor) -> torch.Tensor:
        """The patch on an empty canvas: (B, C, p, p) -> (B, C, S, S), zeros on the border."""
        a, b = self.box
        out = patch.new_zeros(patch.shape[0], patch.shape[1], self.size, self.size)
        out[..., a:b, a:b] = patch
        return out

    def forward(self, patch: torch.Tensor, z: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        known = self.canvas(patch)  # (B, C, S, S)
        mask = self.mask.expand(len(patch), -1, -1, -1)
        e1 = self.enc1(torch.cat([known, mask], 1))  # (B, w, S, S)
        e2 = self.enc2(e1)  # (B, 2w, S/2, S/2)
        e3 = self.enc3(e2)  # (B, 4w, S/4, S/4)
        q = e3.shape[-1]
        parts = [e3]
        if self.noise is not None:
            z = z if z is not None else patch.new_zeros(len(patch), self.noise_dim)
            parts.append(self.noise(z).view(len(patch), -1, q, q))  # (B, 8, S/4, S/4)
        if self.label is not None:
            if y is None:
                raise ValueError("this generator is conditioned on the class label: pass y")
            parts.append(self.label(y)[:, :, None, None].expand(-1, -1, q, q))  # (B, 8, S/4, S/4)
        h = self.mid(torch.cat(parts, 1))  # (B, 4w, S/4, S/4)
        h = self.dec2(torch.cat([self.up2(h), e2], 1))  # (B, 2w, S/2, S/2)
        h = self.dec1(torch.cat([self.up1(h), e1], 1))  # (B, w, S, S)
        drawn = torch.sigmoid(self.out(h) + self.prior)  # (B, C, S, S)
        return mask * known + (1 - mask) * drawn  # the given patch, exactly


class ImageDiscriminator(nn.Module):
    """Real/fake logits for whole images (B,) or, with `patch=True`, for each receptive field
    (B, S/4 * S/4). The class label, when used, enters as one-hot channels."""

    def __init__(self, in_channels: int = 1, size: int = 28, width: int = 32, patch: bool = False,
                 spectral_norm: bool = False, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(
            conv_block(in_channels + num_classes, width, 4, 2, norm=False),  # (B, w, S/2, S/2)
            conv_block(width, 2 * width, 4, 2, norm=False),  # (B, 2w, S/4, S/4)
            conv_block(2 * width, 2 * width, 3, 1, norm=False),
        )
        q = size // 4
        self.head = (nn.Conv2d(2 * width, 1, 3, 1, 1) if patch
                     else nn.Sequential(nn.Flatten(), nn.Linear(2 * width * q * q, 1)))
        if spectral_norm:
            _spectral(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if y is None:
                raise ValueError("this discriminator is conditioned on the class label: pass y")
            onehot = nn.functional.one_hot(y, self.num_classes).to(x.dtype)
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
        return self.head(self.body(x)).flatten(1).squeeze(1)  # (B,) or (B, S/4 * S/4)


class Outpainter(nn.Module):
    """Generator and discriminator in one module, so one checkpoint holds both; with
    `ema_decay` > 0 also an exponential moving average of the generator's weights and buffers
    (`update_average` after each generator step), the generator that GANs are usually
    evaluated with because it smooths the step-to-step wobble of adversarial training."""

    def __init__(self, in_channels: int = 1, size: int = 28, patch: int = 14, width: int = 32,
                 noise_dim: int = 16, num_classes: int = 0, patch_discriminator: bool = False,
                 spectral_norm: bool = True, ema_decay: float = 0.0):
        super().__init__()
        self.generator = OutpaintGenerator(in_channels, size, patch, width, noise_dim, num_classes)
        self.discriminator = ImageDiscriminator(in_channels, size, width, patch_discriminator,
                                                spectral_norm, num_classes)
        self.generator_ema = None
        if ema_decay > 0:
            self.generator_ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                                               use_buffers=True)

    def update_average(self) -> None:
        """Move the averaged generator toward the current one (no-op without `ema_decay`)."""
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)

    def final_generator(self) -> OutpaintGenerator:
        """The generator to evaluate: the averaged one when kept, else the trained one."""
        return self.generator if self.generator_ema is None else self.generator_ema.module

    def forward(self, patch: torch.Tensor, z: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(patch, z, y)


@register_model("outpaint-generator", example=lambda: (torch.rand(2, 1, 14, 14), torch.randn(2, 16)))
def outpaint_generator(in_channels: int = 1, size: int = 28, patch: int = 14, width: int = 32,
                       noise_dim: int = 16, num_classes: int = 0) -> nn.Module:
    return OutpaintGenerator(in_channels, size, patch, width, noise_dim, num_classes)


@register_model("image-discriminator", example=lambda: torch.rand(2, 1, 28, 28))
def image_discriminator(in_channels: int = 1, size: int = 28, width: int = 32, patch: bool = True,
                        spectral_norm: bool = True) -> nn.Module:
    return ImageDiscriminator(in_channels, size, width, patch, spectral_norm)


# --- imputation ----------------------------------------------------------------------------------


class ImputerMLP(nn.Module):
    """(values, mask-like) -> one output per entry: GAIN's generator and the denoising
    autoencoder (outputs in [0, 1]), or GAIN's discriminator (`logits=True`)."""

    def __init__(self, dim: int = 30, hidden: int | None = None, logits: bool = False):
        super().__init__()
        h = hidden or dim  # the GAIN paper uses the data dimension
        self.net = mlp([2 * dim, h, h, dim], None if logits else nn.Sigmoid())

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([values, mask], 1))  # (B, d)


class GAIN(nn.Module):
    """G(x_tilde, m) proposes every entry; D(x_hat, h) gives per-entry logits of "observed"."""

    def __init__(self, dim: int = 30, hidden: int | None = None):
        super().__init__()
        self.generator = ImputerMLP(dim, hidden)
        self.discriminator = ImputerMLP(dim, hidden, logits=True)

    def forward(self, x_tilde: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.generator(x_tilde, m)  # (B, d)


@register_model("imputer-mlp", example=lambda: (torch.rand(4, 30), (torch.rand(4, 30) > 0.2).float()))
def imputer_mlp(dim: int = 30, hidden: int | None = None, logits: bool = False) -> nn.Module:
    return ImputerMLP(dim, hidden, logits)
