"""train.sequences: chunk windows, inference over whole sequences, and every strategy trains."""

from __future__ import annotations

import pytest
import torch

from dlslab.audio.frames import Frames
from dlslab.audio.masks import weighted_mask_loss
from dlslab.models.lstm_denoiser import LSTMDenoiser
from dlslab.train.sequences import STRATEGIES, SequenceSpec, chunk_windows, fit_sequences, infer, make_strategy


def three_utterances() -> tuple[LSTMDenoiser, torch.Tensor, Frames]:
    """A tiny seeded LSTM and random frames of three utterances of 3, 25 and 10 frames."""
    torch.manual_seed(0)
    model = LSTMDenoiser(bins=6, hidden=4, layers=1)
    frames = [torch.rand(n, 6) for n in (3, 25, 10)]
    data = Frames.stack(frames, [(f > 0.5).float() for f in frames])
    return model, data.noisy, data


def test_chunked_inference_covers_every_frame_once() -> None:
    model, frames, data = three_utterances()
    chunked = infer(model, "chunk", data, chunk=10)
    whole = infer(model, "pad", data, chunk=10)
    assert chunked.shape == whole.shape == frames.shape
    # within the first chunk of each utterance both see the same past; later they differ
    first = torch.cat([torch.arange(0, 3), torch.arange(3, 13), torch.arange(28, 38)])
    assert torch.allclose(chunked[first], whole[first], atol=1e-5)
    assert not torch.allclose(chunked[13:28], whole[13:28], atol=1e-4)


def test_chunk_windows_score_every_frame_once_and_stay_in_their_utterance() -> None:
    offsets, lengths = torch.tensor([0, 3, 28]), torch.tensor([3, 25, 10])
    plain, inside0, scored0 = chunk_windows(offsets, lengths, 10)
    assert torch.equal(inside0, scored0)  # no context: the windows are the chunks
    index, inside, scored = chunk_windows(offsets, lengths, 10, before=4, after=2)
    assert index.shape[1] == 16
    assert torch.equal(index[scored], torch.arange(38))  # every frame once, in store order
    assert torch.equal(plain[scored0], index[scored])
    utterance = torch.repeat_interleave(torch.arange(3), lengths)  # owner of each frame
    owners = utterance[index.clamp(0, 37)]  # (C, W)
    rows = utterance[index[:, 4]]  # each window's own utterance (its first chunk frame)
    assert torch.equal(inside, (index >= 0) & (index < 38) & (owners == rows[:, None]))
    assert int((inside & ~scored).sum()) > 0  # context frames are fed, not scored


def test_chunk_context_gives_each_chunk_the_frames_before_it() -> None:
    model, _, data = three_utterances()
    whole = infer(model, "pad", data, chunk=10)
    plain = infer(model, "chunk", data, chunk=10)
    widened = infer(model, "chunk", data, chunk=10, sides=(10, 0))
    assert widened.shape == whole.shape
    # the second chunk of the 25-frame utterance (frames 13-22): with 10 frames of context
    # its window starts where the utterance starts, so a unidirectional LSTM sees what it
    # sees over the whole utterance; without context it starts afresh
    second = slice(13, 23)
    assert torch.allclose(widened[second], whole[second], atol=1e-5)
    assert not torch.allclose(plain[second], whole[second], atol=1e-4)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_lowers_the_training_loss(name: str) -> None:
    torch.manual_seed(0)
    lengths = torch.randint(5, 40, (24,)).tolist()
    frames = [torch.rand(n, 8) for n in lengths]
    data = Frames.stack(frames, [(f > 0.5).float() for f in frames])  # a mask the input shows: learnable
    model = LSTMDenoiser(bins=8, hidden=16, layers=1)
    model.norm.fit(data.noisy)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    spec = SequenceSpec(epochs=6, batch_frames=80, chunk=5)
    strategy = make_strategy(name, data, spec, weighted_mask_loss("bce", 0.0), 0, optimizer)
    history = fit_sequences(model, strategy, optimizer, spec, seed=0, verbose=False)
    losses = history.series("train_loss")
    assert losses[-1] < 0.8 * losses[0], losses
    assert 0.0 <= strategy.padded_frac < 1.0 and strategy.updates_per_epoch >= 1
    assert (strategy.padded_frac == 0.0) == (name == "packed")
