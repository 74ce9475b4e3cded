"""The sweep engine: designs, batched training equal to one-by-one training, diverged members,
worker processes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlslab.errors import UsageError
from dlslab.train import sweep
from dlslab.train.engine import classifier_eval, fit
from dlslab.train.optim import make_optimizer

BASE = {"optimizer": "adam", "init": "default", "activation": "relu", "lr": 1e-3, "width": 32, "depth": 2}


def test_ofat_sweeps_each_factor_around_the_baseline():
    points = sweep.ofat(BASE, {"lr": [1e-3, 0.1], "width": [16, 32]}, ["lr", "width"])
    assert [(f, p["lr"], p["width"]) for f, p in points] == [
        ("lr", 1e-3, 32), ("lr", 0.1, 32), ("width", 1e-3, 16), ("width", 1e-3, 32)]
    trials = sweep.trials_for(points, ["mnist"], [0, 1])
    assert len(trials) == 3 * 2  # the baseline appears in both factors but runs once per seed


def test_grid_and_best_lr_per_optimizer():
    points = sweep.grid(BASE, {"optimizer": ["sgd", "adam"], "lr": [1e-3, 0.1]}, ["optimizer", "lr"])
    assert {(p["optimizer"], p["lr"]) for _, p in points} == {("sgd", 1e-3), ("sgd", 0.1), ("adam", 1e-3), ("adam", 0.1)}
    rows = [{"optimizer": "sgd", "lr": 1e-3, "val_acc": 0.5}, {"optimizer": "sgd", "lr": 0.1, "val_acc": 0.9},
            {"optimizer": "adam", "lr": 1e-3, "val_acc": 0.95}, {"optimizer": "adam", "lr": 0.1, "val_acc": 0.3}]
    best = sweep.best_lr_per_optimizer(rows)
    assert best["sgd"]["lr"] == 0.1 and best["adam"]["lr"] == 1e-3


@pytest.mark.parametrize("levels, factors, message", [
    ({"lr": [-1.0]}, ["lr"], "invalid value"),
    ({"init": ["glorot"]}, ["init"], "invalid value"),
    ({"colour": ["red"]}, ["colour"], "unknown factor"),
])
def test_bad_factor_or_value_is_a_clear_error(levels, factors, message):
    with pytest.raises(UsageError, match=message):
        sweep.ofat(BASE, levels, factors)
    with pytest.raises(UsageError, match="at least two factors"):
        sweep.grid(BASE, {"lr": [0.1]}, ["lr"])


TRIALS = [
    sweep.Trial("mnist", "adam", "default", "relu", 1e-2, 32, 2, 0),
    sweep.Trial("mnist", "sgd", "xavier_uniform", "relu", 0.1, 32, 2, 1),
    sweep.Trial("mnist", "momentum", "kaiming_normal", "relu", 0.05, 32, 2, 2),
    sweep.Trial("mnist", "rmsprop", "orthogonal", "relu", 1e-3, 32, 2, 0),
]


SHARED_SEED = [  # one seed, so one batch for all: the wide first-layer path; mixed activations
    sweep.Trial("mnist", "adam", "default", "tanh", 1e-2, 32, 2, 3),
    sweep.Trial("mnist", "adam", "default", "relu", 1e-2, 32, 2, 3),
    sweep.Trial("mnist", "nesterov", "xavier_normal", "relu", 0.05, 32, 2, 3),
]


PADDED = [  # narrower trials zero-padded to the stack's width 32, a shallower one skipping a layer
    sweep.Trial("mnist", "adam", "default", "relu", 1e-2, 16, 2, 3),
    sweep.Trial("mnist", "adamw", "xavier_uniform", "tanh", 1e-2, 16, 2, 3),
    sweep.Trial("mnist", "momentum", "xavier_normal", "relu", 0.05, 32, 2, 3),
    sweep.Trial("mnist", "adam", "default", "sigmoid", 1e-2, 32, 1, 3),
]


@pytest.mark.parametrize("trials", [TRIALS, SHARED_SEED, PADDED], ids=["mixed-seeds", "shared-seed", "padded"])
def test_batched_training_equals_one_by_one(data_root, trials):
    """Same seeds: the stacked group and each trial trained alone through fit agree. Tolerance:
    weights within 1e-3 (float summation order differs between bmm and addmm) and test
    accuracy within 0.3 points."""
    data_spec = sweep.DataSpec("mnist", None, train_size=1500, val_size=500)
    spec = sweep.GroupSpec(tuple(trials), data_spec, epochs=2, batch_size=100, schedule="cosine")
    results = sweep.train_group(spec, keep_models=True)
    data = sweep.load_sweep_data(data_spec)
    n = len(data.y_train)
    total = spec.epochs * -(-n // spec.batch_size)
    for trial, res in zip(trials, results):
        model = sweep.build_member(trial, 784, 10)
        order = sweep.member_order(trial, n)
        opt = make_optimizer(trial.optimizer, model.parameters(), trial.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: sweep.lr_factor("cosine", s, total))
        hist = fit(model, (data.x_train[order], data.y_train[order]),
                   lambda m, x, y: nn.functional.cross_entropy(m(x), y), optimizer=opt, scheduler=sched,
                   epochs=spec.epochs, batch_size=spec.batch_size, evaluate=classifier_eval(data.x_val, data.y_val),
                   monitor="val_acc", restore_best=True, seed=spec.order_seed, verbose=False, progress=False)
        alone = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
        assert res["best_epoch"] == hist.best_epoch
        assert abs(res["test_acc"] - alone) <= 0.003, trial.key
        for a, b in zip(res["model"].parameters(), model.parameters()):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
        assert res["test_acc"] > 0.6  # and they learned (chance: 0.1)


def test_small_shapes_join_a_wider_stack_except_where_padding_is_not_exact():
    spec = lambda name: sweep.DataSpec(name)  # noqa: E731
    big = [sweep.Trial("mnist", "adam", "default", "relu", lr, 64, 2, 0) for lr in (1e-3, 1e-2, 0.1, 1.0)]
    narrow = sweep.Trial("mnist", "adam", "default", "relu", 1e-3, 32, 2, 0)
    too_narrow = sweep.Trial("mnist", "adam", "default", "relu", 1e-3, 8, 2, 0)  # 64 > 4 x 8
    sigmoid = sweep.Trial("mnist", "adam", "default", "sigmoid", 1e-3, 32, 2, 0)  # sigmoid(0) != 0
    deeper = sweep.Trial("mnist", "adam", "default", "relu", 1e-3, 32, 3, 0)
    shallower = sweep.Trial("mnist", "adam", "default", "sigmoid", 1e-3, 64, 1, 0)  # same width: no padding
    groups = sweep.make_groups([*big, narrow, too_narrow, sigmoid, deeper, shallower], spec, epochs=1,
                               batch_size=10, schedule="cosine", order_seed=0, max_stack=64)
    assert sorted((len(g.trials), g.depth, g.width) for g in groups) == [(1, 2, 8), (1, 2, 32), (1, 3, 32), (6, 2, 64)]
    assert {set(g.trials) == {*big, narrow, shallower} for g in groups} == {True, False}
    assert any(g.trials == (sigmoid,) for g in groups)
    off = sweep.make_groups([*big, narrow], spec, epochs=1, batch_size=10, schedule="cosine", order_seed=0,
                            max_stack=64, pad_ratio=1)
    assert sorted(len(g.trials) for g in off) == [1, 4]
    assert sweep.make_groups([*big, narrow], spec, epochs=1, batch_size=10, schedule="cosine", order_seed=0,
                             max_stack=3)[0].depth == 2  # a full stack splits; the parts keep their shapes


def test_padded_weights_stay_exactly_zero_under_every_optimizer():
    trials = [sweep.Trial("mnist", opt, "default", "gelu", 0.1, 5, 2, 0) for opt in sweep.OPTIMIZERS]
    stack = sweep.StackedMLP([sweep.padded_member(t, 20, 4, 12) for t in trials])
    optimizer = sweep.StackedOptimizer(stack.parameters(), sweep.optimizer_runs(trials))
    torch.manual_seed(0)
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
    start = [w.detach().clone() for w in stack.weights]
    for _ in range(5):
        optimizer.zero_grad()
        sweep.per_member_cross_entropy(stack(x), y).sum().backward()
        optimizer.step()
    first, hidden, head = stack.weights
    assert first[:, 5:].abs().max() == 0 and stack.biases[0][:, 5:].abs().max() == 0
    assert hidden[:, 5:].abs().max() == 0 and hidden[:, :, 5:].abs().max() == 0
    assert head[:, :, 5:].abs().max() == 0
    assert not torch.equal(first[:, :5], start[0][:, :5])  # the real units did train
    with pytest.raises(ValueError, match="padding"):
        sweep.padded_member(sweep.Trial("mnist", "adam", "default", "sigmoid", 0.1, 5, 2, 0), 20, 4, 12)


def test_diverged_member_is_marked_and_the_rest_still_learn(data_root):
    trials = (TRIALS[0], sweep.Trial("mnist", "sgd", "default", "relu", 1000.0, 32, 2, 0))
    spec = sweep.GroupSpec(trials, sweep.DataSpec("mnist", None, 1500, 500), epochs=2, batch_size=100)
    good, bad = sweep.train_group(spec)
    assert bad["diverged"] and not good["diverged"]
    assert good["test_acc"] > 0.6 and len(good["val_curve"]) == 2


def test_worker_processes_give_the_inline_results(data_root):
    data = sweep.data_specs(None, train_size=1000, val_size=500, split_seed=0)
    trials = [TRIALS[0], sweep.Trial("mnist", "adam", "default", "tanh", 1e-3, 16, 1, 0)]
    groups = sweep.make_groups(trials, data, epochs=1, batch_size=100, schedule="cosine", order_seed=0, max_stack=4)
    assert len(groups) == 2  # two shapes
    inline = {r["key"]: r["test_acc"] for r in sweep.run_groups(groups)}
    parallel = {r["key"]: r["test_acc"] for r in sweep.run_groups(groups, workers=2)}
    assert inline.keys() == parallel.keys()
    for key in inline:
        assert abs(inline[key] - parallel[key]) <= 0.003


def test_halving_keeps_the_top_share_of_each_rung():
    halving = sweep.Halving(rate=2, min_epochs=1)
    assert halving.rungs(8) == [1, 2, 4] and sweep.Halving(3, 2).rungs(20) == [2, 6, 18]
    assert halving.stops("mnist", 1, [0.9, 0.1, 0.8, 0.2]) == [False, True, False, True]
    # a later group is judged against everything recorded at that rung so far
    assert halving.stops("mnist", 1, [0.5, 0.95]) == [True, False]
    with pytest.raises(UsageError, match="rate"):
        sweep.Halving(rate=1)


def test_halving_stops_a_bad_config_early_and_survivors_are_unchanged(data_root):
    """sgd at lr 1e-4 barely moves: halving (rate 2, so one rung, at epoch 1) stops it there. The
    survivors train exactly as they would without halving (removal from the stack does not
    touch them)."""
    trials = (TRIALS[0], sweep.Trial("mnist", "sgd", "default", "relu", 1e-4, 32, 2, 0),
              sweep.Trial("mnist", "adam", "xavier_uniform", "relu", 3e-3, 32, 2, 0))
    spec = sweep.GroupSpec(trials, sweep.DataSpec("mnist", None, 1500, 500), epochs=2, batch_size=100)
    full = sweep.train_group(spec)
    halved = sweep.train_group(spec, halving=sweep.Halving(rate=2, min_epochs=1))
    assert [r["stopped_epoch"] for r in halved] == [None, 1, None]
    assert [r["epochs_trained"] for r in halved] == [2, 1, 2]
    assert halved[1]["val_curve"] == full[1]["val_curve"][:1]
    for a, b in [(full[0], halved[0]), (full[2], halved[2])]:
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-3)
        assert a["val_curve"] == pytest.approx(b["val_curve"], abs=1e-3)
    best = max(halved, key=lambda r: r["val_acc"])
    assert best["stopped_epoch"] is None and best["test_acc"] > 0.8


def test_halving_needs_the_inline_runner(data_root):
    with pytest.raises(UsageError, match="workers=1"):
        sweep.run_groups([], workers=2, halving=sweep.Halving())


def test_summary_aggregates_seeds_and_says_why_a_configuration_failed():
    from dlslab.train.sweep_summary import aggregate, halving_savings

    def result(config, seed, val, **extra):
        return {"dataset": "d", "config": config, "optimizer": "adam", "init": "zeros" if config == "bad" else "default",
                "activation": "relu", "lr": 1e-3, "width": 8, "depth": 1, "seed": seed, "group": "g", "member": seed,
                "test_acc": val, "val_acc": val, "final_train_loss": 2.3 if config == "bad" else 0.1, "train_s": 1.0,
                "best_epoch": 2, "diverged": False, "units_identical": config == "bad", "grad_ratio": 1.0,
                "val_curve": [val / 2, val], "stopped_epoch": None, "epochs_trained": 2, **extra}

    rows = aggregate([result("good", 0, 0.9), result("good", 1, 0.8), result("bad", 0, 0.1),
                      result("nan", 0, float("nan")), result("nan", 1, 0.7)], classes=10)
    good, bad = rows[("d", "good")], rows[("d", "bad")]
    assert good["n"] == 2 and good["test_acc"] == pytest.approx(0.85)
    assert good["test_std"] == pytest.approx(0.0707, abs=1e-4)  # the sample std (n - 1)
    assert rows[("d", "nan")]["test_acc"] == pytest.approx(0.7)  # a diverged seed's NaN is left out
    assert not good["failed"] and bad["failed"] and bad["why"].startswith("symmetry never broken")
    saved = halving_savings([result("good", 0, 0.9, stopped_epoch=1, epochs_trained=1), result("good", 1, 0.8)],
                            rungs=[1], epochs=2)
    assert saved == {"epochs_trained": 3, "epochs_full": 4, "saved": 0.25, "stopped": {"1": 1}}


def test_keep_freed_memory_is_accepted_by_glibc():
    import platform

    assert sweep.keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
