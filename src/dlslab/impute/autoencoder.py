"""A denoising autoencoder imputer of GAIN's generator shape, trained only to reconstruct
observed entries, a fraction `drop` of which it is not shown (no adversary, no hint): what
GAIN's adversarial term is measured against."""

from __future__ import annotations

import torch

from dlslab.impute.gain import propose, step_schedule
from dlslab.models.gan import ImputerMLP
from dlslab.runs import Run
from dlslab.train.engine import History, fit
from dlslab.train.optim import make_optimizer


def train_dae(x: torch.Tensor, m: torch.Tensor, *, iterations: int, batch_size: int = 128,
              drop: float = 0.5, lr: float = 1e-3, hidden: int | None = None, seed: int = 0,
              log_every: int = 500, run: Run | None = None, name: str = "dae",
              bf16: bool = False) -> tuple[ImputerMLP, History]:
    """Train the autoencoder on `x` (n, d) in [0, 1] with observed mask `m` (`bf16`: under bf16
    autocast on the CPU too; weights stay float32)."""
    n, d = x.shape
    torch.manual_seed(seed)
    model = ImputerMLP(d, hidden).to(x.device)

    def loss_fn(model: ImputerMLP, rows: torch.Tensor) -> torch.Tensor:
        xb, mb = x[rows], m[rows]
        shown = mb * (torch.rand_like(mb) >= drop).float()
        out = model(shown * xb, shown).float()
        return (((out - xb) ** 2) * mb).sum() / mb.sum().clamp_min(1.0)

    rows, batch, epochs = step_schedule(n, iterations, batch_size, log_every)
    history = fit(model, (rows.to(x.device),), loss_fn, optimizer=make_optimizer("adam", model.parameters(), lr),
                  epochs=epochs, batch_size=batch, cpu_bf16=bf16, seed=seed, run=run, name=name, verbose=False,
                  progress=False)
    return model, history


def dae_impute(model: ImputerMLP, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Observed entries unchanged; missing ones from the autoencoder fed the zero-filled row."""
    return propose(model, m * x, m)
