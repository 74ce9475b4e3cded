"""A row LSTM: reads an image one row per step and predicts the next row.

Step t sees rows 0..t-1 (a learned start row stands in for "row -1") and outputs Bernoulli
logits for all pixels of row t, so the model is a proper density over whole binary images:

    p(x) = prod_t prod_j Bernoulli(x[t, j] | rows < t)

Pixels within a row are independent given the rows above (unlike PixelRNN, which also
conditions on the pixels to the left), so its likelihood is a weaker, honest baseline.

`complete(upper, rows, sample=...)` writes the rows below `upper` autoregressively, for a
whole batch at once: one LSTM step per row, never one Python loop per image.
"""

from __future__ import annotations

import torch
from torch import nn

from dlslab.models import register_model


class RowLSTM(nn.Module):
    """Start row + LSTM over rows + linear head to the next row's logits."""

    def __init__(self, width: int = 28, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.width = width
        self.start = nn.Parameter(torch.zeros(1, 1, width))  # the input before row 0
        self.lstm = nn.LSTM(width, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, width)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Teacher forcing. rows (B, T, W) in [0, 1] -> logits (B, T, W) of rows 0..T-1,
        where output t was computed from rows 0..t-1 only."""
        b = rows.shape[0]
        inputs = torch.cat([self.start.expand(b, 1, self.width), rows[:, :-1]], dim=1)  # (B, T, W)
        out, _ = self.lstm(inputs)  # (B, T, hidden)
        return self.head(out)  # (B, T, W)

    @torch.no_grad()
    def complete(self, upper: torch.Tensor, rows: int, *, sample: bool,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Write `rows` rows below `upper` (B, T0, W), feeding each output back as the next
        input: pixel probabilities when `sample` is False (the deterministic mean variant),
        Bernoulli samples when True. Returns the whole image (B, T0 + rows, W): the given
        rows unchanged, then the written ones, in [0, 1]."""
        b = upper.shape[0]
        inputs = torch.cat([self.start.expand(b, 1, self.width), upper], dim=1)  # (B, T0+1, W)
        out, state = self.lstm(inputs)  # state after reading every given row
        written = []
        for _ in range(rows):
            p = torch.sigmoid(self.head(out[:, -1]))  # (B, W) next row
            if sample:
                u = torch.rand(p.shape, generator=generator, device="cpu").to(p.device)
                p = (u < p).to(p.dtype)
            written.append(p)
            out, state = self.lstm(p.unsqueeze(1), state)  # (B, 1, hidden)
        return torch.cat([upper, torch.stack(written, dim=1)], dim=1)  # (B, T0 + rows, W)


@register_model("pixel-lstm", example=lambda: torch.rand(2, 28, 28))
def pixel_lstm(width: int = 28, hidden: int = 256, layers: int = 2) -> RowLSTM:
    return RowLSTM(width, hidden, layers)
