"""Knowledge distillation: the loss, and the prune -> int4 QAT stage trained with it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlslab.compress.distill import distillation_loss, distillation_objective
from dlslab.compress.layers import bake
from dlslab.compress.prune import prune_magnitude
from dlslab.compress.quant import prepare_qat
from dlslab.errors import ConfigError
from dlslab.models import build_model
from dlslab.compress.pipeline import Mnist, StageSpec, train
from dlslab.runner import plan_study
from dlslab.train.engine import clone_model


def test_distillation_loss_is_zero_when_the_student_matches_the_teacher():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert distillation_loss(logits, logits.clone(), y, alpha=1.0, temperature=4.0).abs() < 1e-6
    other = torch.randn(8, 10)
    assert distillation_loss(other, logits, y, alpha=1.0, temperature=4.0) > 1e-3
    # alpha 0 is plain cross-entropy, whatever the teacher says
    assert torch.allclose(distillation_loss(other, logits, y, alpha=0.0, temperature=4.0),
                          nn.functional.cross_entropy(other, y))
    with pytest.raises(ValueError):
        distillation_loss(other, logits, y, alpha=1.5, temperature=4.0)


def test_distillation_pulls_the_student_towards_the_teacher():
    torch.manual_seed(0)
    teacher = nn.Linear(20, 10)
    student = nn.Linear(20, 10)
    x, y = torch.randn(64, 20), torch.randint(0, 10, (64,))
    loss = distillation_objective(teacher, alpha=1.0, temperature=2.0)
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    before = loss(student, x, y).item()
    for _ in range(50):
        opt.zero_grad()
        loss(student, x, y).backward()
        opt.step()
    assert loss(student, x, y).item() < 0.2 * before
    assert teacher.weight.grad is None and teacher.weight.requires_grad  # the caller's teacher is untouched


def test_distilled_qat_of_a_pruned_model_keeps_its_zeros_and_leaves_the_teacher_alone():
    torch.manual_seed(0)
    x, y = torch.randn(96, 1, 28, 28), torch.randint(0, 10, (96,))
    data = Mnist((x, y), (x, y))
    cfg = StageSpec(batch_size=32, distill_temperature=4.0)
    teacher = build_model("lenet300")
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = build_model("lenet300")
    model.load_state_dict(teacher_state)
    prune_magnitude(model, 0.8)
    bake(model)
    zeros = model.fc1.weight == 0
    start = model.fc1.weight.detach().clone()
    prepare_qat(model, 4, keep_zeros=True)
    train(model, data, cfg, None, "qat", 2, teacher=teacher, distill=0.9)
    bake(model)
    w = model.fc1.weight
    assert torch.all(w[zeros] == 0)  # pruned weights stayed exactly zero
    assert len(torch.unique(w)) <= 15  # on the int4 grid
    assert not torch.equal(w, start)  # and it trained
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_state[k]), k
    assert all(p.requires_grad for p in teacher.parameters())


def test_distillation_weight_decides_whether_a_pruned_student_follows_its_teacher():
    """The pruning rounds' retraining with `<net>_prune_distill` = 1 pulls a pruned student
    back towards its teacher; with labels only (0) it moves away, towards random labels."""
    torch.manual_seed(0)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    data = Mnist((x, y), (x, y))
    cfg = StageSpec(batch_size=32, distill_temperature=4.0, finetune_lr=3e-3)
    teacher = build_model("lenet300")
    with torch.no_grad():
        teacher.fc3.weight.mul_(20)  # confident outputs, so pruning visibly moves them

    def gap(student):  # KL(teacher || student) at temperature 1 over the batch
        with torch.no_grad():
            return torch.nn.functional.kl_div(student(x).log_softmax(1), teacher(x).log_softmax(1),
                                              reduction="batchmean", log_target=True).item()

    def pruned():  # the same pruning round's start every time (magnitude pruning is deterministic)
        student = clone_model(teacher)
        prune_magnitude(student, 0.8)
        return student

    start = gap(pruned())
    assert start > 0.01
    after = {}
    for w in (0.0, 1.0):
        student = pruned()
        train(student, data, cfg, None, "prune1", 3, teacher=teacher, distill=w)
        after[w] = gap(student)
    assert after[1.0] < 0.5 * start  # distilled: closer to the teacher than just after pruning
    assert after[0.0] > start  # labels only: further away


@pytest.mark.parametrize("bad", [{"lenet300_distill": 1.5}, {"lenet5_distill": -0.1}, {"distill_temperature": 0.0},
                                 {"lenet300_prune_distill": 1.2}, {"lenet5_prune_distill": -0.5}])
def test_bad_distillation_settings_fail_before_training(bad):
    with pytest.raises(ConfigError):
        plan_study("compress", "smoke", bad)
