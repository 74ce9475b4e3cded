"""The engine learns, resumes exactly, early-stops, and never does per-sample work."""

from __future__ import annotations

import torch
from torch import nn

from dlslab.runs import Run
from dlslab.train.engine import batch_indices, classifier_eval, fit
from dlslab.train.optim import OPTIMIZERS, linear_decay, make_optimizer


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(600, 10, generator=g)
    w = torch.randn(10, 3, generator=g)
    y = (x @ w).argmax(1)
    return x, y


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))


def _loss(m, xb, yb):
    return nn.functional.cross_entropy(m(xb), yb)


def _train(run=None, epochs=8, name="t", **kw):
    x, y = _problem()
    model = _model()
    opt = make_optimizer("adam", model.parameters(), 1e-2)
    torch.manual_seed(123)
    hist = fit(model, (x[:500], y[:500]), _loss, optimizer=opt, epochs=epochs, batch_size=32,
               evaluate=classifier_eval(x[500:], y[500:]), monitor="val_acc", seed=5, run=run, name=name,
               verbose=False, **kw)
    return model, hist


def test_learns_a_small_problem() -> None:
    _, hist = _train()
    assert hist.epochs[0]["val_acc"] < hist.best_value
    assert hist.best_value > 0.9
    assert hist.series("train_loss")[-1] < 0.5 * hist.series("train_loss")[0]


def test_every_optimizer_reduces_the_loss() -> None:
    x, y = _problem()
    for name in OPTIMIZERS:
        model = _model()
        lr = {"sgd": 0.5, "adagrad": 0.1}.get(name, 1e-2)
        hist = fit(model, (x, y), _loss, optimizer=make_optimizer(name, model.parameters(), lr), epochs=3,
                   batch_size=64, verbose=False)
        assert hist.series("train_loss")[-1] < hist.series("train_loss")[0], name


def test_adam_is_fused_and_computes_torchs_update() -> None:
    """The fused kernel computes torch's Adam update: same weights as the foreach one after a step."""
    x, y = _problem()
    models = [_model().eval(), _model().eval()]  # eval: no dropout, the two see the same function
    fused = make_optimizer("adam", models[0].parameters(), 1e-2)
    plain = torch.optim.Adam(models[1].parameters(), lr=1e-2, foreach=True)
    assert fused.defaults["fused"]
    for model, opt in zip(models, (fused, plain)):
        for _ in range(3):
            opt.zero_grad()
            _loss(model, x, y).backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path) -> None:
    full_model, full = _train(Run(tmp_path / "a", "t", None, quiet=True))

    class Stop(Exception):
        pass

    def stop_after_3(epoch, record):
        if epoch == 3:
            raise Stop

    run_b = Run(tmp_path / "b", "t", None, quiet=True)
    try:
        _train(run_b, on_epoch_end=stop_after_3)
    except Stop:
        pass
    # the checkpoint of epoch 3 was not written (the callback raised first): resume from 2
    assert (tmp_path / "b" / "checkpoints" / "t.pt").exists()
    torch.manual_seed(999)  # a different global RNG state: the checkpoint must restore it
    resumed_model, resumed = _train(run_b)
    assert [e["train_loss"] for e in resumed.epochs] == [e["train_loss"] for e in full.epochs]
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    # a finished training is returned at once from its .done checkpoint
    again_model, again = _train(run_b)
    untimed = lambda h: [{k: v for k, v in e.items() if k != "epoch_s"} for e in h.epochs]  # noqa: E731
    assert untimed(again) == untimed(full) and torch.equal(next(again_model.parameters()), next(full_model.parameters()))


def test_mid_epoch_checkpoint_resumes_exactly(tmp_path) -> None:
    full_model, full = _train(Run(tmp_path / "a", "t", None, quiet=True), epochs=2)
    run_b = Run(tmp_path / "b", "t", None, quiet=True)
    calls = {"n": 0}

    def interrupt_mid_epoch(batch):
        calls["n"] += 1
        if calls["n"] == 20:  # epoch 2, batch 4 (16 batches per epoch)
            raise KeyboardInterrupt
        return batch

    try:
        _train(run_b, epochs=2, checkpoint_every_s=0.0, transform=interrupt_mid_epoch)
    except KeyboardInterrupt:
        pass
    state = torch.load(tmp_path / "b" / "checkpoints" / "t.pt", weights_only=True)
    assert state["epoch"] == 1 and state["batch"] == 3
    resumed_model, resumed = _train(run_b, epochs=2)
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert resumed.epochs[-1]["train_loss"] == full.epochs[-1]["train_loss"]


def test_early_stopping_and_restore_best() -> None:
    x, y = _problem()
    model = _model()
    # a learning rate that makes training diverge after a good start
    hist = fit(model, (x, y), _loss, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), epochs=50,
               batch_size=64, evaluate=classifier_eval(x, y), monitor="val_loss", mode="min", patience=2,
               restore_best=True, verbose=False)
    assert hist.stopped_early or len(hist.epochs) == 50
    final_loss = classifier_eval(x, y)(model)["val_loss"]
    assert abs(final_loss - hist.best_value) < 1e-5


def test_schedule_steps_per_batch_and_clipping() -> None:
    x, y = _problem()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = linear_decay(opt, total_steps=2 * 10)
    fit(model, (x[:320], y[:320]), _loss, optimizer=opt, scheduler=sched, epochs=2, batch_size=32,
        grad_clip=0.01, verbose=False)
    assert opt.param_groups[0]["lr"] == 0.0


def test_batches_cover_every_sample_once_per_epoch() -> None:
    parts = batch_indices(103, 10, seed=1, epoch=4)
    assert sorted(torch.cat(parts).tolist()) == list(range(103))
    assert not torch.equal(torch.cat(parts), torch.cat(batch_indices(103, 10, seed=1, epoch=5)))
    assert torch.equal(torch.cat(parts), torch.cat(batch_indices(103, 10, seed=1, epoch=4)))


def test_importing_the_engine_flushes_denormals_on_every_thread():
    """Denormals make CPU training steps 2-3x slower; the pool threads must flush them too.

    Run in a fresh process, so that the setting has to come from the import (and reach the
    thread pool created after it), not from an earlier call in this test session.
    """
    import subprocess
    import sys

    code = ("import dlslab.train, torch; torch.set_num_threads(2); "
            "x = torch.full((1 << 22,), 1e-38) * 0.01; print(int((x != 0).sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
    plain = subprocess.run([sys.executable, "-c", code.replace("import dlslab.train, ", "import ")],
                           capture_output=True, text=True, check=True)
    assert int(plain.stdout) > 0  # without the import the same product is denormal, not zero


def test_check_finite_names_the_bad_rows():
    import pytest

    from dlslab.errors import UsageError
    from dlslab.train.engine import check_finite

    x = torch.zeros(10, 3)
    check_finite([x], "data")
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.zeros(10, 3)
        x[7, 1] = bad
        with pytest.raises(UsageError, match=r"1 rows \(first: \[7\]\)"):
            check_finite([x], "data")


def test_derived_63_bit_seeds_shuffle_deterministically() -> None:
    from dlslab.seeding import derive

    seed = derive(0, "train")  # 63-bit
    a = torch.cat(batch_indices(50, 8, seed=seed, epoch=3))
    assert torch.equal(a, torch.cat(batch_indices(50, 8, seed=seed, epoch=3)))
    assert torch.equal(a.sort().values, torch.arange(50))
    assert not torch.equal(a, torch.cat(batch_indices(50, 8, seed=seed, epoch=4)))
