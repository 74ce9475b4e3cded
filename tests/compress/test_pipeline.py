"""compress/pipeline.py: a network's epoch scale multiplies every stage's epochs, and nothing else."""

from __future__ import annotations

import dataclasses

from dlslab import runner
from dlslab.compress.pipeline import EPOCH_FIELDS, StageSpec, network_epochs


def test_the_epoch_scale_multiplies_every_stage_of_that_network_only() -> None:
    cfg = runner.plan_study("compress", "smoke", {"lenet300_epoch_scale": 3}).cfg
    scaled = network_epochs(cfg, "lenet300")
    for name in EPOCH_FIELDS:
        assert getattr(scaled, name) == 3 * getattr(cfg, name), name
    assert dataclasses.replace(scaled, **{n: getattr(cfg, n) for n in EPOCH_FIELDS}) == cfg  # nothing else moved
    assert network_epochs(cfg, "lenet5") is cfg  # scale 1: the config itself


def test_the_stage_spec_reads_the_bf16_switch_from_the_config() -> None:
    cfg = runner.plan_study("compress", "quick").cfg
    assert StageSpec.of(cfg).bf16 is True
    assert StageSpec.of(runner.plan_study("compress", "full").cfg).bf16 is False
