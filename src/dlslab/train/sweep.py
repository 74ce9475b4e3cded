"""Hyperparameter sweeps over MLP classifiers: designs, batched training, parallel groups.

Designs. A design point is a dict of the six factors (optimizer, init, activation, lr, width,
depth). `ofat` sweeps each factor alone around a baseline; `grid` takes the product of the
chosen factors; `lr_per_optimizer` runs every optimizer at every learning rate so that
`best_lr_per_optimizer` can compare optimizers each at its own best rate (the learning rate is
a nuisance parameter there). Each point runs once per seed: a `Trial`.

Training. Trials that share layer shapes and seed (dataset, width, depth, seed; optimizer,
learning rate, initializer and activation may differ) are trained together as one `StackedMLP`
by a `step` passed to `train.engine.fit`, so checkpoints and resume come from the engine. Each
layer of the stack is one (M, out, in) parameter, so a step is one batched matmul per layer
and, per run of members sharing (optimizer, lr), one fused optimizer call over slices of the
stacked tensors (`StackedOptimizer`). Every member keeps its own optimizer state, its own
initial weights and its own data order, both drawn from its seed: the order is a fixed
permutation of the training set composed with the engine's per-epoch shuffle. Members of a
group share the seed, hence the batch, so the group's first layer is one wide
(M * width, D) x (D, B) matmul (groups of mixed seeds also work, with a batched matmul per
member). A trial whose shape is nearly alone joins a wider or deeper stack instead of training
in a stack of its own, where per-step overhead dominates: zero-padded to the stack's width
(exact for activations with act(0) = 0) and skipping its extra layers. A trial's result does not depend on which other trials share its group: training it
alone with `fit(mlp, (x[order], y[order]), seed=order_seed)` and its own torch optimizer
gives the same numbers up to float summation order. `precision='bf16'` runs the matmuls in
bfloat16 (weights, gradients and optimizer state stay float32): several times faster on CPUs
with AMX. A member whose loss turns non-finite is marked dead and stops updating without
stopping its group.

Successive halving. With a `Halving`, trials whose validation accuracy falls outside the top
1/rate of the results recorded at a rung (ASHA's rule) stop there and leave their stack, so
the rest of the group trains faster; survivors train exactly as without it.

Scale-out. Groups are independent: `run_groups` trains them in this process, in worker
processes (`workers`), or as tasks on a Ray cluster (`ray_address`).
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import itertools
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import adagrad, adam, rmsprop, sgd

from dlslab.data.images import load_images
from dlslab.data.splits import stratified_indices
from dlslab.errors import UsageError
from dlslab.models.mlp import ACTIVATIONS, INITS, MLP, StackedMLP, resize_hidden, zero_preserving
from dlslab.runs import Run
from dlslab.train.engine import fit
from dlslab.train.optim import ADAMW_DECAY, MOMENTUM, OPTIMIZERS

FACTORS: tuple[str, ...] = ("optimizer", "init", "activation", "lr", "width", "depth")
PAD_INTO = 4  # shapes with fewer trials join a wider stack of at least this many (`make_groups`)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


# --- designs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One configuration of the six factors, on one dataset, with one seed."""

    dataset: str
    optimizer: str
    init: str
    activation: str
    lr: float
    width: int
    depth: int
    seed: int

    @property
    def settings(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in FACTORS}

    @property
    def config(self) -> str:
        """The configuration without dataset and seed, e.g. 'adam lr=0.001 relu default 2x256'."""
        return f"{self.optimizer} lr={self.lr:g} {self.activation} {self.init} {self.depth}x{self.width}"

    @property
    def key(self) -> str:
        return f"{self.dataset} {self.config} seed={self.seed}"


def check_levels(levels: dict[str, Sequence[Any]]) -> None:
    """Every factor value must be one we know; a clear UsageError otherwise."""
    valid: dict[str, Callable[[Any], bool]] = {
        "optimizer": lambda v: v in OPTIMIZERS, "init": lambda v: v in INITS,
        "activation": lambda v: v in ACTIVATIONS, "lr": lambda v: isinstance(v, float) and 0 < v <= 10,
        "width": lambda v: isinstance(v, int) and 1 <= v <= 65536,
        "depth": lambda v: isinstance(v, int) and 1 <= v <= 64,
    }
    for factor, values in levels.items():
        if factor not in valid:
            raise UsageError(f"unknown factor {factor!r}; valid factors: {', '.join(FACTORS)}")
        bad = [v for v in values if not valid[factor](v)]
        if bad:
            raise UsageError(f"factor {factor}: invalid value(s) {', '.join(map(str, bad))} "
                             "(learning rates in (0, 10], widths >= 1, depths 1..64)")
        if not values:
            raise UsageError(f"factor {factor}: no values to sweep; give at least one")


