"""Training a recurrent model on variable-length sequences, batched one of four ways.

The sequences are a `dlslab.audio.frames.Frames` store (inputs, targets, offsets, lengths);
every strategy feeds `train.engine.fit` the same number of real frames per update
(`SequenceSpec.batch_frames`), and padding never counts in the loss:

- `pad`: random batches of whole sequences, each padded to the longest in its batch;
- `chunk`: every sequence cut into chunks of `chunk` frames (only its last chunk padded),
  random batches of chunks, no state between chunks; each chunk may be widened by `before`
  and `after` frames of its own sequence that are fed but not scored;
- `tbptt`: the same chunks read in order along parallel streams of sequences, the recurrent
  state carried from chunk to chunk and cut from the graph (truncated backpropagation
  through time), one optimizer update per chunk: the update is written here, in `step`;
- `packed`: sequences bucketed by length, each bucket a `PackedSequence`, so the model never
  steps over padding.

A model is a recurrent module over (B, T, F) tensors or PackedSequences whose
`forward_state(x, state)` also returns the state after the last frame (for tbptt). A loss is
`loss(outputs, targets, frame_mask or None, inputs)` over (..., F) tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlslab.audio.batching import chunk_streams, chunk_table, gather_chunks, length_buckets, pad_to_longest, unchunk
from dlslab.audio.frames import Frames
from dlslab.runs import Run
from dlslab.train.engine import History, batch_indices, fit

STRATEGIES = ("pad", "chunk", "tbptt", "packed")
SequenceLoss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SequenceSpec:
    """How sequences are batched; the same budget for every strategy."""

    epochs: int  # passes over the training frames (padding is measured over every epoch's batches)
    batch_frames: int = 640  # real frames per update
    chunk: int = 10  # frames per chunk (chunk and tbptt)
    before: int = 0  # chunk: frames of the same sequence fed before each chunk, not scored
    after: int = 0  # chunk: frames fed after each chunk (for a bidirectional model)
    tbptt_group: int = 8  # tbptt: sequences per stream in one group (more: less padding at stream ends)
    grad_clip: float | None = 1.0  # gradient-norm clipping of every update


@dataclass
class Strategy:
    """How one strategy feeds `fit`: its tensors, batch size and loss (or step), and the
    padding it costs, measured over the exact batches of every epoch."""

    tensors: tuple[torch.Tensor, ...]
    batch_size: int
    transform: Callable | None
    loss_fn: Callable | None
    step: Callable | None
    padded_frac: float  # padding among the frames the model steps over
    tensor_padded_frac: float  # padding among the frames in the batch tensors
    updates_per_epoch: float

    @property
    def batches_per_epoch(self) -> int:
        """Batches `fit` draws per epoch (for tbptt: groups of streams, each several updates)."""
        return -(-len(self.tensors[0]) // self.batch_size)


def chunk_windows(offsets: torch.Tensor, lengths: torch.Tensor, chunk: int, before: int = 0,
                  after: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every sequence cut into chunks of `chunk` frames (`chunk_table`), each widened by up to
    `before` and `after` frames of the same sequence on either side. Returns the frame index
    of every window position (C, W), where it holds a frame of the sequence (C, W), and where
    it is scored (C, W): the chunk's own real frames, which, taken row by row, are every frame
    once in store order. With before = after = 0 the windows are the chunks of `gather_chunks`."""
    table = chunk_table(offsets, lengths, chunk)
    steps = torch.arange(-before, chunk + after, device=offsets.device)  # (W,)
    index = table.starts[:, None] + steps  # (C, W)
    first = offsets[table.utterance][:, None]  # (C, 1)
    inside = (index >= first) & (index < first + lengths[table.utterance][:, None])
    scored = inside & (steps >= 0) & (steps < chunk)
    return index, inside, scored


def _per_batch(spec: SequenceSpec, data: Frames) -> int:
    """Whole sequences per batch that hold about `batch_frames` real frames."""
    return max(1, round(spec.batch_frames / float(data.lengths.float().mean())))


