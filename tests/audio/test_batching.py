"""Batching variable-length utterances: every strategy keeps each real frame exactly once,
in order, and marks padding; the model gives the same outputs packed or padded."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlslab.audio.batching import (chunk_streams, chunk_table, gather_chunks, length_buckets,
                                   length_mask, pad_to_longest, padded_fraction, stack_sequences,
                                   unchunk)
from dlslab.audio.masks import mask_loss
from dlslab.models.lstm_denoiser import LSTMDenoiser


def _utterances(lengths: list[int], bins: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, bins, generator=g) for n in lengths]


LENGTHS = [1, 9, 10, 11, 20, 23, 37, 5]


def test_chunk_then_unchunk_returns_exactly_the_frames() -> None:
    seqs = _utterances(LENGTHS)
    frames, offsets, lengths = stack_sequences(seqs)
    table = chunk_table(offsets, lengths, chunk=10)
    chunks, mask = gather_chunks(frames, table.starts, table.valid, table.chunk)
    assert chunks.shape == (len(table), 10, 3)
    # ceil(len / 10) chunks per utterance, in utterance order, numbered from 0
    assert table.utterance.tolist() == [i for i, n in enumerate(LENGTHS) for _ in range((n + 9) // 10)]
    assert table.position.tolist() == [k for n in LENGTHS for k in range((n + 9) // 10)]
    # only an utterance's last chunk is short; padding is zeros and marked as such
    last = torch.cat([table.position[1:] == 0, torch.tensor([True])])
    assert bool((table.valid[~last] == 10).all())
    assert int(mask.sum()) == sum(LENGTHS)
    assert bool((chunks[~mask] == 0).all())
    # exact round trip: no frame lost, duplicated or moved
    assert torch.equal(unchunk(chunks, mask), frames)
    back = unchunk(chunks, mask).split(lengths.tolist())
    assert all(torch.equal(a, b) for a, b in zip(back, seqs, strict=True))


def test_pad_to_longest_masks_padding() -> None:
    seqs = _utterances(LENGTHS)
    frames, offsets, lengths = stack_sequences(seqs)
    idx = torch.tensor([4, 0, 6])
    padded, mask = pad_to_longest(frames, offsets[idx], lengths[idx])
    assert padded.shape == (3, 37, 3)
    for row, i in enumerate(idx.tolist()):
        assert torch.equal(padded[row, : LENGTHS[i]], seqs[i])
        assert bool((padded[row, LENGTHS[i]:] == 0).all())
    assert torch.equal(mask, length_mask(lengths[idx]))
    assert abs(padded_fraction(mask) - (1 - (20 + 1 + 37) / (3 * 37))) < 1e-9


def test_chunk_streams_cover_every_chunk_once_with_resets_at_utterance_starts() -> None:
    seqs = _utterances(LENGTHS)
    frames, offsets, lengths = stack_sequences(seqs)
    plan = chunk_streams(offsets, lengths, lanes=3, chunk=10)
    table = chunk_table(offsets, lengths, 10)
    real = plan.valid > 0
    # every chunk of the table appears exactly once
    got = sorted(zip(plan.starts[real].tolist(), plan.valid[real].tolist(), strict=True))
    assert got == sorted(zip(table.starts.tolist(), table.valid.tolist(), strict=True))
    assert int(plan.reset.sum()) == len(LENGTHS)
    # reading each lane in step order yields its utterances whole and in time order
    for lane in range(plan.starts.shape[1]):
        starts = plan.starts[real[:, lane], lane]
        resets = plan.reset[real[:, lane], lane]
        assert bool(resets[0])
        for k in range(1, len(starts)):
            if not resets[k]:
                assert int(starts[k]) == int(starts[k - 1]) + 10
    # lanes are balanced: 15 chunks (longest utterance 4) fill 3 lanes of 5 steps
    assert plan.starts.shape[0] == 5
    real_frames = int(plan.valid.sum())
    assert real_frames == sum(LENGTHS)
    assert abs(plan.padded_fraction - (1 - real_frames / plan.valid.numel() / 10)) < 1e-9


def test_length_buckets_hold_similar_lengths() -> None:
    lengths = torch.tensor(LENGTHS)
    buckets = length_buckets(lengths, 3)
    assert buckets.shape == (3, 3)
    flat = buckets.flatten()
    assert sorted(flat[flat >= 0].tolist()) == list(range(len(LENGTHS)))
    assert (flat == -1).sum() == 1
    ordered = lengths[flat[flat >= 0]]
    assert torch.equal(ordered, ordered.sort().values)


def test_loss_ignores_padding() -> None:
    seqs = _utterances([7, 3, 5], bins=4, seed=1)
    target_seqs = [(s > 0).float() for s in _utterances([7, 3, 5], bins=4, seed=2)]
    frames, offsets, lengths = stack_sequences(seqs)
    targets, _, _ = stack_sequences(target_seqs)
    logits, mask = pad_to_longest(frames, offsets, lengths)
    target, _ = pad_to_longest(targets, offsets, lengths)
    clean = mask_loss(logits, target, mask)
    garbage_logits, garbage_target = logits.clone(), target.clone()
    garbage_logits[~mask] = torch.tensor([1e6, -1e6, float("nan"), 3.0])
    garbage_target[~mask] = 7.0
    assert torch.equal(mask_loss(garbage_logits, garbage_target, mask), clean)
    # and it is the plain loss over the real frames
    assert torch.allclose(clean, mask_loss(frames, targets))


def test_padding_garbage_does_not_change_a_causal_models_loss() -> None:
    torch.manual_seed(0)
    model = LSTMDenoiser(bins=4, hidden=8, layers=2, bidirectional=False)
    frames, offsets, lengths = stack_sequences([s.abs() for s in _utterances([7, 3, 5], bins=4)])
    target = (frames > 0.5).float()
    x, mask = pad_to_longest(frames, offsets, lengths)
    y, _ = pad_to_longest(target, offsets, lengths)
    loss = mask_loss(model(x), y, mask)
    x2, y2 = x.clone(), y.clone()
    x2[~mask] = 123.0
    y2[~mask] = 1.0 - y2[~mask]
    assert torch.allclose(mask_loss(model(x2), y2, mask), loss, atol=1e-6)


def test_packed_and_padded_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    seqs = [s.abs() for s in _utterances([9, 4, 6, 1], bins=5)]
    frames, offsets, lengths = stack_sequences(seqs)
    x, mask = pad_to_longest(frames, offsets, lengths)
    for bidirectional in (False, True):
        model = LSTMDenoiser(bins=5, hidden=6, layers=2, bidirectional=bidirectional).eval()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out_packed, out_lengths = pad_packed_sequence(model(packed), batch_first=True)
        assert torch.equal(out_lengths, lengths)
        alone = [model(s.unsqueeze(0))[0] for s in seqs]  # each sequence by itself, no padding
        assert torch.allclose(out_packed[mask], torch.cat(alone), atol=1e-5)
        if not bidirectional:  # causal: padding after the end cannot reach the real frames
            assert torch.allclose(model(x)[mask], torch.cat(alone), atol=1e-5)


def test_carried_state_over_chunks_equals_one_pass() -> None:
    torch.manual_seed(0)
    model = LSTMDenoiser(bins=4, hidden=5, layers=2).eval()
    utt = _utterances([23], bins=4)[0].abs()
    whole = model(utt.unsqueeze(0))[0]
    state, outs = None, []
    for piece in utt.split(10):
        out, state = model.forward_state(piece.unsqueeze(0), state)
        outs.append(out[0])
    assert torch.allclose(torch.cat(outs), whole, atol=1e-5)
