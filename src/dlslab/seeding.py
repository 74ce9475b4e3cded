"""One rule for the seeds of a run's parts.

A run has one seed (`cfg.seed`). Every part that draws random numbers of its own (a model of a
sweep, a fraction's subset, a corruption mask, a training split) takes `derive(cfg.seed, ...)`
with keys that name the part: `derive(seed, "subset", fraction)`, `derive(seed, "model", 3)`.
The result depends on the whole key, is the same in every process (no hash randomisation),
and different keys give unrelated seeds, so adding a part never shifts another's draws.
"""

from __future__ import annotations

import hashlib


def derive(seed: int, *keys: int | float | str) -> int:
    """A 63-bit seed for the part of a run named by `keys`, from the run's `seed`."""
    text = repr((int(seed), *keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
