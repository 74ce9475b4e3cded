"""Batching variable-length utterances of frames for a recurrent model, four ways.

Utterances are stored end to end: `frames` (total, F) holds every frame of every utterance,
and utterance i is `frames[offsets[i] : offsets[i] + lengths[i]]`. Every batch below is
built by gathering from that store with index tensors (no per-utterance Python in the hot
path), and every batch comes with a boolean frame mask so that padding never counts:

- pad to longest: B utterances padded to the longest of the B (`pad_to_longest`);
- chunks: each utterance cut into chunks of `chunk` frames, only the last chunk of each
  utterance padded (`chunk_table`, `gather_chunks`, `unchunk`, which undoes it exactly);
- chunk streams: utterances laid end to end in `lanes` parallel streams and read one chunk
  per lane at a time, for truncated backpropagation through time with the recurrent state
  carried from chunk to chunk and reset where a new utterance starts (`chunk_streams`);
- length buckets: utterances sorted by length and grouped, so a packed batch
  (`torch.nn.utils.rnn.pack_padded_sequence`) holds sequences of similar length
  (`length_buckets`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch


def stack_sequences(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequences (T_i, F) -> (frames (ΣT_i, F), offsets (N,), lengths (N,)), end to end."""
    if not seqs:
        raise ValueError("stack_sequences: no sequences given")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    if int(lengths.min()) < 1:
        raise ValueError("stack_sequences: every sequence needs at least one frame")
    offsets = torch.cumsum(lengths, 0) - lengths
    return torch.cat(seqs), offsets, lengths


def length_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, max_len) bool mask, True on the first lengths[b] frames of row b."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def padded_fraction(mask: torch.Tensor) -> float:
    """Fraction of the positions of a frame mask that are padding."""
    return 1.0 - float(mask.sum()) / max(mask.numel(), 1)


def _gather(frames: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """frames[index] with padding positions (mask False) set to zero."""
    out = frames[index.clamp(0, len(frames) - 1)]  # (..., F)
    return out * mask.unsqueeze(-1).to(out.dtype)


def pad_to_longest(frames: torch.Tensor, offsets: torch.Tensor,
                   lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The utterances (offsets, lengths) as one right-padded batch.

    Returns (padded (B, T, F), mask (B, T)) with T = max(lengths); padding is zeros.
    """
    mask = length_mask(lengths)  # (B, T)
    index = offsets[:, None] + torch.arange(mask.shape[1], device=offsets.device)  # (B, T)
    return _gather(frames, index, mask), mask


@dataclass(frozen=True)
class ChunkTable:
    """Every utterance cut into chunks of `chunk` frames, in utterance then time order."""

    starts: torch.Tensor  # (C,) index of each chunk's first frame in the frame store
    valid: torch.Tensor  # (C,) real frames in each chunk (== chunk except an utterance's last)
    utterance: torch.Tensor  # (C,) which utterance each chunk belongs to
    position: torch.Tensor  # (C,) chunk number within its utterance (0 = first)
    chunk: int  # frames per chunk

    def __len__(self) -> int:
        return len(self.starts)


def chunk_table(offsets: torch.Tensor, lengths: torch.Tensor, chunk: int = 10) -> ChunkTable:
    """Cut each utterance into ceil(length / chunk) chunks; only its last chunk is short."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 frame, got {chunk}")
    counts = (lengths + chunk - 1) // chunk  # (N,) chunks per utterance
    utterance = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), counts)
    first = torch.cumsum(counts, 0) - counts  # (N,) index of each utterance's first chunk
    position = torch.arange(int(counts.sum()), device=lengths.device) - first[utterance]
    starts = offsets[utterance] + position * chunk
    valid = (lengths[utterance] - position * chunk).clamp(max=chunk)
    return ChunkTable(starts, valid, utterance, position, chunk)


def gather_chunks(frames: torch.Tensor, starts: torch.Tensor, valid: torch.Tensor,
                  chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunks (C, chunk, F) of the frame store and their mask (C, chunk); padding is zeros."""
    steps = torch.arange(chunk, device=starts.device)
    mask = steps < valid[:, None]  # (C, chunk)
    return _gather(frames, starts[:, None] + steps, mask), mask


def unchunk(chunks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Undo `gather_chunks` over a whole `ChunkTable` (in its order): the real frames
    (total, ...) end to end, the padding dropped. Works on model outputs per chunk too."""
    return chunks[mask]


@dataclass(frozen=True)
class StreamPlan:
    """Utterances laid end to end in parallel lanes, read one chunk per lane per step.

    Step k feeds chunk k of every lane; `reset[k, lane]` says a new utterance starts there
    (the recurrent state must be zeroed); lanes that have run out hold empty chunks.
    """

    starts: torch.Tensor  # (K, lanes) first frame of each chunk in the frame store
    valid: torch.Tensor  # (K, lanes) real frames in each chunk (0 = an empty tail chunk)
    reset: torch.Tensor  # (K, lanes) True where the chunk is an utterance's first
    chunk: int  # frames per chunk

    @property
    def padded_fraction(self) -> float:
        return 1.0 - float(self.valid.sum()) / max(self.valid.numel() * self.chunk, 1)


def chunk_streams(offsets: torch.Tensor, lengths: torch.Tensor, lanes: int,
                  chunk: int = 10) -> StreamPlan:
    """Lay the utterances into `lanes` streams of chunks.

    Longest first, each utterance goes whole to the lane with the fewest chunks so far
    (ties: the lowest lane; equal lengths keep the given order), which keeps the lanes
    about equally long, so little padding is left at their ends.
    """
    table = chunk_table(offsets, lengths, chunk)
    counts = ((lengths + chunk - 1) // chunk).tolist()
    lanes = max(1, min(lanes, len(counts)))
    # Planning is one pass over utterances (not frames): a heap of (chunks so far, lane).
    heap = [(0, lane) for lane in range(lanes)]
    lane_of, step_of = [0] * len(counts), [0] * len(counts)
    for i in sorted(range(len(counts)), key=lambda i: -counts[i]):
        used, lane = heapq.heappop(heap)
        lane_of[i], step_of[i] = lane, used
        heapq.heappush(heap, (used + counts[i], lane))
    steps = max(used for used, _ in heap)
    device = lengths.device
    lane_t = torch.tensor(lane_of, dtype=torch.long, device=device)[table.utterance]  # (C,)
    step_t = torch.tensor(step_of, dtype=torch.long, device=device)[table.utterance] + table.position
    starts = torch.zeros(steps, lanes, dtype=torch.long, device=device)
    valid = torch.zeros(steps, lanes, dtype=torch.long, device=device)
    reset = torch.zeros(steps, lanes, dtype=torch.bool, device=device)
    starts[step_t, lane_t] = table.starts
    valid[step_t, lane_t] = table.valid
    reset[step_t, lane_t] = table.position == 0
    return StreamPlan(starts, valid, reset, chunk)


def length_buckets(lengths: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Utterance indices sorted by length and cut into buckets of `batch_size`:
    (n_buckets, batch_size), the last bucket filled up with -1."""
    order = torch.argsort(lengths, stable=True)
    n_buckets = (len(order) + batch_size - 1) // batch_size
    filled = torch.full((n_buckets * batch_size,), -1, dtype=torch.long, device=lengths.device)
    filled[: len(order)] = order
    return filled.view(n_buckets, batch_size)

