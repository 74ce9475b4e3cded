"""Small CNN classifiers used as judges: "does the completed/generated image still read as
the right class?" and the feature space for Fréchet distances (ours, not Inception's)."""

from __future__ import annotations

import torch
from torch import nn

from dlslab.models import register_model


class JudgeCNN(nn.Module):
    """conv-bn-relu x2 + pool, twice, then a 128-d feature layer and a linear head."""

    def __init__(self, in_channels: int = 1, size: int = 28, num_classes: int = 10, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(in_channels, width), block(width, 2 * width))
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.body(x))  # (B, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (B, classes)


@register_model("judge-cnn", example=lambda: torch.randn(2, 1, 28, 28))
def judge_cnn(in_channels: int = 1, size: int = 28, num_classes: int = 10) -> nn.Module:
    return JudgeCNN(in_channels, size, num_classes)
