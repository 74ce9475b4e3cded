"""Remixing: more noisy training audio from the training audio alone.

A remixed copy keeps an utterance's clean speech and puts other noise under it: its own
noise circularly shifted by a random 10-90 % of its length, or (given a pool of other
utterances' speech) fresh babble of that speech at its noise's level, in both cases rescaled
by a gain drawn uniformly within ± `gain_db`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dlslab.audio.noise import babble


def remix_noise(clean: np.ndarray, noise: np.ndarray, copies: int, gain_db: float, rng: np.random.Generator,
          babble_pool: Sequence[np.ndarray] = ()) -> list[tuple[np.ndarray, np.ndarray]]:
    """`copies` new (noise, noisy) waves of the speech `clean` whose noise was `noise`."""
    n = len(noise)
    level = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
    out = []
    for _ in range(copies):
        if babble_pool:
            fresh = level * babble(n, rng, babble_pool)
        else:
            fresh = np.roll(noise, int(rng.integers(n // 10, n - n // 10 + 1)))  # a real move, not the same stretch
        gain = 10 ** (rng.uniform(-gain_db, gain_db) / 20)
        moved = (gain * fresh).astype(noise.dtype)
        out.append((moved, (clean + moved).astype(noise.dtype)))
    return out
