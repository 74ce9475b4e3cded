"""CNNs for 32x32 images: a fast residual CNN and a plain small CNN for contrast.

`ResNetFast` follows the recipe of the fastest known CIFAR-10 trainers (the ResNet-9 of
Page's DAWNBench entry and airbench): a stem convolution, a few wide stages that each
convolve, max-pool, batch-normalise and activate, with residual pairs of convolutions on some
stages, a global max pool and a linear head whose output is scaled down so the logits start
small. Everything is a plain conv/BN/GELU, so it runs channels-last and under bf16 autocast.

Parameter names are stable on purpose (`stem.*`, `stages.{i}.conv.*`, `stages.{i}.res.{j}.*`,
`head.*`): transfer learning copies tensors by name, and freezing "the backbone" means
everything but `head.*`.
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.models import register_model


class ConvBN(nn.Module):
    """3x3 convolution (no bias: BN follows), batch norm, GELU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout, momentum=0.2)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    """x + f(f(x)) with two ConvBN layers of the same width."""

    def __init__(self, width: int):
        super().__init__()
        self.a = ConvBN(width, width)
        self.b = ConvBN(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class Stage(nn.Module):
    """conv -> 2x2 max pool -> BN -> GELU (halves H and W), then `blocks` residual pairs."""

    def __init__(self, cin: int, cout: int, blocks: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(cout, momentum=0.2)
        self.act = nn.GELU()
        self.res = nn.Sequential(*[Residual(cout) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.pool(self.conv(x))))  # (B, cout, H/2, W/2)
        return self.res(x)


class ResNetFast(nn.Module):
    """stem (3 -> widths[0]) at full resolution, one Stage per later width, max pool, linear.

    widths=(64, 128, 256, 512), blocks=(1, 0, 1) is the ResNet-9 of the DAWNBench record.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: tuple[int, ...] = (1, 0, 1), logit_scale: float = 0.125):
        super().__init__()
        if len(blocks) != len(widths) - 1:
            raise ValueError(f"blocks needs one entry per stage ({len(widths) - 1}), got {len(blocks)}")
        self.stem = ConvBN(3, widths[0])
        self.stages = nn.Sequential(*[Stage(cin, cout, nb) for cin, cout, nb in zip(widths[:-1], widths[1:], blocks)])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = logit_scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, widths[-1], H / 2**stages, W / 2**stages)
        return self.pool(x).flatten(1)  # (B, widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale  # (B, classes)


class SmallCNN(nn.Module):
    """The plain contrast: conv-ReLU-pool twice, a hidden linear layer, a linear head.
    No batch norm, no residuals, no tricks (`norm=True` adds batch norm after each conv)."""

    def __init__(self, num_classes: int = 10, width: int = 32, hidden: int = 128, norm: bool = False):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not norm)]
            layers += [nn.BatchNorm2d(cout)] if norm else []
            return nn.Sequential(*layers, nn.ReLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(3, width), block(width, 2 * width))  # (B, 2w, 8, 8)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 8 * 8, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))  # (B, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, classes)


@register_model("resnet-fast", example=lambda: torch.randn(2, 3, 32, 32))
def resnet_fast(num_classes: int = 10, widths: tuple[int, ...] = (64, 128, 256, 512),
                blocks: tuple[int, ...] = (1, 0, 1)) -> nn.Module:
    return ResNetFast(num_classes, tuple(widths), tuple(blocks))


@register_model("small-cnn", example=lambda: torch.randn(2, 3, 32, 32))
def small_cnn(num_classes: int = 10, width: int = 32, hidden: int = 128, norm: bool = False) -> nn.Module:
    return SmallCNN(num_classes, width, hidden, norm)