def pad_strategy(data: Frames, spec: SequenceSpec, loss: SequenceLoss, seed: int) -> Strategy:
    bs = _per_batch(spec, data)

    def transform(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        offsets, lengths = batch
        x, mask = pad_to_longest(data.noisy, offsets, lengths)  # (B, T, F), (B, T)
        y, _ = pad_to_longest(data.target, offsets, lengths)
        return [x, y, mask]

    real = total = 0
    for epoch in range(spec.epochs):
        for idx in batch_indices(len(data.lengths), bs, seed=seed, epoch=epoch, device=data.lengths.device):
            lengths = data.lengths[idx]
            real += int(lengths.sum())
            total += len(idx) * int(lengths.max())
    frac = 1 - real / total
    return Strategy((data.offsets, data.lengths), bs, transform, lambda model, x, y, mask: loss(model(x), y, mask, x),
                    None, frac, frac, -(-len(data.lengths) // bs))


def chunk_strategy(data: Frames, spec: SequenceSpec, loss: SequenceLoss) -> Strategy:
    index, inside, scored = chunk_windows(data.offsets, data.lengths, spec.chunk, spec.before, spec.after)
    bs = max(1, spec.batch_frames // spec.chunk)

    def transform(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        rows = batch[0]
        idx, keep = index[rows].clamp(0, len(data.noisy) - 1), inside[rows, :, None]  # (B, W), (B, W, 1)
        x = data.noisy[idx] * keep  # (B, W, F); outside the sequence: zeros, like padding
        return [x, data.target[idx] * keep, scored[rows]]

    frac = 1 - float(inside.sum()) / inside.numel()
    return Strategy((torch.arange(len(index), device=index.device),), bs, transform,
                    lambda model, x, y, mask: loss(model(x), y, mask, x), None, frac, frac, -(-len(index) // bs))


def tbptt_strategy(data: Frames, spec: SequenceSpec, loss: SequenceLoss, seed: int,
                   optimizer: torch.optim.Optimizer) -> Strategy:
    lanes = max(1, spec.batch_frames // spec.chunk)
    group = lanes * spec.tbptt_group

    def step(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, Any]:
        plan = chunk_streams(*batch, lanes=lanes, chunk=spec.chunk)
        state, losses = None, []
        for k in range(len(plan.starts)):
            x, mask = gather_chunks(data.noisy, plan.starts[k], plan.valid[k], spec.chunk)  # (lanes, chunk, F)
            y, _ = gather_chunks(data.target, plan.starts[k], plan.valid[k], spec.chunk)
            if state is not None:  # carry the state, cut the graph, restart where a sequence starts
                keep = (~plan.reset[k]).to(x.dtype)[None, :, None]  # (1, lanes, 1)
                state = (state[0].detach() * keep, state[1].detach() * keep)
            out, state = model.forward_state(x, state)
            value = loss(out, y, mask, x)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            if spec.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            optimizer.step()
            losses.append(value.detach())
        return {"loss": torch.stack(losses).mean()}

    real = total = updates = 0
    for epoch in range(spec.epochs):
        for idx in batch_indices(len(data.lengths), group, seed=seed, epoch=epoch, device=data.lengths.device):
            plan = chunk_streams(data.offsets[idx], data.lengths[idx], lanes=lanes, chunk=spec.chunk)
            real += int(plan.valid.sum())
            total += plan.valid.numel() * spec.chunk
            updates += len(plan.starts)
    frac = 1 - real / total
    return Strategy((data.offsets, data.lengths), group, None, None, step, frac, frac, updates / spec.epochs)


def packed_strategy(data: Frames, spec: SequenceSpec, loss: SequenceLoss) -> Strategy:
    buckets = length_buckets(data.lengths, _per_batch(spec, data))  # (n_buckets, B)

    def transform(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        idx = batch[0][0]
        idx = idx[idx >= 0]
        x, _ = pad_to_longest(data.noisy, data.offsets[idx], data.lengths[idx])  # (B, T, F)
        y, _ = pad_to_longest(data.target, data.offsets[idx], data.lengths[idx])
        return [x, y, data.lengths[idx]]

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.cpu()
        packed_x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        target = pack_padded_sequence(y, lengths, batch_first=True, enforce_sorted=False)
        return loss(model(packed_x).data, target.data, None, packed_x.data)  # packed frames only: no padding

    sizes = data.lengths[buckets.clamp_min(0)] * (buckets >= 0)  # (n_buckets, B) real frames
    tensor_frac = 1 - float(sizes.sum()) / float((sizes.max(1).values * (buckets >= 0).sum(1)).sum())
    return Strategy((buckets,), 1, transform, loss_fn, None, 0.0, tensor_frac, len(buckets))


def make_strategy(name: str, data: Frames, spec: SequenceSpec, loss: SequenceLoss, seed: int,
                  optimizer: torch.optim.Optimizer) -> Strategy:
    """Strategy `name` (one of STRATEGIES) over `data`; batches follow `seed` (as `fit`'s do)."""
    if name == "pad":
        return pad_strategy(data, spec, loss, seed)
    if name == "chunk":
        return chunk_strategy(data, spec, loss)
    if name == "tbptt":
        return tbptt_strategy(data, spec, loss, seed, optimizer)
    if name == "packed":
        return packed_strategy(data, spec, loss)
    raise ValueError(f"unknown batching strategy {name!r}; valid: {', '.join(STRATEGIES)}")


def fit_sequences(model: nn.Module, strategy: Strategy, optimizer: torch.optim.Optimizer, spec: SequenceSpec, *,
                  seed: int, scheduler: Any = None, evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                  run: Run | None = None, name: str = "train", verbose: bool = True) -> History:
    """`fit` with the strategy's batches (tbptt's step clips and updates itself)."""
    return fit(model, strategy.tensors, strategy.loss_fn, step=strategy.step, optimizer=optimizer,
               epochs=spec.epochs, batch_size=strategy.batch_size, transform=strategy.transform,
               evaluate=evaluate, scheduler=scheduler, grad_clip=spec.grad_clip if strategy.step is None else None,
               seed=seed, run=run, name=name, verbose=verbose)


@torch.no_grad()
def infer(model: nn.Module, strategy: str, data: Frames, chunk: int, sides: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Outputs (total, F) for every real frame of `data`, sequences whole and of any length:
    the chunk model as it was trained (chunks with `sides` = (before, after) context frames,
    run, the chunks' own frames stitched back exactly), the others over each whole sequence
    (packed, so no sequence ever sees another's padding)."""
    was_training = model.training
    model.eval()
    if strategy == "chunk":
        index, inside, scored = chunk_windows(data.offsets, data.lengths, chunk, *sides)
        x = data.noisy[index.clamp(0, len(data.noisy) - 1)] * inside[..., None]  # (C, W, F)
        out = unchunk(model(x), scored)
    else:
        x, mask = pad_to_longest(data.noisy, data.offsets, data.lengths)  # (N, T, F)
        packed = pack_padded_sequence(x, data.lengths.cpu(), batch_first=True, enforce_sorted=False)
        padded, _ = pad_packed_sequence(model(packed), batch_first=True, total_length=x.shape[1])
        out = padded[mask]
    model.train(was_training)
    return out  # (total, F)
