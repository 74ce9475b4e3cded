"""GAIN (Yoon, Jordon & van der Schaar, ICML 2018): a generator proposes every entry of a row
from its observed entries, noise and the mask; a discriminator, given a hint about the mask,
guesses which entries were observed.

Trained through `train.engine.fit` with a `step` that updates the discriminator, then the
generator, so runs checkpoint and resume like any other training. A table of a few hundred
rows is a few batches: training steps, not passes, are the unit (`step_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from dlslab.impute.masks import hint, hint_reveal
from dlslab.models.gan import GAIN
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.engine import History, fit, predict
from dlslab.train.optim import make_optimizer

HintMode = Literal["half", "mask"]  # H = B*M + 0.5(1 - B) (the paper's text) | H = B*M (the authors' code)
Init = Literal["torch", "xavier"]  # torch's default Linear init | Xavier-normal weights, zero biases (the authors' code)
HoldoutShape = Literal["entries", "missing"]  # observed entries at random | another row's missing entries, in some rows


def xavier_init(model: nn.Module) -> nn.Module:
    """Xavier-normal weights and zero biases in every linear layer, as the authors' code."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def step_schedule(n: int, iterations: int, batch_size: int, log_every: int) -> tuple[torch.Tensor, int, int]:
    """Row indices for one logged epoch of `log_every` steps, the batch size and the epochs."""
    batch = min(batch_size, n)
    steps = min(log_every, iterations)
    epochs = max(1, math.ceil(iterations / steps))
    rows = torch.arange(n).repeat(math.ceil(steps * batch / n))[: steps * batch]
    return rows, batch, epochs


def propose(net: nn.Module, x_in: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """`net(x_in, m)` over all rows in batches, then the observed entries of `x_in` put back:
    an imputer never changes what was observed."""
    d = x_in.shape[1]
    out = predict(net, torch.cat([x_in, m], 1), fn=lambda f, xb: f(xb[:, :d], xb[:, d:]))
    return torch.where(m.bool(), x_in, out)


def train_gain(x: torch.Tensor, m: torch.Tensor, *, iterations: int, batch_size: int = 128,
               hint_rate: float = 0.9, alpha: float = 100.0, lr: float = 1e-3, hidden: int | None = None,
               hint_mode: HintMode = "half", init: Init = "torch", holdout: float = 0.0,
               holdout_shape: HoldoutShape = "entries", seed: int = 0, log_every: int = 500, run: Run | None = None, name: str = "gain",
               evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
               bf16: bool = False, verbose: bool = False) -> tuple[GAIN, History]:
    """Train GAIN on `x` (n, d) in [0, 1] (missing entries are ignored) with observed mask `m`.
    `hint_mode` "half" gives the discriminator H = B*M + 0.5(1 - B) (the paper), "mask" H = B*M
    (the authors' code). With `holdout` > 0 that fraction of the observed entries is hidden from
    training, and the weights of the logged epoch with the lowest RMSE on them are kept (early
    stopping on entries whose values are known; `val_rmse` in the log; `holdout_shape`: see
    `holdout_mask`). `bf16` runs both
    networks under bf16 autocast (weights, losses and imputation stay float32). Logs, per epoch: d_loss
    (discriminator BCE), g_adv (generator's adversarial loss on the missing entries), mse
    (reconstruction of the observed entries)."""
    n, d = x.shape
    monitor = None
    if holdout > 0:
        held = holdout_mask(m, holdout, holdout_shape, seed)
        m = m - held  # train on the rest

        def evaluate(model: nn.Module) -> dict[str, float]:
            err = (gain_impute(model, x, m, seed) - x) * held
            return {"val_rmse": (err.pow(2).sum() / held.sum().clamp_min(1.0)).sqrt().item()}

        monitor = "val_rmse"
    torch.manual_seed(seed)
    model = GAIN(d, hidden).to(x.device)
    if init == "xavier":
        xavier_init(model)
    opt_g = make_optimizer("adam", model.generator.parameters(), lr)
    opt_d = make_optimizer("adam", model.discriminator.parameters(), lr)
    bce = nn.functional.binary_cross_entropy_with_logits

    def cast() -> torch.autocast:
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(model: GAIN, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        xb, mb = x[batch[0]], m[batch[0]]
        x_tilde = mb * xb + (1 - mb) * 0.01 * torch.rand_like(xb)  # noise in the missing entries
        reveal = hint_reveal(tuple(mb.shape), hint_rate, mb.device)
        h = hint(mb, reveal) if hint_mode == "half" else reveal * mb
        with torch.no_grad(), cast():
            proposal = model.generator(x_tilde, mb).float()
        with cast():
            d_logits = model.discriminator(mb * xb + (1 - mb) * proposal, h).float()
        d_loss = bce(d_logits, mb)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        with cast():
            proposal = model.generator(x_tilde, mb).float()
            logits = model.discriminator(mb * xb + (1 - mb) * proposal, h).float()
        g_adv = -((1 - mb) * nn.functional.logsigmoid(logits)).mean()  # fool D on the imputed entries
        mse = ((mb * (proposal - xb)) ** 2).mean() / mb.mean()
        opt_g.zero_grad(set_to_none=True)
        (g_adv + alpha * mse).backward()
        opt_g.step()
        return {"d_loss": d_loss.detach(), "g_adv": g_adv.detach(), "mse": mse.detach()}

    rows, batch, epochs = step_schedule(n, iterations, batch_size, log_every)
    history = fit(model, (rows.to(x.device),), step=step, optimizer={"G": opt_g, "D": opt_d},
                  epochs=epochs, batch_size=batch, evaluate=evaluate, monitor=monitor, mode="min",
                  restore_best=monitor is not None, seed=seed, run=run, name=name, verbose=verbose, progress=verbose)
    return model, history


def holdout_mask(m: torch.Tensor, fraction: float, shape: HoldoutShape, seed: int) -> torch.Tensor:
    """The observed entries (1 in `m`) GAIN hides to pick its epoch. "entries": each observed
    entry with probability `fraction`. "missing": in a `fraction` of the rows, the entries that
    another row, drawn at random, is missing -- a holdout shaped like the missingness (a square
    where squares are missing), so the epoch it picks is the one that fills such gaps best."""
    g = torch.Generator().manual_seed(derive(seed, "holdout"))
    if shape == "entries":
        return m * (torch.rand(m.shape, generator=g) < fraction).float().to(m.device)
    if shape != "missing":
        raise ValueError(f"unknown holdout shape {shape!r}; valid: entries, missing")
    rows = (torch.rand(len(m), 1, generator=g) < fraction).float().to(m.device)
    donors = torch.randint(len(m), (len(m),), generator=g).to(m.device)
    return m * (1 - m[donors]) * rows


def gain_impute(model: GAIN, x: torch.Tensor, m: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Observed entries unchanged; missing ones from the generator (noise drawn with `seed`)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    x_tilde = m * x + (1 - m) * 0.01 * torch.rand(x.shape, generator=g, device=x.device)
    return torch.where(m.bool(), x, propose(model.generator, x_tilde, m))
