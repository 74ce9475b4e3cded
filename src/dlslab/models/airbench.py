"""The airbench-class CIFAR network: a frozen patch-whitening convolution, then three conv groups.

After K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (airbench94): the first
layer is a fixed 2x2 convolution whose filters whiten the image patches (computed from the
training images' patch covariance: its eigenvectors, scaled by 1/sqrt(eigenvalue), each
filter also with its negation, so a GELU after it keeps both signs); then three groups of
conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU (widths 64, 256, 256), a global max pool
and a linear head whose logits are scaled by 1/9. The 3x3 convolutions start as identities
(Dirac) on their first input channels, an implicit residual. Batch norm keeps its scale fixed
at 1 (only the bias trains) with a fast running-statistics momentum.

Parameter names: `whiten.*`, `blocks.{i}.conv1/conv2/norm1/norm2.*`, `head.weight`; transfer
learning copies by name and "the backbone" is everything but `head.*`.
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.models import register_model


def image_patches(images: torch.Tensor, size: int) -> torch.Tensor:
    """Every size x size patch of every image, flattened in the (C, kh, kw) order of a conv
    filter: (B, C, H, W) -> (B * (H - size + 1) * (W - size + 1), C * size * size)."""
    b, c, _, _ = images.shape
    p = images.unfold(2, size, 1).unfold(3, size, 1)  # (B, C, H', W', size, size)
    return p.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * size * size)


def whitening_filters(images: torch.Tensor, size: int = 2, eps: float = 5e-4) -> torch.Tensor:
    """Conv filters (2 * C*size*size, C, size, size) that map the images' patches to
    coordinates with (uncentred) covariance diag(lambda / (lambda + eps)) ~ the identity: the
    patch covariance's eigenvectors over sqrt(eigenvalue + eps), then their negations."""
    c = images.shape[1]
    patches = image_patches(images.float(), size).double()
    cov = patches.T @ patches / len(patches)  # (D, D), D = C * size * size
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending; columns are eigenvectors
    filters = (eigenvectors.T / (eigenvalues + eps).sqrt()[:, None]).flip(0)  # largest variance first
    filters = filters.float().reshape(-1, c, size, size)
    return torch.cat([filters, -filters])


def dirac_conv(cin: int, cout: int) -> nn.Conv2d:
    """3x3 'same' convolution, no bias, whose first min(cin, cout) filters start as the
    identity on their channel (the rest keep PyTorch's default initialisation)."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(cin, cout)])
    return conv


def frozen_scale_bn(width: int, momentum: float) -> nn.BatchNorm2d:
    """Batch norm whose scale stays 1 (not trained); only the bias learns."""
    bn = nn.BatchNorm2d(width, eps=1e-12, momentum=momentum)
    bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Module):
    """conv -> 2x2 max pool -> BN -> GELU -> conv -> BN -> GELU: halves H and W."""

    def __init__(self, cin: int, cout: int, bn_momentum: float):
        super().__init__()
        self.conv1 = dirac_conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = frozen_scale_bn(cout, bn_momentum)
        self.conv2 = dirac_conv(cout, cout)
        self.norm2 = frozen_scale_bn(cout, bn_momentum)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))  # (B, cout, H/2, W/2)
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """whiten (frozen 2x2 conv, 3 -> 24) -> GELU -> one ConvGroup per width -> max -> linear."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (64, 256, 256), whiten_size: int = 2,
                 logit_scale: float = 1 / 9, bn_momentum: float = 0.4, whiten_float32: bool = False):
        super().__init__()
        # float32 whitening keeps autocast's bf16 rounding of the input (about 0.4% of a pixel)
        # from being multiplied by the large gains of the faintest patch directions
        self.whiten_float32 = whiten_float32
        self.whiten = nn.Conv2d(3, 2 * 3 * whiten_size**2, whiten_size, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from the data by `init_whitening`, never trained
        nn.init.zeros_(self.whiten.bias)
        self.act = nn.GELU()
        cins = (self.whiten.out_channels, *widths[:-1])
        self.blocks = nn.Sequential(*[ConvGroup(cin, cout, bn_momentum) for cin, cout in zip(cins, widths)])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from (normalised) training images (B, 3, H, W)."""
        size = self.whiten.kernel_size[0]
        self.whiten.weight.copy_(whitening_filters(images, size, eps).to(self.whiten.weight.device))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.whiten_float32:
            with torch.autocast(x.device.type, enabled=False):
                x = self.act(self.whiten(x.float()))
        else:
            x = self.act(self.whiten(x))
        x = self.blocks(x)  # (B, widths[-1], H / 2**groups, W / 2**groups)
        return self.pool(x).flatten(1)  # (B, widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale  # (B, classes)


def names_from_resnet(groups: int) -> dict[str, str]:
    """`transfer_weights` name map from an `AirbenchNet` of `groups` conv groups to a
    `ResNetFast` with the same widths and one residual pair per stage. Group i >= 1 computes
    what stage i - 1 does: its first conv and BN are the stage's conv and BN (both convolve,
    pool, normalise, activate), its second the stage's first residual conv and BN. Group 0
    reads the whitened 24 channels, the stem reads RGB, so it has no counterpart."""
    out: dict[str, str] = {}
    for i in range(1, groups):
        out |= {rf"^blocks\.{i}\.conv1\.": f"stages.{i - 1}.conv.", rf"^blocks\.{i}\.norm1\.": f"stages.{i - 1}.bn.",
                rf"^blocks\.{i}\.conv2\.": f"stages.{i - 1}.res.0.a.conv.",
                rf"^blocks\.{i}\.norm2\.": f"stages.{i - 1}.res.0.a.bn."}
    return out


@register_model("airbench", example=lambda: torch.randn(2, 3, 32, 32))
def airbench(num_classes: int = 10, widths: tuple[int, ...] = (64, 256, 256)) -> nn.Module:
    return AirbenchNet(num_classes, tuple(widths))
