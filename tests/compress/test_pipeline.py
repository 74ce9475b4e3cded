"""compress/pipeline.py: a network's epoch scale multiplies every stage's epochs, and nothing else;
the QAT stage's per-network and per-layer widths and its shared biases."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dlslab import runner
from dlslab.compress.layers import bake, weight_layers
from dlslab.compress.packed import load_packed, pack_model
from dlslab.compress.pipeline import (EPOCH_FIELDS, Mnist, StageSpec, bits_text, network_epochs, qat_layer_bits,
                                      quantise_pruned, quantised_label, quantised_stage_name)
from dlslab.compress.prune import prune_magnitude
from dlslab.errors import ConfigError
from dlslab.models import build_model


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


def test_the_qat_bits_of_a_network_are_its_own_list_else_qat_bits() -> None:
    model = build_model("lenet5")
    names = list(weight_layers(model))
    shared = runner.plan_study("compress", "smoke").cfg
    assert qat_layer_bits(shared, "lenet5", model) == dict.fromkeys(names, shared.qat_bits)
    own = runner.plan_study("compress", "smoke", {"lenet5_qat_bits": [3, 2, 2, 2]}).cfg
    assert qat_layer_bits(own, "lenet5", model) == dict(zip(names, [3, 2, 2, 2]))
    assert qat_layer_bits(own, "lenet300", build_model("lenet300")) == dict.fromkeys(["fc1", "fc2", "fc3"], own.qat_bits)
    for bad in ([2, 2, 2], [1, 2, 2, 2], [2, 2, 9, 2]):
        with pytest.raises(ConfigError, match="lenet5_qat_bits"):
            runner.plan_study("compress", "smoke", {"lenet5_qat_bits": bad})
    assert bits_text(dict(zip(names, [3, 2, 2, 2]))) == "3/2/2/2" and bits_text(dict.fromkeys(names, 2)) == "2"


def test_ternary_qat_with_shared_biases_packs_and_loads_to_the_same_predictions(tmp_path) -> None:
    """Per-layer widths put each layer on its own grid (conv1 at 3 bits, the rest ternary),
    biases shared into 2**bias_bits values, pruned weights held at zero; the packed file loads
    back into a fresh model that predicts exactly what the trained one does, and the shared
    biases make the file smaller than float32 biases."""
    torch.manual_seed(0)
    model = build_model("lenet5")
    names = list(weight_layers(model))
    prune_magnitude(model, dict(zip(names, [0.3, 0.85, 0.95, 0.8])))
    bake(model)
    zeros = {n: m.weight == 0 for n, m in weight_layers(model).items()}
    x, y = torch.randn(96, 1, 28, 28), torch.randint(0, 10, (96,))
    data = Mnist((x, y), (x, y))
    bits = dict(zip(names, [3, 2, 2, 2]))
    files = {}
    for bias_bits in (0, 4):
        q = quantise_pruned(model, model, data, StageSpec(batch_size=32), None, "qat", bits=bits, epochs=1,
                            distill=0.0, bias_bits=bias_bits)
        for name, layer in weight_layers(q).items():
            assert torch.all(layer.weight[zeros[name]] == 0), name  # pruned weights stayed zero
            assert len(torch.unique(layer.weight)) <= 2 ** bits[name] - 1, name  # 3 levels when ternary
            if bias_bits:
                assert len(torch.unique(layer.bias)) <= 2 ** bias_bits, name
        report = pack_model(q, tmp_path / f"b{bias_bits}.dlz", name="lenet5")
        loaded, _ = load_packed(report.path)
        assert torch.equal(loaded(x).argmax(1), q.eval()(x).argmax(1))
        for key, value in q.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        files[bias_bits] = report
    assert files[4].file_bytes < files[0].file_bytes - 1500  # ~2 KB of float32 biases become codes
    assert quantised_label(5, bits, 0.0, 4) == "prune round 5 + int3/2/2/2 quantisation-aware + 4-bit k-means biases"
    assert quantised_stage_name("lenet5", 5, bits, 4) == "lenet5-prune5-qat3-2-2-2-b4"
    assert quantised_stage_name("lenet5", 2, 3) == "lenet5-prune2-qat3"  # the name the earlier runs saved


def test_the_full_preset_makes_lenet5s_conv2_ternary_and_leaves_the_rest_at_qat_bits() -> None:
    """Only the full preset's LeNet-5 takes a ternary layer, conv2 (docs/studies/compress.md,
    2026-12-07); LeNet-300-100 keeps its validated 3 bits, and the quick preset is unchanged."""
    full, quick = (runner.plan_study("compress", p).cfg for p in ("full", "quick"))
    lenet5, lenet300 = build_model("lenet5"), build_model("lenet300")
    assert list(qat_layer_bits(full, "lenet5", lenet5).values()) == [3, 2, 3, 3]
    assert full.lenet5_qat_bias_bits > 0 and full.lenet5_qat_round == full.prune_rounds
    assert set(qat_layer_bits(full, "lenet300", lenet300).values()) == {3} and full.lenet300_qat_bias_bits == 0
    for net, model in (("lenet5", lenet5), ("lenet300", lenet300)):
        assert set(qat_layer_bits(quick, net, model).values()) == {3}
        assert getattr(quick, f"{net}_qat_bias_bits") == 0
