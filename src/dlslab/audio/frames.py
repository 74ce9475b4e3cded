"""Magnitude frames of many utterances in one tensor, for frame-wise and recurrent denoisers.

Utterance i is rows `offsets[i] : offsets[i] + lengths[i]` of every tensor. With `pad`, each
utterance is preceded by `pad` zero rows (the silent past of its first frames) and the store
ends with `tail` more, so a window reaching `pad` rows back or `tail` rows forward of a real
frame is plain indexing (`window_rows`). With pad = tail = 0 the utterances lie end to end,
the layout of `dlslab.audio.batching`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dlslab.audio.batching import chunk_table


@dataclass
class Frames:
    """Frames of several utterances, row-aligned tensors (rows, bins)."""

    noisy: torch.Tensor  # (rows, bins) noisy |X|: the model's input
    target: torch.Tensor  # (rows, bins) what the model learns to output
    offsets: torch.Tensor  # (N,) first row of each utterance
    lengths: torch.Tensor  # (N,) frames of each utterance
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # more (rows, bins) tensors, row-aligned

    @classmethod
    def stack(cls, noisy: list[torch.Tensor], target: list[torch.Tensor], *, pad: int = 0, tail: int = 0,
              **extra: list[torch.Tensor]) -> Frames:
        """Per-utterance (T_i, bins) tensors into one store, `pad` zero rows before each
        utterance and `tail` after the last."""
        if not noisy or min(len(x) for x in noisy) < 1:
            raise ValueError("Frames.stack: give at least one utterance, each of at least one frame")
        lengths = torch.tensor([len(x) for x in noisy], dtype=torch.long)
        offsets = torch.cumsum(lengths + pad, 0) - lengths

        def join(parts: list[torch.Tensor]) -> torch.Tensor:
            bins = parts[0].shape[1]
            zeros = parts[0].new_zeros(pad, bins)
            return torch.cat([t for p in parts for t in (zeros, p)] + [parts[0].new_zeros(tail, bins)])

        return cls(join(noisy), join(target), offsets, lengths, {k: join(v) for k, v in extra.items()})

    @property
    def real(self) -> torch.Tensor:
        """(rows,) True on the rows of real frames, False on padding."""
        marks = torch.zeros(len(self.noisy) + 1, dtype=torch.long, device=self.offsets.device)
        marks.index_add_(0, self.offsets, torch.ones_like(self.offsets))
        marks.index_add_(0, self.offsets + self.lengths, -torch.ones_like(self.offsets))
        return marks.cumsum(0)[:-1] > 0

    def chunk_starts(self, chunk: int) -> torch.Tensor:
        """(C,) first row of every run of `chunk` frames, each utterance cut from its start."""
        return chunk_table(self.offsets, self.lengths, chunk).starts

    def to(self, device: torch.device | str) -> Frames:
        return Frames(self.noisy.to(device), self.target.to(device), self.offsets.to(device),
                      self.lengths.to(device), {k: v.to(device) for k, v in self.extra.items()})


def window_rows(starts: torch.Tensor, before: int, length: int) -> torch.Tensor:
    """(B, before + length) rows from `before` rows ahead of each start to `length` - 1 after it."""
    return starts[:, None] + torch.arange(-before, length, device=starts.device)
