"""audio.frames.Frames: utterances in one store, padded so context windows are plain indexing."""

from __future__ import annotations

import torch

from dlslab.audio.frames import Frames, window_rows


def test_stack_pads_each_utterance_and_marks_the_real_rows() -> None:
    parts = [torch.full((3, 2), 1.0), torch.full((5, 2), 2.0)]
    data = Frames.stack(parts, [p * 10 for p in parts], pad=2, tail=4, clean=[p + 1 for p in parts])
    assert len(data.noisy) == 2 + 3 + 2 + 5 + 4
    assert data.offsets.tolist() == [2, 7] and data.lengths.tolist() == [3, 5]
    assert data.real.tolist() == [False] * 2 + [True] * 3 + [False] * 2 + [True] * 5 + [False] * 4
    assert torch.equal(data.noisy[data.real][:, 0], torch.tensor([1.0] * 3 + [2.0] * 5))
    assert torch.equal(data.target[data.real], data.noisy[data.real] * 10)
    assert torch.equal(data.extra["clean"][data.real], data.noisy[data.real] + 1)
    assert data.noisy[~data.real].abs().sum() == 0


def test_chunk_starts_and_windows() -> None:
    data = Frames.stack([torch.ones(3, 1), torch.ones(5, 1)], [torch.ones(3, 1), torch.ones(5, 1)], pad=2, tail=2)
    starts = data.chunk_starts(2)
    assert starts.tolist() == [2, 4, 7, 9, 11]  # each utterance cut from its own start
    rows = window_rows(starts, 2, 2)
    assert rows.shape == (5, 4) and rows[0].tolist() == [0, 1, 2, 3]
    assert int(rows.max()) < len(data.noisy)  # the tail keeps the last window inside the store
    end_to_end = Frames.stack([torch.ones(3, 1), torch.ones(5, 1)], [torch.ones(3, 1), torch.ones(5, 1)])
    assert end_to_end.offsets.tolist() == [0, 3] and bool(end_to_end.real.all())