def ofat(baseline: dict[str, Any], levels: dict[str, Sequence[Any]],
         factors: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """(factor, settings) for each value of each factor, the other factors at the baseline."""
    check_levels({f: [v] for f, v in baseline.items()})
    check_levels({f: levels.get(f, ()) for f in factors})
    return [(f, baseline | {f: v}) for f in factors for v in levels[f]]


def grid(baseline: dict[str, Any], levels: dict[str, Sequence[Any]],
         factors: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """(label, settings) for every combination of `factors`, the rest at the baseline."""
    if len(factors) < 2:
        raise UsageError(f"design=grid needs at least two factors (got {', '.join(factors) or 'none'}); "
                         "e.g. --set factors=optimizer,lr")
    check_levels({f: [v] for f, v in baseline.items()})
    check_levels({f: levels.get(f, ()) for f in factors})
    label = "*".join(factors)
    return [(label, baseline | dict(zip(factors, combo)))
            for combo in itertools.product(*(levels[f] for f in factors))]


def lr_per_optimizer(baseline: dict[str, Any], optimizers: Sequence[str],
                     lrs: Sequence[float]) -> list[tuple[str, dict[str, Any]]]:
    """Every optimizer at every learning rate, for `best_lr_per_optimizer`."""
    check_levels({"optimizer": optimizers, "lr": lrs})
    return [("optimizer", baseline | {"optimizer": o, "lr": lr}) for o in optimizers for lr in lrs]


@dataclass(frozen=True)
class DesignSpec:
    """Which configurations a sweep trains (field names as in the mlp-hparams config)."""

    design: str = "ofat"  # ofat: each factor alone around the baseline; grid: all combinations
    factors: tuple[str, ...] = FACTORS  # factors to sweep
    optimizers: tuple[str, ...] = ()  # levels of each factor
    inits: tuple[str, ...] = ()
    activations: tuple[str, ...] = ()
    lrs: tuple[float, ...] = ()
    widths: tuple[int, ...] = ()
    depths: tuple[int, ...] = ()
    optimizer: str = "adam"  # the baseline
    init: str = "default"
    activation: str = "relu"
    lr: float = 1e-3
    width: int = 512
    depth: int = 2
    tune_lr: bool = True  # compare optimizers each at its best of `tune_lrs` (plus the baseline lr)
    tune_lrs: tuple[float, ...] = ()
    deep_activations: bool = True  # also sweep activations at the deepest depth

    @classmethod
    def of(cls, cfg: Any) -> DesignSpec:
        return cls(**{f.name: (tuple(v) if isinstance(v := getattr(cfg, f.name), list) else v)
                      for f in fields(cls)})

    @property
    def baseline(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in FACTORS}


def design_points(spec: DesignSpec) -> list[tuple[str, dict[str, Any]]]:
    """(label, settings) of every configuration the design asks for; UsageError on a bad one."""
    levels = {"optimizer": spec.optimizers, "init": spec.inits, "activation": spec.activations,
              "lr": spec.lrs, "width": spec.widths, "depth": spec.depths}
    base = spec.baseline
    if not spec.factors:
        raise UsageError("factors is empty: name at least one of " + ", ".join(FACTORS))
    if len(set(spec.factors)) != len(spec.factors):
        raise UsageError(f"factors={','.join(spec.factors)}: a factor is named twice")
    if spec.design == "grid":
        return grid(base, levels, spec.factors)
    tuned = spec.tune_lr and "optimizer" in spec.factors
    points = [("baseline", base)]
    points += ofat(base, levels, [f for f in spec.factors if not (tuned and f == "optimizer")])
    if tuned:
        points += lr_per_optimizer(base, spec.optimizers, sorted(set(spec.tune_lrs) | {spec.lr}))
    deep = max(spec.depths)
    if spec.deep_activations and "activation" in spec.factors and deep != spec.depth:
        points += [(f"activation@depth{deep}", base | {"activation": a, "depth": deep}) for a in spec.activations]
    return points


def best_lr_per_optimizer(rows: Sequence[dict[str, Any]], metric: str = "val_acc") -> dict[str, dict[str, Any]]:
    """{optimizer: the row (a configuration aggregated over seeds, with `metric`) at its best lr}."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        cur = best.get(row["optimizer"])
        if cur is None or row[metric] > cur[metric]:
            best[row["optimizer"]] = row
    return best


def trials_for(points: Sequence[tuple[str, dict[str, Any]]], datasets: Sequence[str],
               seeds: Sequence[int]) -> list[Trial]:
    """The distinct trials of a design, in a stable order."""
    out = {Trial(dataset=d, seed=s, **p): None for d in datasets for _, p in points for s in seeds}
    return list(out)


# --- data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """Which examples a sweep trains, validates and tests on."""

    dataset: str
    data_dir: str | None = None
    train_size: int = 0  # 0 = all training examples not held out
    val_size: int = 5000  # held out of the training set, stratified
    split_seed: int = 0


@dataclass
class SweepData:
    """Flattened, standardised float tensors (N, D) and int64 labels, on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]


@lru_cache(maxsize=4)
def load_sweep_data(spec: DataSpec, device: str = "cpu") -> SweepData:
    """The dataset as a sweep uses it (cached per process: read-only)."""
    images = load_images(spec.dataset, spec.data_dir)
    n = len(images.train_y)
    if not 0 < spec.val_size < n:
        raise UsageError(f"val_size={spec.val_size}: must be between 1 and {n - 1}")
    rest, val = stratified_indices(images.train_y, spec.val_size / n, spec.split_seed)
    if spec.train_size:
        if spec.train_size > len(rest):
            raise UsageError(f"train_size={spec.train_size}: only {len(rest)} training examples remain "
                             f"after holding out {spec.val_size}; use at most that (0 = all)")
        _, chosen = stratified_indices(images.train_y[rest], spec.train_size / len(rest), spec.split_seed + 1)
        rest = rest[chosen]
    flat = lambda x: x.flatten(1).float().div_(255)  # noqa: E731
    x_train = flat(images.train_x[rest])
    mean, std = x_train.mean(), x_train.std()
    norm = lambda x: ((flat(x) - mean) / std).to(device)  # noqa: E731
    return SweepData(norm(images.train_x[rest]), images.train_y[rest].to(device),
                     norm(images.train_x[val]), images.train_y[val].to(device),
                     norm(images.test_x), images.test_y.to(device), list(images.classes))


# --- one group: many same-shape MLPs trained together ----------------------------------------


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 256 MiB for reuse (once per process).

    A stacked step allocates and frees gradients, activations and casts of up to ~80 MiB; by default
    glibc hands each such block back to the kernel and faults its pages in again on the next
    step (measured on the full mlp-hparams sweep: 9.6 of 33 CPU-s in the kernel, 2.6 with
    this). False, and nothing changed, where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 256 << 20)) and bool(mallopt(m_trim_threshold, 512 << 20))


