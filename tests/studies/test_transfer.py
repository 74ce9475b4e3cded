"""Transfer copies exactly the tensors it reports; the smoke run learns above chance."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dlslab import runner
from dlslab.errors import ConfigError
from dlslab.models.airbench import AirbenchNet, names_from_resnet
from dlslab.models.resnet import ResNetFast, SmallCNN
from dlslab.studies.transfer import FrozenBackbone, transfer_weights
from study_runs import run_smoke


def _check_exact(source_state, before, target, report):
    after = target.state_dict()
    copied = dict(report.copied)
    assert set(copied) | set(report.new) == set(after) and not set(copied) & set(report.new)
    for name, value in after.items():
        if name in copied:
            assert torch.equal(value, source_state[copied[name]]), name
        else:
            assert torch.equal(value, before[name]), f"{name} changed but is reported new"


def test_same_architecture_copies_matching_names_and_shapes():
    torch.manual_seed(0)
    source = ResNetFast(5, widths=(8, 16, 32, 64), blocks=(1, 0, 1))
    target = ResNetFast(5, widths=(8, 16, 32, 48), blocks=(1, 1, 1))  # last stage narrower, extra block
    src, before = source.state_dict(), {k: v.clone() for k, v in target.state_dict().items()}
    report = transfer_weights(src, target)
    _check_exact(src, before, target, report)
    assert "stem.conv.weight" in dict(report.copied) and "stages.1.res.0.a.conv.weight" in report.new
    assert "stages.2.conv.weight" in report.new and "head.weight" in report.new  # shapes differ
    assert "stages.2.conv.weight" in report.unused

    report = transfer_weights(src, ResNetFast(5, widths=(8, 16, 32, 64)), exclude=("head.",))
    assert report.new == ["head.weight"] and report.unused == ["head.weight"]


def test_name_map_for_a_different_architecture():
    torch.manual_seed(0)
    source = SmallCNN(10, width=8, hidden=16)

    class Renamed(nn.Module):  # the same layers under other names
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
            self.fc, self.classifier = nn.Linear(16 * 64, 16), nn.Linear(16, 3)

    target = Renamed()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    name_map = {r"^conv1\.": "body.0.0.", r"^conv2\.": "body.1.0.", r"^fc\.": "neck.1.", r"^classifier\.": "head."}
    report = transfer_weights(source.state_dict(), target, name_map=name_map)
    _check_exact(source.state_dict(), before, target, report)
    assert [t for t, _ in report.copied] == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                             "fc.weight", "fc.bias"]
    assert report.new == ["classifier.weight", "classifier.bias"]  # 3 classes, not 10


def test_frozen_backbone_trains_only_the_head():
    torch.manual_seed(0)
    net = ResNetFast(3, widths=(8, 8, 8, 8))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    frozen = FrozenBackbone(net)
    frozen.train()
    opt = torch.optim.SGD([p for p in frozen.parameters() if p.requires_grad], lr=0.1)
    loss = nn.functional.cross_entropy(frozen(torch.randn(8, 3, 32, 32)), torch.arange(8) % 3)
    loss.backward()
    opt.step()
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]) != name.startswith("head."), name  # BN stats too


def test_resnet_source_maps_onto_airbench_by_role():
    """The cross-arch map copies each ResNet stage into the airbench group that does the same
    job, values exactly, and reports those tensors as mapped; what has no counterpart is new."""
    torch.manual_seed(0)
    source, target = ResNetFast(5, widths=(8, 16, 16), blocks=(1, 1)), AirbenchNet(5, widths=(8, 16, 16))
    src, before = source.state_dict(), {k: v.clone() for k, v in target.state_dict().items()}
    report = transfer_weights(src, target, name_map=names_from_resnet(3))
    _check_exact(src, before, target, report)
    mapped = dict(report.mapped)
    assert mapped["blocks.1.conv1.weight"] == "stages.0.conv.weight"
    assert mapped["blocks.2.conv2.weight"] == "stages.1.res.0.a.conv.weight"
    assert mapped["blocks.2.norm1.running_var"] == "stages.1.bn.running_var"
    assert dict(report.copied)["head.weight"] == "head.weight" and "head.weight" not in mapped
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in report.new if n.startswith("blocks")} == {"blocks.0"}
    assert "whiten.weight" in report.new and "stem.conv.weight" in report.unused
    assert {r["status"] for r in report.rows()} == {"copied", "mapped", "new", "source only (unused)"}


@pytest.mark.slow
def test_smoke_learns_above_chance_and_answers_from_its_numbers(data_root):
    outcome = run_smoke("transfer")
    head = outcome.metrics["headline"]
    assert head["source_test_acc"] > 0.35  # 5 classes: chance is 0.2
    for method in ("scratch", "init", "frozen", "finetune", "cross-arch"):
        assert head["test_acc"][method]["none"]["f4"] > 0.3, method
    assert head["other_source_test_acc"] > 0.35
    gains = [g for by_fraction in head["transfer_gain"].values() for g in by_fraction.values()]
    items = json.loads((outcome.dir / "report.json").read_text())["items"]
    answer = next(i["text"] for i in items if i["kind"] == "text").splitlines()[0]
    assert answer.startswith(f"Transfer beat training from scratch in {sum(g > 0 for g in gains)} of {len(gains)} ")
    tensors = outcome.metrics["tensors"]
    assert tensors["init"]["new"] == [] and "head.weight" in tensors["frozen"]["new"]
    assert tensors["init"]["mapped"] == {} and tensors["cross-arch"]["mapped"]["blocks.1.conv1.weight"] == "stages.0.conv.weight"
    assert (outcome.dir / "learning_curves.png").exists()


@pytest.mark.parametrize("override, key", [({"target_classes": [4, 5]}, "target_classes"),
                                           ({"methods": ["scratch", "warm"]}, "methods"),
                                           ({"backbone_lr_scale": 0.0}, "backbone_lr_scale"),
                                           ({"arch": "resnet-fast", "blocks": [1, 1]}, "methods")])
def test_bad_values_fail_at_plan_time(override, key):
    with pytest.raises(ConfigError, match=key):
        runner.plan_study("transfer", "smoke", override)
