"""LeNet-300-100 (an MLP) and LeNet-5 (a small CNN), the networks of the Deep Compression
paper (Han et al., 2016), with their widths as arguments so that structured pruning can
build a genuinely smaller copy of the same family.

LeNet-5 follows the Caffe variant used there (20 and 50 5x5 filters, 500 hidden units), with
a ReLU after each convolution.
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.models import register_model


class LeNet300(nn.Module):
    """784 -> hidden[0] -> hidden[1] -> classes, ReLU between."""

    def __init__(self, hidden: tuple[int, int] = (300, 100), num_classes: int = 10, in_features: int = 784):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, 784)
        x = torch.relu(self.fc1(x))  # (B, hidden[0])
        x = torch.relu(self.fc2(x))  # (B, hidden[1])
        return self.fc3(x)  # (B, classes)


class LeNet5(nn.Module):
    """conv5x5(channels[0]) - pool - conv5x5(channels[1]) - pool - fc(hidden) - fc(classes)."""

    def __init__(self, channels: tuple[int, int] = (20, 50), hidden: int = 500, num_classes: int = 10,
                 in_channels: int = 1, size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], 5)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5)
        side = ((size - 4) // 2 - 4) // 2  # two valid 5x5 convolutions, each followed by a 2x2 pool
        self.fc1 = nn.Linear(channels[1] * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)  # (B, c0, 12, 12)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)  # (B, c1, 4, 4)
        x = torch.relu(self.fc1(x.flatten(1)))  # (B, hidden)
        return self.fc2(x)  # (B, classes)


@register_model("lenet300", example=lambda: torch.randn(2, 1, 28, 28))
def lenet300(hidden: tuple[int, int] | list[int] = (300, 100), num_classes: int = 10) -> nn.Module:
    return LeNet300(tuple(hidden), num_classes)


@register_model("lenet5", example=lambda: torch.randn(2, 1, 28, 28))
def lenet5(channels: tuple[int, int] | list[int] = (20, 50), hidden: int = 500, num_classes: int = 10) -> nn.Module:
    return LeNet5(tuple(channels), hidden, num_classes)
