"""The CIFAR-10 training recipe, as library code: the `augment` and `transfer` studies and the
CIFAR benchmarks all train through `train_cifar`.

The recipe is airbench94-class (K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU";
94.01% mean over 1,000 runs of about 0.36 PFLOP each on an A100), written for this engine:

- the network (`models/airbench.py`): a frozen 2x2 patch-whitening first convolution computed
  from the training images, Dirac-initialised convolutions, batch norm with a frozen scale;
- Nesterov SGD whose learning rate and weight decay are stated per 1024 examples (the loss
  is summed over the batch, and the momentum's gain is divided out), so they do not change
  meaning with the batch size or the momentum; batch-norm biases learn `bias_scaler` times
  faster; the whitening bias trains only for the first `whiten_bias_until` of the steps;
- a triangular schedule (from 0.2 of the peak to the peak at `warmup` of the steps, down to
  0.07 at the end), label smoothing;
- lookahead: every `lookahead_every` steps after `lookahead_start` of the training the weights
  are pulled to an exponential moving average of themselves, whose decay grows with progress,
  and at the end of each epoch the network takes the average;
- alternating flip (each image is mirrored in every other epoch) plus a random translation of
  `translate` pixels, batched on the device;
- multi-view test-time augmentation (`tta`: mirror x translations);
- channels-last and bf16 autocast on the CPU (AMX/AVX-512) and on CUDA.

`CifarRecipe` is the spec; `build_model` makes its network (whitened from given images),
`train_cifar` trains and scores it, `trained_cell` keeps only a training's numbers in a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from dlslab.data.images import ImageData
from dlslab.data.splits import split_validation
from dlslab.errors import ConfigError
from dlslab.models.airbench import AirbenchNet
from dlslab.models.resnet import ResNetFast, SmallCNN
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.augment import Augmenter, normalize, soft_cross_entropy, tta_logits, to_unit
from dlslab.train.ddp import fit_data_parallel
from dlslab.train.engine import History, fit, predict

WHITEN_IMAGES = 5000  # training images whose patches set the whitening filters


@dataclass
class CifarRecipe:
    """The training recipe shared by the CIFAR-10 studies and benchmarks."""

    arch: Literal["airbench", "resnet-fast", "small-cnn"] = "airbench"  # whitened 3-group CNN, residual CNN, or the plain small CNN
    widths: list[int] = field(default_factory=lambda: [64, 256, 256])  # airbench: group widths; resnet-fast: stem and stage widths; small-cnn: first conv width
    blocks: list[int] = field(default_factory=lambda: [1, 0, 1])  # resnet-fast only: residual pairs per stage
    epochs: int = 10  # passes over the training set (at least; see min_steps)
    min_steps: int = 400  # small training sets get more epochs, so at least this many steps
    batch_size: int = 1024  # images per step (smaller when the training set is small: n // 8)
    lr: float = 11.5  # peak learning rate per 1024 examples (Nesterov SGD on the summed loss)
    momentum: float = 0.85  # Nesterov momentum
    weight_decay: float = 0.0153  # weight decay per 1024 examples, decoupled from the learning rate
    bias_scaler: float = 64.0  # batch-norm biases learn this many times faster (no extra decay)
    warmup: float = 0.23  # fraction of the steps at which the triangular schedule peaks
    whiten_bias_until: float = 0.3  # fraction of the steps after which the whitening bias is frozen
    whiten_eps: float = 5e-4  # added to each patch-covariance eigenvalue before whitening (caps the gain of faint directions)
    whiten_float32: bool = False  # run the whitening convolution in float32 under bf16 autocast
    lookahead_every: int = 5  # steps between pulls toward the weights' moving average (0: no lookahead)
    lookahead_start: float = 0.3  # fraction of the steps before the moving average starts
    label_smoothing: float = 0.2  # label smoothing of the cross-entropy
    translate: int = 2  # pixels of random translation (reflect padding) in the crop policies
    alternate_flip: bool = True  # mirror each image in every other epoch (False: a coin per image per step)
    tta: int = 2  # test-time augmentation: 0 none, 1 mirror, 2 mirror x translations (6 views)
    bf16: bool = True  # bfloat16 autocast on the CPU too (CUDA always uses it)
    eval_size: int = 10000  # test images scored after every epoch (no TTA; the learning curves; 0: none)
    test_size: int = 10000  # test images scored for the final accuracy (with TTA)
    holdout: float = 0.0  # > 0: hold out this stratified fraction of the training set and score on it, not on the test set (to choose settings)


def check_recipe(cfg: CifarRecipe) -> None:
    """Refuse out-of-range recipe values (a study's `check` calls this) with a ConfigError."""
    def need(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: {allowed}")

    for key in ("epochs", "batch_size", "test_size"):
        need(getattr(cfg, key) >= 1, key, "must be >= 1")
    for key in ("eval_size", "min_steps", "lookahead_every", "translate", "weight_decay", "label_smoothing"):
        need(getattr(cfg, key) >= 0, key, "must be >= 0")
    need(bool(cfg.widths) and min(cfg.widths) >= 1, "widths", "give one or more widths >= 1")
    need(bool(cfg.blocks) and min(cfg.blocks) >= 0, "blocks", "give one or more block counts >= 0")
    need(cfg.arch != "resnet-fast" or len(cfg.blocks) == len(cfg.widths) - 1, "blocks",
         f"resnet-fast needs one entry per stage ({len(cfg.widths) - 1} for widths={cfg.widths})")
    for key in ("lr", "bias_scaler", "whiten_eps"):
        need(getattr(cfg, key) > 0, key, "must be > 0")
    need(0 <= cfg.momentum < 1, "momentum", "must be in [0, 1)")
    for key in ("warmup", "whiten_bias_until", "lookahead_start"):
        need(0 <= getattr(cfg, key) <= 1, key, "must be a fraction in [0, 1]")
    need(cfg.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
    need(cfg.tta in (0, 1, 2), "tta", "must be 0 (none), 1 (mirror) or 2 (mirror x translations)")
    need(0 <= cfg.holdout < 1, "holdout", "must be a fraction in [0, 1) (0: score on the test set)")


# --- data and network ---------------------------------------------------------------------------


def device_tensors(data: ImageData, device: torch.device) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Training images stay uint8 on the device (augmented per batch); test images are
    converted and normalised once."""
    train = (data.train_x.to(device), data.train_y.to(device))
    test = (normalize(to_unit(data.test_x.to(device))), data.test_y.to(device))
    return train, test


def study_tensors(data: ImageData, cfg: CifarRecipe, device: torch.device
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    """(train, scored, what scored is): the test set, or with `cfg.holdout` > 0 a stratified
    validation split of the training set (the rest trains), so settings are chosen without
    looking at the test set."""
    if cfg.holdout <= 0:
        train, test = device_tensors(data, device)
        return train, test, f"{min(cfg.test_size, len(test[0]))} test images"
    (tx, ty), (vx, vy) = split_validation(data.train_x, data.train_y, cfg.holdout, derive(0, "holdout"))
    train, val = device_tensors(dataclasses.replace(data, train_x=tx, train_y=ty, test_x=vx, test_y=vy), device)
    return train, val, f"{min(cfg.test_size, len(val[0]))} held-out training images (validation, not the test set)"


def build_model(cfg: CifarRecipe, num_classes: int, device: torch.device,
                whiten: torch.Tensor | None = None) -> nn.Module:
    """The configured network on `device`, channels-last; an airbench network's whitening
    filters come from the uint8 training images `whiten` (its first WHITEN_IMAGES)."""
    if cfg.arch == "airbench":
        model: nn.Module = AirbenchNet(num_classes, tuple(cfg.widths), whiten_float32=cfg.whiten_float32)
        if whiten is not None:
            model.init_whitening(normalize(to_unit(whiten[:WHITEN_IMAGES].to(device))), cfg.whiten_eps)
    elif cfg.arch == "resnet-fast":
        model = ResNetFast(num_classes, tuple(cfg.widths), tuple(cfg.blocks))
    else:
        model = SmallCNN(num_classes, width=cfg.widths[0])
    return model.to(device, memory_format=torch.channels_last)


# --- optimizer, schedule, lookahead ---------------------------------------------------------------


def steps_plan(n: int, cfg: CifarRecipe) -> tuple[int, int, int]:
    """(batch size, epochs, steps per epoch) for n training images: the batch shrinks to
    n // 8 for small sets, and epochs grow until there are at least `min_steps` steps. Every
    step is a full batch (the last partial batch of an epoch is dropped)."""
    batch = max(8, min(cfg.batch_size, n // 8))
    per_epoch = max(1, n // batch)
    return batch, max(cfg.epochs, math.ceil(cfg.min_steps / per_epoch)), per_epoch


def triangle(step: int, total: int, peak_at: float, start: float = 0.2, end: float = 0.07) -> float:
    """The learning-rate factor at `step` of `total`: linear from `start` up to 1 at
    `peak_at` of the steps, then linear down to `end` at the last step."""
    peak = max(1, round(peak_at * total))
    if step < peak:
        return start + (1 - start) * step / peak
    return 1 + (end - 1) * min(1.0, (step - peak) / max(1, total - peak))


def param_groups(model: nn.Module, cfg: CifarRecipe, batch: int, total_steps: int,
                 backbone_lr_scale: float = 1.0) -> tuple[list[dict[str, Any]], list[Callable[[int], float]]]:
    """SGD parameter groups and their schedules (one per group, for LambdaLR).

    With the loss summed over the batch, Nesterov momentum m multiplies a steady gradient's
    step by 1 + 1/(1 - m) ... (to first order); dividing the per-1024-example rate by 1024
    times that gain gives torch's lr. Weight decay per 1024 examples becomes a per-step decay
    of wd * batch / gain, and each group's `weight_decay` is that over its own lr, so faster
    groups (batch-norm biases) do not decay faster. Parameters outside `head` learn at
    `backbone_lr_scale` times the rate (fine-tuning)."""
    gain = 1024 * (1 + 1 / (1 - cfg.momentum))
    lr, decay = cfg.lr / gain, cfg.weight_decay * batch / gain
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    whiten_bias = {id(m.whiten.bias) for m in model.modules() if isinstance(m, AirbenchNet)}
    groups: dict[tuple[str, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "whiten" if id(p) in whiten_bias else "bn_bias" if id(p) in bn_biases else "weights"
        scale = 1.0 if "head" in name.split(".") else backbone_lr_scale
        groups.setdefault((kind, scale), []).append(p)
    freeze = round(cfg.whiten_bias_until * total_steps)
    out, schedules = [], []
    order = {"weights": 0, "bn_bias": 1, "whiten": 2}  # the main group first: the engine logs its lr
    for (kind, scale), params in sorted(groups.items(), key=lambda item: (order[item[0][0]], -item[0][1])):
        group_lr = lr * scale * (cfg.bias_scaler if kind == "bn_bias" else 1.0)
        out.append({"params": params, "lr": group_lr, "weight_decay": decay / group_lr})
        if kind == "whiten":
            schedules.append(lambda s: triangle(s, total_steps, cfg.warmup) if s < freeze else 0.0)
        else:
            schedules.append(lambda s: triangle(s, total_steps, cfg.warmup))
    return out, schedules


class Lookahead:
    """An optimizer wrapper: after each inner step, every `every` steps from `start` on, the
    model's float tensors (weights and batch-norm statistics) move to an exponential moving
    average of themselves, avg <- rho avg + (1 - rho) w, then w <- avg, with
    rho = decay**every * (step / total)**power (fast early, strong averaging at the end); at
    the end of each epoch the model takes the average. Checkpointed with the optimizer."""

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, *, total_steps: int, steps_per_epoch: int,
                 start: int, every: int = 5, decay: float = 0.95, power: float = 3.0):
        self.optimizer, self.model = optimizer, model
        self.total, self.per_epoch, self.start, self.every = total_steps, steps_per_epoch, start, every
        self.decay, self.power = decay, power
        self.steps = 0
        self.average: list[torch.Tensor] | None = None

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _tensors(self) -> list[torch.Tensor]:
        return [t for t in self.model.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def pull(self, rho: float) -> None:
        """avg <- rho avg + (1 - rho) w, then w <- avg (the first call only starts the average)."""
        tensors = self._tensors()
        if self.average is None:
            self.average = [t.detach().clone() for t in tensors]
            return
        torch._foreach_lerp_(self.average, tensors, 1 - rho)
        torch._foreach_copy_(tensors, self.average)

    def step(self) -> None:
        self.optimizer.step()
        self.steps += 1
        if self.every and self.steps >= self.start and self.steps % self.every == 0:
            self.pull(self.decay**self.every * (self.steps / self.total) ** self.power)
        if self.average is not None and self.steps % self.per_epoch == 0:
            self.pull(1.0)  # the epoch ends on the averaged weights

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "steps": self.steps, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps, self.average = state["steps"], state["average"]


# --- training and scoring -------------------------------------------------------------------------


def autocast(cfg: CifarRecipe, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on the CPU when asked (the engine already does it on CUDA)."""
    if cfg.bf16 and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_loss(cfg: CifarRecipe, device: torch.device):
    """Label-smoothed cross-entropy summed over the batch (the rates are per example); the
    logged `loss` is the per-image mean."""
    def loss_fn(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        with autocast(cfg, device):
            logits = model(x)
        mean = soft_cross_entropy(logits, targets, cfg.label_smoothing)
        return mean * len(x), {"loss": mean.detach()}

    return loss_fn


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: CifarRecipe, tta: int | None = None) -> float:
    """Accuracy on normalised images, with `tta` views (default: the recipe's level)."""
    level = cfg.tta if tta is None else tta

    def forward(m: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        with autocast(cfg, xb.device):
            return tta_logits(m, xb, level)

    return (predict(model, x, 1000, fn=forward).argmax(1) == y).float().mean().item()


@dataclass
class Trained:
    history: History
    test_acc: float
    steps: int
    batch_size: int


def train_cifar(cfg: CifarRecipe, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                test: tuple[torch.Tensor, torch.Tensor], *, policy: str, seed: int, run: Run | None,
                name: str, num_classes: int, backbone_lr_scale: float = 1.0, verbose: bool = True,
                data_parallel: bool = False,
                on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> Trained:
    """Train `model` on uint8 `train` images with augmentation `policy` and score it on the
    normalised `test` images (per epoch, unless `eval_size` is 0: `eval_size` images without TTA,
    as `test_acc`, and the seconds that took, as `eval_s`; at the end: `test_size` images with TTA).
    `data_parallel` trains across the process group (torchrun) instead of in this process."""
    device = next(model.parameters()).device
    x, y = train
    batch, epochs, per_epoch = steps_plan(len(x), cfg)
    steps = epochs * per_epoch
    groups, schedules = param_groups(model, cfg, batch, steps, backbone_lr_scale)
    sgd = torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=True, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(sgd, schedules)
    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    opt = Lookahead(sgd, net, total_steps=steps, steps_per_epoch=per_epoch, start=round(cfg.lookahead_start * steps),
                    every=cfg.lookahead_every)
    coins = torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(seed % 2**63)).bool().to(device)
    augment = Augmenter(policy, num_classes, crop_pad=cfg.translate, flip_coins=coins if cfg.alternate_flip else None,
                        epoch=lambda: sched.last_epoch // per_epoch)
    tx, ty = test
    ex, ey = tx[:cfg.eval_size], ty[:cfg.eval_size]

    def evaluate(m: nn.Module) -> dict[str, float]:
        t0 = time.perf_counter()
        acc = accuracy(m, ex, ey, cfg, tta=0)
        return {"test_acc": acc, "eval_s": time.perf_counter() - t0}

    torch.manual_seed(seed)
    # seed % 2**31 keeps the shuffles that the documented quick figures were measured with
    common = {"optimizer": opt, "scheduler": sched, "epochs": epochs, "batch_size": batch, "transform": augment,
              "evaluate": evaluate if cfg.eval_size else None, "seed": seed % 2**31, "name": name,
              "verbose": verbose, "drop_last": True, "on_epoch_end": on_epoch_end}
    tensors = (x, y, torch.arange(len(x), device=device))  # the index feeds the alternating flip
    if data_parallel:
        history = fit_data_parallel(model, tensors, make_loss(cfg, device), **common)
    else:
        history = fit(model, tensors, make_loss(cfg, device), run=run, **common)
    return Trained(history, accuracy(model, tx[:cfg.test_size], ty[:cfg.test_size], cfg), steps, batch)


def trained_cell(run: Run, name: str, train: Any) -> dict[str, Any]:
    """Run `train() -> Trained` once per run and keep only its numbers: the cell's result is
    cached in the run folder and the finished weights are deleted (a full sweep would
    otherwise keep hundreds of networks on disk)."""

    def compute() -> dict[str, Any]:
        out = train()
        return {"test_acc": out.test_acc, "steps": out.steps, "curve": out.history.series("test_acc"),
                "seconds": out.history.seconds}

    result = run.cached(name, compute)
    (run.checkpoint_dir / f"{name}.done.pt").unlink(missing_ok=True)
    return result
