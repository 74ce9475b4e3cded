"""A tiny study used by the foundation's tests: a logistic regression on a synthetic
two-class problem, trained through the engine with checkpoints in the run folder.

`TOY_SLEEP` (seconds per epoch) lets a test kill it part-way."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from torch import nn

from dlslab.config import StudyConfig
from dlslab.report.plots import line_plot
from dlslab.train.engine import classifier_eval, fit


@dataclass
class Config(StudyConfig):
    epochs: int = 6  # passes over the data
    lr: float = 0.1  # SGD learning rate
    hidden: int = 16  # hidden units
    dropout: float = 0.2  # so RNG state matters for an exact resume


PRESETS = {"smoke": {"epochs": 3}, "quick": {}, "full": {"epochs": 20}}


def data_needs(cfg: Config) -> list[str]:
    return []


def make_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 2, generator=g)
    y = ((x[:, 0] * x[:, 1]) > 0).long()
    return x, y


def run(cfg: Config, run) -> dict:
    x, y = make_data(cfg.seed)
    model = nn.Sequential(nn.Linear(2, cfg.hidden), nn.Tanh(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 2))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    sleep = float(os.environ.get("TOY_SLEEP", "0"))
    hist = fit(model, (x[:400], y[:400]), lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb),
               optimizer=opt, epochs=cfg.epochs, batch_size=32, evaluate=classifier_eval(x[400:], y[400:]),
               monitor="val_acc", seed=cfg.seed, run=run, name="toy",
               on_epoch_end=(lambda e, r: time.sleep(sleep)) if sleep else None)
    run.add_figure(line_plot({"val": (list(range(1, len(hist.epochs) + 1)), hist.series("val_acc"))},
                             title="val acc", xlabel="epoch", ylabel="acc"), "val_acc", title="Validation accuracy")
    run.add_table("Per epoch", hist.epochs)
    acc = hist.last["val_acc"]
    run.test_data(x[400:], y[400:])
    met = run.target("val_acc", acc, at_least=0.8, anchor="a toy target")
    run.answer(f"The network reaches {acc:.1%} validation accuracy, "
               f"{'above' if met else 'below'} the toy target of 80%.")
    w = [p.detach().flatten().tolist() for p in model.parameters()]
    return {"headline": {"val_acc": hist.last["val_acc"]}, "final_weights": w,
            "train_loss": hist.series("train_loss")}
