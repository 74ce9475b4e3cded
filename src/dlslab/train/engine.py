"""The training engine: one loop for every study.

Data lives on the device as tensors; each epoch draws a permutation from a generator seeded
by (seed, epoch) and slices batches by tensor indexing, so there is no per-sample Python and
no DataLoader for in-memory data. The loop evaluates each epoch, early-stops on a monitored
metric, steps an LR schedule per batch, clips gradients, uses bf16 autocast on CUDA, and
checkpoints (model, optimizers, scheduler, RNG states, position, history) every epoch and
every `checkpoint_every_s` seconds inside long epochs, so a run killed at any point resumes
to the same result as one that was never interrupted.

A study supplies the model, the tensors, a loss `loss_fn(model, *batch) -> loss` (or
`(loss, {name: value})`) and, if it wants per-epoch metrics, `evaluate(model) -> {name: value}`.
Training with several optimizers (GANs) passes `step(model, batch) -> {name: value}` instead
of a loss and a dict of optimizers, so they are checkpointed too.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlslab import atomic
from dlslab.errors import DlsError, UsageError
from dlslab.progress import task as progress_task
from dlslab.runs import Run, safe_torch_load

Batch = Sequence[torch.Tensor]
LossFn = Callable[..., "torch.Tensor | tuple[torch.Tensor, dict[str, Any]]"]


# --- device, seeds, batching ----------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; "
                         "use --device cpu (or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The shuffle order of epoch `epoch`: a pure function of (seed, epoch), so a resumed
    run replays exactly the batches an uninterrupted one would have seen."""
    # Wrapped to the generator's 64 bits: seeds from seeding.derive are 63-bit.
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 64))
    return torch.randperm(n, generator=g).to(device)


