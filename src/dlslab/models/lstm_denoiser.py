"""An LSTM that estimates a speech mask from noisy STFT magnitudes, frame by frame.

Input |X| (B, T, bins) is log-compressed (optional) and standardised per frequency bin with
statistics the study measures on its training set; an LSTM (uni- or bidirectional) runs over
the frames and a linear layer gives one mask logit per bin; the mask is their sigmoid.

The model takes a padded batch (B, T, bins) or a `PackedSequence` of such frames, and
`forward_state` carries the LSTM state in and out, for truncated backpropagation through
time over consecutive chunks (unidirectional only: a backward direction has no state to
carry into the next chunk).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from dlslab.models import register_model

State = tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c), each (layers * directions, B, hidden)


class BinNorm(nn.Module):
    """log(|X| + floor) (or |X|), then (· − mean) / std per frequency bin."""

    def __init__(self, bins: int, log_input: bool = True, floor: float = 1e-4):
        super().__init__()
        self.log_input = log_input
        self.floor = floor
        self.register_buffer("mean", torch.zeros(bins))
        self.register_buffer("std", torch.ones(bins))

    def compress(self, mag: torch.Tensor) -> torch.Tensor:
        return torch.log(mag + self.floor) if self.log_input else mag

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> None:
        """Set the statistics from training frames (N, bins) of |X|."""
        feats = self.compress(frames.float())
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp_min(1e-3))

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return (self.compress(mag) - self.mean) / self.std  # same shape as mag


class LSTMDenoiser(nn.Module):
    """Per-bin standardised |X| -> LSTM over frames -> linear -> mask logits per bin."""

    def __init__(self, bins: int = 513, hidden: int = 256, layers: int = 2, bidirectional: bool = False,
                 dropout: float = 0.0, log_input: bool = True):
        super().__init__()
        self.bidirectional = bidirectional
        self.norm = BinNorm(bins, log_input)
        self.drop = nn.Dropout(dropout)  # on the standardised input features (training only)
        self.lstm = nn.LSTM(bins, hidden, num_layers=layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), bins)

    def forward_state(self, mag: torch.Tensor | PackedSequence,
                      state: State | None = None) -> tuple[torch.Tensor | PackedSequence, State]:
        """Mask logits for |X| (B, T, bins) or a PackedSequence of it (then a PackedSequence
        of logits), starting from `state` (zeros when None), and the state after the last frame."""
        if isinstance(mag, PackedSequence):
            # Normalisation and head act per frame, so they run on the packed frames directly.
            out, state = self.lstm(mag._replace(data=self.drop(self.norm(mag.data))), state)
            return out._replace(data=self.head(out.data)), state  # data (frames, bins)
        out, state = self.lstm(self.drop(self.norm(mag)), state)  # (B, T, hidden * directions)
        return self.head(out), state  # (B, T, bins)

    def forward(self, mag: torch.Tensor | PackedSequence) -> torch.Tensor | PackedSequence:
        return self.forward_state(mag)[0]

    @torch.no_grad()
    def estimate_mask(self, mag: torch.Tensor) -> torch.Tensor:
        """The mask in [0, 1] for a whole utterance (T, bins) or batch (B, T, bins)."""
        single = mag.dim() == 2
        logits = self(mag.unsqueeze(0) if single else mag)
        mask = torch.sigmoid(logits)
        return mask[0] if single else mask


@register_model("lstm-denoiser", example=lambda: torch.rand(2, 12, 513))
def lstm_denoiser(bins: int = 513, hidden: int = 256, layers: int = 2, bidirectional: bool = False,
                  dropout: float = 0.0, log_input: bool = True) -> LSTMDenoiser:
    return LSTMDenoiser(bins, hidden, layers, bidirectional, dropout, log_input)
