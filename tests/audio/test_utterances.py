"""audio.utterances: a corpus split as mask frames; level normalisation; fresh-babble remixing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dlslab.audio.corpus import CorpusSpec, read_pairs
from dlslab.audio.utterances import MaskSpec, corpus_parts, load_mask_frames, spread_by_length


def test_spread_by_length_picks_shortest_and_longest() -> None:
    seconds = [5.0, 1.0, 9.0, 3.0, 7.0]
    assert spread_by_length(seconds, 2)[:2] == [1, 2]
    assert sorted(spread_by_length(seconds, 3)) == [0, 1, 2, 3, 4]
    assert spread_by_length(seconds, 1)[0] == 2


@pytest.fixture(scope="module")
def dirs(data_root):
    """The lstm-denoise smoke corpus (two parts, cached)."""
    spec = CorpusSpec(n_train=24, n_test=6, max_seconds=6.0)
    return corpus_parts(spec, [1.0, 4.0])


def frames_of(data, u: int) -> torch.Tensor:
    return data.noisy[data.offsets[u]: data.offsets[u] + data.lengths[u]]


def test_fresh_babble_remix_changes_only_remixed_babble(dirs) -> None:
    fresh_spec = MaskSpec(remix=1, fresh_babble=True)
    shifted, _ = load_mask_frames(dirs, "train", dataclasses.replace(fresh_spec, fresh_babble=False), False)
    fresh, refs = load_mask_frames(dirs, "train", fresh_spec, False)
    kinds = [r["noise_type"] for d in dirs for r in read_pairs(d, "train")]
    assert "babble" in kinds and len(refs.seconds) == 2 * len(kinds)
    assert torch.equal(fresh.lengths, shifted.lengths)
    for i, kind in enumerate(kinds):
        original, copy = 2 * i, 2 * i + 1  # each utterance, then its remixed copy
        assert torch.equal(frames_of(fresh, original), frames_of(shifted, original))  # the corpus itself is kept
        if kind == "babble":
            assert not torch.allclose(frames_of(fresh, copy), frames_of(shifted, copy), rtol=0.1)


def test_level_norm_gives_every_utterance_unit_rms_input_and_keeps_its_spectrum(dirs) -> None:
    plain, plain_refs = load_mask_frames(dirs, "test", MaskSpec(), True)
    normed, normed_refs = load_mask_frames(dirs, "test", MaskSpec(level_norm=True), True)
    levels = []
    for u in range(len(plain.lengths)):
        rms = frames_of(normed, u).square().mean().sqrt()
        assert abs(float(rms) - 1) < 1e-4
        level = float(frames_of(plain, u).square().mean().sqrt())
        assert torch.allclose(frames_of(normed, u) * level, frames_of(plain, u), rtol=1e-4, atol=1e-9)
        levels.append(level)
        assert torch.equal(normed_refs.specs[u], plain_refs.specs[u])  # the audio rebuilt from the mask is untouched
    assert max(levels) > 1.5 * min(levels)  # the corpus's utterances do differ in level
    assert torch.equal(normed.target, plain.target)
    assert set(plain_refs.oracle) == {"ibm", "irm", "psm"} and len(plain_refs.clean) == len(plain.lengths)