@dataclass(frozen=True)
class GroupSpec:
    """A batch of trials of one shape, trained as one StackedMLP."""

    trials: tuple[Trial, ...]
    data: DataSpec
    epochs: int
    batch_size: int
    schedule: str = "cosine"  # 'constant' or 'cosine' (per step, to zero at the end)
    order_seed: int = 0  # the engine's per-epoch shuffle seed, shared by the group
    precision: str = "fp32"  # matmuls in 'fp32' or 'bf16' (weights and optimizer state stay float32)

    @property
    def width(self) -> int:
        """The stack's hidden width: narrower trials are zero-padded to it (see `make_groups`)."""
        return max(t.width for t in self.trials)

    @property
    def depth(self) -> int:
        """The stack's depth: shallower trials skip its last hidden layers (see `StackedMLP`)."""
        return max(t.depth for t in self.trials)

    @property
    def name(self) -> str:
        """A stable checkpoint name: the same trials and settings resume the same training."""
        # "stacked": checkpoints hold (M, out, in) layer parameters (older ones held member MLPs)
        text = repr(("stacked", sorted(t.key for t in self.trials), asdict(self.data) | {"data_dir": None},
                     self.epochs, self.batch_size, self.schedule, self.order_seed)
                    + ((self.precision,) if self.precision != "fp32" else ()))
        t = self.trials[0]
        return f"sweep-{t.dataset}-{self.depth}x{self.width}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def build_member(trial: Trial, in_features: int, num_classes: int) -> MLP:
    """The trial's MLP at its initial weights (a pure function of the trial)."""
    torch.manual_seed(10_007 * trial.seed + 17)
    return MLP(in_features, [trial.width] * trial.depth, num_classes, trial.activation, trial.init)


