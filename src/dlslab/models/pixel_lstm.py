"""A row LSTM: reads an image one row per step and predicts the next row, pixel by pixel.

Step t sees rows 0..t-1 (a learned start row stands in for "row -1"). Its hidden state h_t
conditions a small autoregressive head over the 28 pixels of row t (MADE, Germain et al. 2015:
masked weights so that pixel j's logit sees h_t and pixels 0..j-1 of the same row only), so
the model is a proper density over whole binary images with no independence assumption:

    p(x) = prod_t prod_j Bernoulli(x[t, j] | rows < t, x[t, < j])

With `head_hidden=0` the head is one linear layer of h_t and the pixels of a row are
independent given the rows above (the weaker, older variant).

Teacher forcing evaluates every row and pixel in one pass. `complete(upper, rows, ...)` writes
the rows below `upper` for a whole batch at once: one LSTM step per row and one head pass per
pixel, never one Python loop per image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dlslab.models import register_model


class MaskedRowHead(nn.Module):
    """Logits of one row's pixels from (h, the row itself), pixel j seeing only h and pixels < j:
    a MADE hidden layer (unit k of degree m_k sees pixels <= m_k and feeds outputs > m_k) plus
    direct strictly-lower-triangular pixel-to-pixel weights."""

    def __init__(self, hidden: int, width: int, head_hidden: int):
        super().__init__()
        degree = torch.arange(head_hidden) % (width - 1)  # m_k in 0..width-2
        pixel = torch.arange(width)
        self.register_buffer("mask_in", (pixel[None, :] <= degree[:, None]).float())  # (Hh, W)
        self.register_buffer("mask_out", (degree[None, :] < pixel[:, None]).float())  # (W, Hh)
        self.register_buffer("mask_direct", torch.tril(torch.ones(width, width), -1))  # (W, W)
        self.from_state = nn.Linear(hidden, head_hidden)
        self.pixels_in = nn.Linear(width, head_hidden, bias=False)
        self.out = nn.Linear(head_hidden, width)
        self.from_state_out = nn.Linear(hidden, width, bias=False)
        self.direct = nn.Linear(width, width, bias=False)

    def context(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the state h (..., hidden) adds to the hidden units and to the logits; computed
        once per row, while the pixels are written one at a time."""
        return self.from_state(h), self.from_state_out(h)  # (..., Hh), (..., W)

    def logits(self, context: tuple[torch.Tensor, torch.Tensor], row: torch.Tensor) -> torch.Tensor:
        """Logits (..., W) of a row (..., W) given the state's `context`."""
        to_hidden, to_out = context
        a = F.relu(to_hidden + F.linear(row, self.pixels_in.weight * self.mask_in))  # (..., Hh)
        return (F.linear(a, self.out.weight * self.mask_out, self.out.bias) + to_out
                + F.linear(row, self.direct.weight * self.mask_direct))

    def forward(self, h: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """h (..., hidden), row (..., W) -> logits (..., W)."""
        return self.logits(self.context(h), row)


class RowLSTM(nn.Module):
    """Start row + LSTM over rows + a head to the next row's logits (autoregressive within the
    row when `head_hidden` > 0)."""

    def __init__(self, width: int = 28, hidden: int = 256, layers: int = 2, head_hidden: int = 0):
        super().__init__()
        self.width = width
        self.start = nn.Parameter(torch.zeros(1, 1, width))  # the input before row 0
        self.lstm = nn.LSTM(width, hidden, num_layers=layers, batch_first=True)
        self.head = MaskedRowHead(hidden, width, head_hidden) if head_hidden else nn.Linear(hidden, width)

    @property
    def autoregressive(self) -> bool:
        return isinstance(self.head, MaskedRowHead)

    def _logits(self, h: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        return self.head(h, row) if self.autoregressive else self.head(h)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Teacher forcing. rows (B, T, W) in [0, 1] -> logits (B, T, W), where logit (t, j)
        was computed from rows 0..t-1 (and pixels 0..j-1 of row t) only."""
        b = rows.shape[0]
        inputs = torch.cat([self.start.expand(b, 1, self.width), rows[:, :-1]], dim=1)  # (B, T, W)
        out, _ = self.lstm(inputs)  # (B, T, hidden)
        return self._logits(out, rows)  # (B, T, W)

    def _next_row(self, h: torch.Tensor, sample: bool, generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One row (B, W) from the state h (B, hidden): what is fed back (probabilities, or
        Bernoulli samples when `sample`), and each pixel's probability given what came before."""
        if not self.autoregressive:
            p = torch.sigmoid(self.head(h))
            return (self._draw(p, generator) if sample else p), p
        row, probs = torch.zeros(h.shape[0], self.width, device=h.device), torch.zeros(h.shape[0], self.width, device=h.device)
        context = self.head.context(h)
        for j in range(self.width):  # pixel j sees only pixels < j, so later entries of `row` do not matter
            p = torch.sigmoid(self.head.logits(context, row)[:, j])  # (B,)
            probs[:, j] = p
            row[:, j] = self._draw(p, generator) if sample else p
        return row, probs

    @staticmethod
    def _draw(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(p.shape, generator=generator, device="cpu").to(p.device)
        return (u < p).to(p.dtype)

    @torch.no_grad()
    def write(self, upper: torch.Tensor, rows: int, *, sample: bool,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `rows` rows below `upper` (B, T0, W), feeding each written row back as the
        next input. Returns (written, probs), each (B, rows, W): what was written (Bernoulli
        samples when `sample`, else the probabilities themselves) and every pixel's
        probability given everything written before it."""
        b = upper.shape[0]
        inputs = torch.cat([self.start.expand(b, 1, self.width), upper], dim=1)  # (B, T0+1, W)
        out, state = self.lstm(inputs)  # state after reading every given row
        written, probs = [], []
        for _ in range(rows):
            row, p = self._next_row(out[:, -1], sample, generator)  # (B, W) each
            written.append(row)
            probs.append(p)
            out, state = self.lstm(row.unsqueeze(1), state)  # (B, 1, hidden)
        return torch.stack(written, dim=1), torch.stack(probs, dim=1)

    @torch.no_grad()
    def complete(self, upper: torch.Tensor, rows: int, *, sample: bool,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The whole image (B, T0 + rows, W): the given rows unchanged, then the written ones
        (Bernoulli samples when `sample`, else probabilities fed back as they are), in [0, 1]."""
        return torch.cat([upper, self.write(upper, rows, sample=sample, generator=generator)[0]], dim=1)

    @torch.no_grad()
    def expected_lower(self, upper: torch.Tensor, rows: int, samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's expected lower half E[x_lower | upper] (B, rows, W), estimated by
        averaging each pixel's probability along `samples` sampled completions (lower variance
        than averaging the samples, and never exactly 0 or 1), and those samples (B, S, rows, W)."""
        drawn = [self.write(upper, rows, sample=True, generator=generator) for _ in range(samples)]
        return torch.stack([p for _, p in drawn]).mean(0), torch.stack([x for x, _ in drawn], dim=1)


@register_model("pixel-lstm", example=lambda: torch.rand(2, 28, 28))
def pixel_lstm(width: int = 28, hidden: int = 256, layers: int = 2, head_hidden: int = 0) -> RowLSTM:
    return RowLSTM(width, hidden, layers, head_hidden)