def batch_indices(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True,
                  drop_last: bool = False, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Index tensors of the batches of one epoch."""
    order = epoch_permutation(n, seed, epoch, device) if shuffle else torch.arange(n, device=device)
    parts = list(order.split(batch_size))
    if drop_last and parts and len(parts[-1]) < batch_size and len(parts) > 1:
        parts.pop()
    return parts


def to_device(tensors: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device, non_blocking=True) for t in tensors)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, *,
            fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Model outputs over `x` in batches, in eval mode (train mode is restored after)."""
    was_training = model.training
    model.eval()
    outs = [(fn(model, xb) if fn else model(xb)) for xb in x.split(batch_size)]
    model.train(was_training)
    return torch.cat(outs)


def classifier_eval(x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048,
                    prefix: str = "val_") -> Callable[[nn.Module], dict[str, float]]:
    """An `evaluate` function: accuracy and cross-entropy of a classifier on (x, y)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        logits = predict(model, x, batch_size).float()
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
        return {f"{prefix}acc": acc, f"{prefix}loss": loss}

    return evaluate


def check_finite(tensors: Sequence[torch.Tensor], what: str) -> None:
    """A clear error if floating-point data holds NaN or inf (it would poison training)."""
    for i, t in enumerate(tensors):
        # min and max propagate NaN and show inf: one pass, no mask the size of the data
        if t.is_floating_point() and t.numel() and not torch.isfinite(torch.stack(torch.aminmax(t))).all():
            bad = (~torch.isfinite(t)).flatten(1).any(1).nonzero().flatten() if t.ndim > 1 else \
                (~torch.isfinite(t)).nonzero().flatten()
            raise UsageError(f"{what}: tensor {i} holds NaN or infinite values in {len(bad)} rows "
                             f"(first: {bad[:5].tolist()}); clean or drop those rows first")


# --- history and checkpoints --------------------------------------------------------------


@dataclass
class History:
    """What `fit` measured: one dict per epoch, the best epoch and the wall time."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based epoch of the best monitored value
    best_value: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0  # training time, summed over interrupted pieces

    def series(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    @property
    def last(self) -> dict[str, float]:
        return self.epochs[-1] if self.epochs else {}

    def to_state(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "best_value": self.best_value,
                "stopped_early": self.stopped_early, "seconds": self.seconds}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> History:
        return cls(**s)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(),
             "numpy": torch.from_numpy(np.frombuffer(
                 np.random.get_state()[1].astype(np.uint32).tobytes(), dtype=np.uint8).copy()),
             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = np.frombuffer(state["numpy"].numpy().tobytes(), dtype=np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic.torch_save(path, state)


# --- the loop ---------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    train: Batch,
    loss_fn: LossFn | None = None,
    *,
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
    epochs: int,
    batch_size: int,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    monitor: str | None = None,
    mode: str = "max",
    patience: int | None = None,
    restore_best: bool = False,
    scheduler: Any = None,
    grad_clip: float | None = None,
    transform: Callable[[Batch], Batch] | None = None,
    step: Callable[[nn.Module, Batch], dict[str, Any]] | None = None,
    amp: bool = True,
    cpu_bf16: bool = False,
    seed: int = 0,
    run: Run | None = None,
    name: str = "train",
    checkpoint_every_s: float = 60.0,
    progress: bool = True,
    verbose: bool = True,
    drop_last: bool = False,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Train `model` on the tensors `train` and return its History.

    With `run`, checkpoints go to `run/checkpoints/{name}.pt` and the finished training to
    `{name}.done.pt`: calling `fit` again with the same name resumes or returns at once.
    `cpu_bf16` trains under bf16 autocast on the CPU too (fast where the CPU has bf16 matrix
    units, e.g. AMX; weights and optimizer state stay float32).
    `monitor` names a metric from `evaluate` (or 'train_loss') for early stopping
    (`patience` epochs without improvement) and for `restore_best`.
    """
    if (loss_fn is None) == (step is None):
        raise UsageError("fit() needs exactly one of loss_fn or step")
    if not train or any(len(t) != len(train[0]) for t in train):
        raise UsageError("fit(): training tensors must be non-empty and of equal length")
    n = len(train[0])
    if n == 0:
        raise DlsError("fit(): the training set is empty")
    check_finite(train, "training data")
    torch.set_flush_denormal(True)  # see dlslab/train/__init__.py
    optimizers = optimizer if isinstance(optimizer, dict) else {"main": optimizer}
    device = next(model.parameters()).device
    # bf16 autocast: always on CUDA (with `amp`); on CPUs with bf16 matrix units only when asked
    use_amp = amp and (device.type == "cuda" or (device.type == "cpu" and cpu_bf16))
    sign = 1.0 if mode == "max" else -1.0

    ckpt = done = None
    if run is not None:
        ckpt = run.checkpoint_dir / f"{name}.pt"
        done = run.checkpoint_dir / f"{name}.done.pt"
        if done.exists():
            state = safe_torch_load(done, map_location=device)
            model.load_state_dict(state["model"])
            return History.from_state(state["history"])

    history = History()
    start_epoch, start_batch, best_state = 0, 0, None
    partial: dict[str, float] = {}
    if ckpt is not None and ckpt.exists():
        state = safe_torch_load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        for key, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        history = History.from_state(state["history"])
        start_epoch, start_batch = state["epoch"], state["batch"]
        partial = state.get("partial", {})
        best_state = state.get("best_model")
        if run is not None and verbose:
            run.info(f"[{name}] resuming at epoch {start_epoch + 1}, batch {start_batch}")

    def checkpoint(epoch: int, batch: int, partial: dict[str, float]) -> None:
        if ckpt is None:
            return
        save_state(ckpt, {
            "model": model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": _rng_state(), "history": history.to_state(), "epoch": epoch, "batch": batch,
            "partial": partial, "best_model": best_state,
        })

    bad_epochs = 0
    if history.best_epoch is not None:
        bad_epochs = len(history.epochs) - history.best_epoch
    last_save = time.monotonic()
    model.train()
    # one bar over every epoch's batches, under the study's bar when the runner shows one
    steps = n // batch_size if drop_last else -(-n // batch_size)
    shown = progress and verbose and not (run is not None and run.quiet)
    with progress_task(name, epochs * steps, enabled=shown) as show:
        for epoch in range(start_epoch, epochs):
            if history.stopped_early:
                break
            t0 = time.perf_counter()
            parts = batch_indices(n, batch_size, seed=seed, epoch=epoch, drop_last=drop_last, device=device)
            seen = int(partial.pop("_seen", 0))  # samples already seen by a mid-epoch checkpoint
            sums = {k: torch.tensor(v, device=device) for k, v in partial.items()}
            for bi in range(start_batch, len(parts)):
                idx = parts[bi]
                batch = [t.index_select(0, idx) for t in train]
                if transform is not None:
                    batch = transform(batch)
                if step is not None:
                    stats = step(model, batch)
                else:
                    with torch.autocast(device.type, dtype=torch.bfloat16) if use_amp else contextlib.nullcontext():
                        out = loss_fn(model, *batch)
                    loss, stats = out if isinstance(out, tuple) else (out, {})
                    opt = optimizers["main"]
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    opt.step()
                    stats = {"loss": loss, **stats}
                if scheduler is not None:
                    scheduler.step()
                for k, v in stats.items():
                    v = v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v), device=device)
                    sums[k] = sums[k].add(v, alpha=len(idx)) if k in sums else v.float() * len(idx)
                seen += len(idx)
                if ckpt is not None and time.monotonic() - last_save > checkpoint_every_s and bi + 1 < len(parts):
                    part = {k: float(v) for k, v in sums.items()} | {"_seen": seen}
                    checkpoint(epoch, bi + 1, part)
                    last_save = time.monotonic()
                if shown and bi % 10 == 0:
                    show(epoch * steps + bi + 1, f"epoch {epoch + 1}/{epochs} " + " ".join(
                        f"{k}={float(v) / max(seen, 1):.4f}" for k, v in sums.items()))
            show((epoch + 1) * steps, f"epoch {epoch + 1}/{epochs}")
            start_batch, partial = 0, {}
            record = {"epoch": epoch + 1}
            record |= {f"train_{k}": float(v) / max(seen, 1) for k, v in sums.items()}
            if any(not math.isfinite(v) for v in record.values()):
                record["diverged"] = 1.0
            record["lr"] = float(next(iter(optimizers.values())).param_groups[0]["lr"])
            if evaluate is not None:
                record |= {k: float(v) for k, v in evaluate(model).items()}
                model.train()
            record["epoch_s"] = time.perf_counter() - t0
            history.seconds += record["epoch_s"]
            history.epochs.append(record)
            if monitor is not None and monitor in record and math.isfinite(record[monitor]):
                value = record[monitor]
                if history.best_value is None or sign * value > sign * history.best_value:
                    history.best_value, history.best_epoch, bad_epochs = value, epoch + 1, 0
                    if restore_best:
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_epochs += 1
            if patience is not None and bad_epochs >= patience:
                history.stopped_early = True
            if run is not None:
                run.log(stage=name, **record)
                if verbose:
                    run.info(f"[{name}] " + "  ".join(_fmt(k, v) for k, v in record.items()))
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
            checkpoint(epoch + 1, 0, {})
            last_save = time.monotonic()
            if record.get("diverged"):
                break

    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if done is not None:
        save_state(done, {"model": model.state_dict(), "history": history.to_state()})
        ckpt.unlink(missing_ok=True)
    return history


def _fmt(key: str, value: float) -> str:
    if key == "epoch":
        return f"epoch {int(value):3d}"
    if key.endswith("_s"):
        return f"{key}={value:.2f}"
    return f"{key}={value:.4g}"


def clone_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