def member_order(trial: Trial, n: int) -> torch.Tensor:
    """The trial's own fixed permutation of the training set (see the module docstring)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(7_919 * trial.seed + 3))


def lr_factor(schedule: str, step: int, total: int) -> float:
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    raise UsageError(f"unknown schedule {schedule!r}; valid: constant, cosine")


def per_member_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each member: logits (M, C, B), labels (B,) shared or (M, B) -> (M,)."""
    y = y.expand(len(logits), -1) if y.dim() == 1 else y
    return nn.functional.cross_entropy(logits, y, reduction="none").mean(1)  # (M, B) -> (M,)


@torch.no_grad()
def stacked_accuracy(stack: StackedMLP, x: torch.Tensor, y: torch.Tensor, *, best: bool = False,
                     dtype: torch.dtype | None = None, chunk: int = 2048) -> torch.Tensor:
    """Accuracy of each member on the shared (x, y): (M,)."""
    correct = torch.zeros(len(stack), device=x.device)
    for xb, yb in zip(x.split(chunk), y.split(chunk)):
        # max over dim 1 of (M, C, B): several times faster than argmax there, same first index
        correct += (stack(xb, best=best, dtype=dtype).max(1).indices == yb).sum(1)
    return correct / len(y)


def gradient_ratio(stack: StackedMLP, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per member, |grad of the first layer's weights| / |grad of the last layer's| on one
    batch at the current weights: far below 1 means the gradient vanishes on its way down."""
    stack.zero_grad(set_to_none=True)
    per_member_cross_entropy(stack(x), y).sum().backward()
    first, last = stack.weights[0].grad.flatten(1).norm(dim=1), stack.weights[-1].grad.flatten(1).norm(dim=1)
    ratios = torch.where(last > 0, first / last, 0.0).tolist()
    stack.zero_grad(set_to_none=True)
    return ratios


def units_identical(weight: torch.Tensor, bias: torch.Tensor) -> bool:
    """True when every unit of a layer (weight (out, in), bias (out,)) has the same incoming
    weights and bias: the units compute the same function, so the layer acts as one unit."""
    w = torch.cat([weight, bias.unsqueeze(1)], 1)
    return bool((w - w[:1]).abs().max() <= 1e-6 * (1.0 + w.abs().max()))


class StackedOptimizer(torch.optim.Optimizer):
    """Per-member optimizers over a StackedMLP's stacked parameters.

    Members are grouped into `runs` (name, lr, start, end) of consecutive members that share an
    optimizer and learning rate; each run's slice of every layer is updated by torch's own
    functional kernel for that optimizer (fused where torch has one, else foreach), with the
    hyperparameters `make_optimizer` uses. So a member is updated exactly as a torch optimizer of
    its own would update it, but a whole stack takes one kernel call per run instead of one per
    member and tensor. `param_groups[0]['lr']` is the schedule's factor: a run's step size is
    its lr times that factor.
    """

    BETAS, RMS_ALPHA = (0.9, 0.999), 0.99  # torch's defaults, as `make_optimizer` leaves them

    def __init__(self, params: Sequence[torch.Tensor], runs: Sequence[tuple[str, float, int, int]]):
        unknown = {name for name, *_ in runs} - set(OPTIMIZERS)
        if unknown:
            raise UsageError(f"unknown optimizer(s) {', '.join(sorted(unknown))}; valid: {', '.join(OPTIMIZERS)}")
        super().__init__(list(params), {"lr": 1.0, "runs": [tuple(r) for r in runs]})
        for p in self.param_groups[0]["params"]:  # every state starts at zero (as torch's do)
            self.state[p] = {"step": torch.zeros(len(runs)), "exp_avg": torch.zeros_like(p),
                             "exp_avg_sq": torch.zeros_like(p)}

    @torch.no_grad()
    def keep_(self, index: Sequence[int], params: Sequence[torch.Tensor],
              runs: Sequence[tuple[str, float, int, int]]) -> None:
        """Follow `StackedMLP.keep_(index)`: `params` are the stack's new parameters and `runs`
        the runs of the members kept; each keeps its own optimizer state."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        group = self.param_groups[0]
        steps = next(iter(self.state.values()))["step"][:1]  # every run has taken the same steps
        new = {}
        for old, p in zip(group["params"], params):
            st = self.state[old]
            new[p] = {"step": steps.expand(len(runs)).clone(), "exp_avg": st["exp_avg"][idx].clone(),
                      "exp_avg_sq": st["exp_avg_sq"][idx].clone()}
        self.state.clear()
        self.state.update(new)
        group["params"], group["runs"] = list(params), [tuple(r) for r in runs]
        self._views = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._views = None  # the state tensors were replaced

    def _run_views(self) -> list[tuple[list[torch.Tensor], ...]]:
        """Per run: its slices of the parameters and of their state (views, made once)."""
        if getattr(self, "_views", None) is None:
            params = self.param_groups[0]["params"]
            self._views = [([p[a:b] for p in params], [self.state[p]["exp_avg"][a:b] for p in params],
                            [self.state[p]["exp_avg_sq"][a:b] for p in params],
                            [self.state[p]["step"][r] for p in params])
                           for r, (_, _, a, b) in enumerate(self.param_groups[0]["runs"])]
        return self._views

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        group = self.param_groups[0]
        grads = [p.grad for p in group["params"]]
        if any(g is None for g in grads):
            raise RuntimeError("StackedOptimizer.step: every stacked parameter needs a gradient")
        for (name, lr, a, b), (ps, first, second, steps) in zip(group["runs"], self._run_views()):
            lr = lr * group["lr"]
            gs = [g[a:b] for g in grads]
            # `first` holds the momentum / first moment, `second` the second moment / squared sum
            if name in ("sgd", "momentum", "nesterov"):
                momentum = 0.0 if name == "sgd" else MOMENTUM
                sgd.sgd(ps, gs, first, fused=True, weight_decay=0.0, momentum=momentum, lr=lr,
                        dampening=0.0, nesterov=name == "nesterov", maximize=False)
            elif name in ("adam", "adamw"):
                adam.adam(ps, gs, first, second, [], steps, fused=True, amsgrad=False,
                          beta1=self.BETAS[0], beta2=self.BETAS[1], lr=lr,
                          weight_decay=ADAMW_DECAY if name == "adamw" else 0.0, eps=1e-8,
                          maximize=False, decoupled_weight_decay=name == "adamw")
            elif name == "rmsprop":
                rmsprop.rmsprop(ps, gs, second, [], [], steps, foreach=True, lr=lr, alpha=self.RMS_ALPHA,
                                eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)
            else:  # adagrad
                adagrad.adagrad(ps, gs, second, steps, fused=True, lr=lr, weight_decay=0.0, lr_decay=0.0,
                                eps=1e-10, maximize=False)


def optimizer_runs(trials: Sequence[Trial]) -> list[tuple[str, float, int, int]]:
    """(optimizer, lr, start, end) for each run of consecutive trials that share both."""
    runs: list[tuple[str, float, int, int]] = []
    for i, t in enumerate(trials):
        if runs and runs[-1][:2] == (t.optimizer, t.lr):
            runs[-1] = (t.optimizer, t.lr, runs[-1][2], i + 1)
        else:
            runs.append((t.optimizer, t.lr, i, i + 1))
    return runs


@dataclass
class Halving:
    """Successive halving with ASHA's stopping rule, shared by the groups of one sweep.

    At each rung (epochs min_epochs, min_epochs * rate, ... below the last epoch) a trial goes on
    only if its validation accuracy is in the top 1/rate of every result recorded at that rung so
    far on its dataset (its group's and earlier groups'); the others stop there and are removed
    from their stack, so the compute they would have used is saved. Groups run largest first,
    so the first record is a broad one. The rule needs the record of every earlier group, so it
    trains groups in this process (no workers, no Ray).
    """

    rate: int = 3  # reduction factor: keep the top 1/rate at each rung
    min_epochs: int = 1  # the first rung
    recorded: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rate < 2 or self.min_epochs < 1:
            raise UsageError(f"halving_rate={self.rate}, halving_min_epochs={self.min_epochs}: "
                             "need a rate of at least 2 and a first rung of at least 1 epoch")

    def rungs(self, epochs: int) -> list[int]:
        out, e = [], self.min_epochs
        while e < epochs:
            out.append(e)
            e *= self.rate
        return out

    def stops(self, dataset: str, epoch: int, val_acc: Sequence[float]) -> list[bool]:
        """Record `val_acc` at this rung; True for each trial below the top 1/rate so far."""
        record = self.recorded.setdefault((dataset, epoch), [])
        record.extend(val_acc)
        cutoff = torch.tensor(record, dtype=torch.float64).quantile(1 - 1 / self.rate).item()
        return [a < cutoff for a in val_acc]


def train_group(spec: GroupSpec, run: Run | None = None, device: str | torch.device = "cpu", *,
                on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
                keep_models: bool = False, halving: Halving | None = None) -> list[dict[str, Any]]:
    """Train the group's trials together; one result dict per trial (see `_result`), in the
    group's order. With `keep_models`, each result carries its best-validation MLP under
    'model'. With `halving`, trials below the cut at a rung stop there (see `Halving`); the
    group is then not checkpointed (the cut depends on the other groups' results)."""
    device = torch.device(device)
    keep_freed_memory()
    data = load_sweep_data(spec.data, str(device))
    n, d = data.x_train.shape
    classes = len(data.classes)
    trials = list(spec.trials)
    stack = StackedMLP([padded_member(t, d, classes, spec.width) for t in trials]).to(device)
    grad_ratios = gradient_ratio(stack, data.x_train[:256], data.y_train[:256])
    optimizer = StackedOptimizer(stack.parameters(), optimizer_runs(trials))
    dtype = PRECISIONS[spec.precision]
    shared = len({t.seed for t in trials}) == 1  # one data order: every member sees the same batch
    orders = torch.stack([member_order(t, n) for t in (trials[:1] if shared else trials)]).to(device)  # (1 or M, n)
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total_steps = spec.epochs * steps_per_epoch
    ids = list(range(len(trials)))  # each stack member's index in `trials`
    rungs = halving.rungs(spec.epochs) if halving is not None else []
    states: dict[int, dict[str, Any]] = {}  # trial index -> what `_result` needs (at its stop or the end)

    def step(model: StackedMLP, batch: Sequence[torch.Tensor]) -> dict[str, Any]:
        if not ids:  # successive halving stopped every member
            return {}
        idx = orders[:, batch[0]]  # (1 or M, B): the examples each member sees
        if shared:
            x, y = data.x_train[idx[0]], data.y_train[idx[0]]  # (B, D), (B,)
        else:
            x, y = data.x_train[idx], data.y_train[idx]  # (M, B, D), (M, B)
        losses = per_member_cross_entropy(model(x, dtype=dtype), y)  # (M,)
        model.alive.logical_and_(torch.isfinite(losses))  # in place: no Module.__setattr__ per step
        optimizer.zero_grad(set_to_none=True)
        torch.where(model.alive, losses, 0.0).sum().backward()
        optimizer.param_groups[0]["lr"] = lr_factor(spec.schedule, int(model.steps), total_steps)
        optimizer.step()
        model.steps.add_(1)
        kept = torch.where(model.alive, losses.detach(), 0.0)
        model.add_train_loss(kept, len(batch[0]))
        return {"loss": kept.sum() / model.alive.sum().clamp_min(1)}

    def evaluate(model: StackedMLP) -> dict[str, float]:
        nonlocal orders
        if not ids:
            return {}
        acc = stacked_accuracy(model, data.x_val, data.y_val, dtype=dtype)
        epoch = int(model.steps) // steps_per_epoch
        model.keep_best(acc, epoch)
        loss = model.take_train_loss().tolist()
        record = ({f"val_acc/{i}": float(a) for i, a in zip(ids, acc.tolist())}
                  | {f"train_loss/{i}": v for i, v in zip(ids, loss)})
        if epoch in rungs:
            stop = halving.stops(spec.data.dataset, epoch, acc.tolist())
            if any(stop):
                out = [j for j, s in enumerate(stop) if s]
                gone = copy.deepcopy(model).keep_(out)
                test = stacked_accuracy(gone, data.x_test, data.y_test, best=True, dtype=dtype).tolist()
                for k, j in enumerate(out):
                    states[ids[j]] = (_member_state(gone, k, trials[ids[j]].width, test[k], keep_models)
                                      | {"stopped_epoch": epoch})
                keep = [j for j, s in enumerate(stop) if not s]
                model.keep_(keep)
                ids[:] = [ids[j] for j in keep]
                optimizer.keep_(keep, list(model.parameters()), optimizer_runs([trials[i] for i in ids]))
                if not shared:
                    orders = orders[keep]
        return record

    def report(epoch: int, record: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(spec.name, epoch, record)

    history = fit(stack, (torch.arange(n, device=device),), step=step, optimizer={"stack": optimizer},
                  epochs=spec.epochs, batch_size=spec.batch_size, evaluate=evaluate, seed=spec.order_seed,
                  run=run if halving is None else None, name=spec.name, progress=False, verbose=False,
                  on_epoch_end=report)
    test_acc = stacked_accuracy(stack, data.x_test, data.y_test, best=True, dtype=dtype).tolist() if ids else []
    for k, i in enumerate(ids):
        states[i] = _member_state(stack, k, trials[i].width, test_acc[k], keep_models) | {"stopped_epoch": None}
    return [_result(t, i, spec, history.epochs, states[i], grad_ratios[i], history.seconds / len(trials))
            for i, t in enumerate(trials)]


def best_member_state(stack_state: dict[str, torch.Tensor], member: int, width: int,
                      depth: int) -> dict[str, torch.Tensor]:
    """The state dict of an `MLP` of `depth` hidden layers of `width` units holding member
    `member`'s best weights, taken from a saved StackedMLP state dict (e.g. a finished group's
    checkpoint; a member narrower or shallower than its stack is cut back here)."""
    layers = sum(k.startswith("best_weight") for k in stack_state)
    if not layers:
        raise UsageError("this checkpoint was written by an older dlslab (one MLP per member); "
                         "run mlp-hparams again to use it")
    own = [*range(depth), layers - 1]  # the member's hidden layers, then the head
    names = [f"hidden.{i}" for i in range(depth)] + ["head"]
    state = {f"{name}.{kind}": stack_state[f"best_{kind}{i}"][member]
             for i, name in zip(own, names) for kind in ("weight", "bias")}
    return resize_hidden(state, [width] * depth)


def padded_member(trial: Trial, in_features: int, num_classes: int, width: int) -> MLP:
    """The trial's initial MLP, zero-padded to `width` hidden units when narrower: exact for
    activations with act(0) = 0 (`zero_preserving`), the only ones `make_groups` pads."""
    net = build_member(trial, in_features, num_classes)
    if trial.width == width:
        return net
    if not zero_preserving(trial.activation):
        raise ValueError(f"{trial.key}: {trial.activation}(0) != 0, so padding it to width {width} would "
                         "change what it computes")
    return net.resized(width)


def _member_state(stack: StackedMLP, k: int, width: int, test_acc: float, keep_model: bool) -> dict[str, Any]:
    """What a trial's result needs from stack member k (hidden width `width`), at the end of its training."""
    state = {"test_acc": test_acc, "alive": bool(stack.alive[k]), "best_val": float(stack.best_val[k]),
             "best_epoch": int(stack.best_epoch[k]),
             "units_identical": units_identical(stack.weights[0][k, :width].detach(),
                                                stack.biases[0][k, :width].detach())}
    if keep_model:
        state["model"] = stack.member(k, best=True).resized(width)
    return state


def _result(trial: Trial, i: int, spec: GroupSpec, epochs: list[dict[str, float]], state: dict[str, Any],
            grad_ratio: float, seconds: float) -> dict[str, Any]:
    val_curve = [e[f"val_acc/{i}"] for e in epochs if f"val_acc/{i}" in e]
    loss_curve = [e[f"train_loss/{i}"] for e in epochs if f"train_loss/{i}" in e]
    res = {
        "key": trial.key, "config": trial.config, "dataset": trial.dataset, **trial.settings, "seed": trial.seed,
        "test_acc": state["test_acc"],  # at the epoch of best validation accuracy
        "val_acc": max(state["best_val"], 0.0),  # -inf when it never had a finite loss
        "best_epoch": state["best_epoch"],
        "final_train_loss": loss_curve[-1] if state["alive"] else math.nan,
        "train_s": seconds,  # the group's time divided by its members
        "diverged": not state["alive"],
        "units_identical": state["units_identical"],
        "grad_ratio": grad_ratio,
        "val_curve": val_curve,
        "loss_curve": loss_curve,
        "epochs_trained": len(val_curve),
        "stopped_epoch": state["stopped_epoch"],  # the rung where successive halving stopped it, or None
        "group": spec.name, "member": i,
    }
    if "model" in state:
        res["model"] = state["model"]
    return res


# --- many groups: inline, worker processes, Ray ------------------------------------------------


def make_groups(trials: Sequence[Trial], data: Callable[[str], DataSpec], *, epochs: int, batch_size: int,
                schedule: str, order_seed: int, max_stack: int, precision: str = "fp32",
                pad_ratio: float = 6.0) -> list[GroupSpec]:
    """Trials grouped by shape, each group at most `max_stack` members, largest first (so
    parallel workers finish together).

    A trial whose shape has fewer than `PAD_INTO` trials would train in a stack of its own,
    where per-step overhead dominates. It joins instead the cheapest shape (same dataset and
    seed) that has at least `PAD_INTO` trials, is at least as wide and as deep, and costs at
    most `pad_ratio` times its own arithmetic: it is zero-padded to the wider width (only
    when its activation keeps zero at zero: see `padded_member`) and skips the extra layers
    (see `StackedMLP`), so it computes exactly its own network. `pad_ratio=1` turns this off."""
    if max_stack < 1:
        raise UsageError(f"max_stack={max_stack}: must be at least 1")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    by_shape: dict[tuple, list[Trial]] = {}
    for t in trials:  # same layer shapes and seed: one data order, one wide first-layer matmul
        by_shape.setdefault((t.dataset, t.width, t.depth, t.seed), []).append(t)
    sizes = {shape: len(members) for shape, members in by_shape.items()}
    cost = lambda width, depth: width * (784 + width * (depth - 1))  # noqa: E731  (multiply-adds per example)
    for (dataset, width, depth, seed), members in list(by_shape.items()):
        if sizes[(dataset, width, depth, seed)] >= PAD_INTO:
            continue
        hosts = sorted((cost(w, dp), w, dp) for (d, w, dp, s), n in sizes.items()
                       if (d, s) == (dataset, seed) and n >= PAD_INTO and w >= width and dp >= depth
                       and cost(w, dp) <= pad_ratio * cost(width, depth))  # cheapest first
        for t in list(members):
            # wider hosts pad the trial with zero units: only exact when its activation keeps 0 at 0
            host = next(((w, dp) for _, w, dp in hosts if w == width or zero_preserving(t.activation)), None)
            if host is not None:
                members.remove(t)
                by_shape[(dataset, *host, seed)].append(t)
    groups = []
    for shape, members in by_shape.items():
        if not members:
            continue
        # contiguous (optimizer, lr) runs, one optimizer call each; then activation segments
        members.sort(key=lambda t: (t.optimizer, t.lr, t.activation))
        for k in range(0, len(members), max_stack):
            groups.append(GroupSpec(tuple(members[k:k + max_stack]), data(shape[0]), epochs, batch_size,
                                    schedule, order_seed, precision))
    return sorted(groups, key=lambda g: len(g.trials) * cost(g.width, g.depth), reverse=True)


def _worker_train(spec: GroupSpec, run: Run | None, threads: int) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    return train_group(spec, run, "cpu")


def run_groups(groups: Sequence[GroupSpec], *, run: Run | None = None, device: str | torch.device = "cpu",
               workers: int = 1, ray_address: str | None = None,
               on_group: Callable[[GroupSpec, list[dict[str, Any]], float], None] | None = None,
               on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
               halving: Halving | None = None) -> list[dict[str, Any]]:
    """Train every group and return all trial results. `workers` > 1 trains groups in that
    many processes (CPU only), `ray_address` as Ray tasks on that cluster; `halving` stops
    poor trials early (in this process only)."""
    if halving is not None and (workers > 1 or ray_address):
        raise UsageError("halving decides at each rung from every earlier result, so it trains groups in this "
                         "process: use workers=1 and no ray address with it")
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []

    def done(spec: GroupSpec, res: list[dict[str, Any]]) -> None:
        results.extend(res)
        if on_group is not None:
            on_group(spec, res, time.perf_counter() - t0)

    if ray_address:
        for spec, res in _run_on_ray(groups, run, ray_address, workers):
            done(spec, res)
    elif workers > 1:
        if torch.device(device).type != "cpu":
            raise UsageError("workers > 1 trains on CPU processes; with a GPU use workers=1 (groups are batched)")
        threads = max(1, (os.cpu_count() or 1) // workers)
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(spec, pool.submit(_worker_train, spec, run, threads)) for spec in groups]
            for spec, fut in futures:
                done(spec, fut.result())
    else:
        for spec in groups:
            done(spec, train_group(spec, run, device, on_epoch=on_epoch, halving=halving))
    return results


def _run_on_ray(groups: Sequence[GroupSpec], run: Run | None, address: str, cpus_per_task: int):
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs the 'ray' package: pip install 'ray>=2.30,<3'") from None
    _check_reachable(address)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"could not connect to the Ray cluster at {address!r} ({exc}); start one with "
                             "`ray start --head` and pass its address (host:port)") from None
    try:
        task = ray.remote(num_cpus=1)(_worker_train)
        refs = [(spec, task.remote(spec, run, max(1, cpus_per_task))) for spec in groups]
        for spec, ref in refs:
            yield spec, ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at HOST:PORT (ray.init would retry for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # 'auto' and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc}); start one with "
                         "`ray start --head --port=PORT` and pass HOST:PORT") from None


def data_specs(data_dir: str | Path | None, *, train_size: int, val_size: int,
               split_seed: int) -> Callable[[str], DataSpec]:
    """A DataSpec maker for each dataset name, sharing the split settings."""
    root = str(data_dir) if data_dir else None
    return lambda name: DataSpec(name, root, train_size, val_size, split_seed)

