"""The compression pipeline's stages on MNIST, shared by the `compress` study and
scripts/compress_qat_round.py: data, training stages (from scratch or fine-tuning, optionally
distilling a teacher), iterative pruning rounds, the pruning -> quantisation-aware stage, and
`Bench`, which packs every result, loads the file back and measures the loaded model.

The stages take small specs (`StageSpec`, `PruneSpec`) whose fields carry the study config's
names, so `StageSpec.of(cfg)` reads them from any config that has them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlslab.compress.distill import distillation_objective
from dlslab.compress.layers import attach, bake, bias_layers, trainable, weight_layers
from dlslab.compress.packed import PackReport, dense_bytes, load_packed, pack_model
from dlslab.compress.prune import prune_magnitude, sparsity_schedule
from dlslab.compress.quant import prepare_qat
from dlslab.compress.share import shared_weight
from dlslab.data.images import load_images
from dlslab.data.splits import subset_fraction
from dlslab.errors import ConfigError
from dlslab.runs import Run
from dlslab.train.engine import classifier_eval, clone_model, fit
from dlslab.train.optim import linear_decay, make_optimizer, one_cycle

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the training set's pixel mean and std (of grey levels in [0, 1])


# --- data ----------------------------------------------------------------------------------------


@dataclass
class Mnist:
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]  # what `error_percent` measures on


def load_mnist(data_dir: str | Path | None, device: torch.device | str, *, train_subset: int = 0,
               test_subset: int = 0, seed: int = 0) -> Mnist:
    """MNIST, normalised with MNIST_MEAN / MNIST_STD, on `device`; a subset size > 0 takes a
    seeded, class-stratified subset of that split."""
    data = load_images("mnist", data_dir)

    def prep(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n:
            x, y = subset_fraction(x, y, n / len(x), seed)
        return ((x.to(device).float() / 255 - MNIST_MEAN) / MNIST_STD), y.to(device)

    return Mnist(prep(data.train_x, data.train_y, train_subset), prep(data.test_x, data.test_y, test_subset))


def error_percent(model: nn.Module, data: Mnist) -> float:
    """Test error in percent."""
    return 100.0 * (1.0 - classifier_eval(*data.test, prefix="")(model)["acc"])


# --- training stages ---------------------------------------------------------------------------------

EPOCH_FIELDS = ("epochs", "prune_epochs", "qat_epochs", "share_epochs", "technique_epochs")


def network_epochs(cfg: Any, net: str) -> Any:
    """`cfg` with every stage's epochs multiplied by its `<net>_epoch_scale` (a cheap network
    can afford more passes in the same time); `cfg` itself when the scale is 1 or absent."""
    scale = getattr(cfg, f"{net}_epoch_scale", 1)
    return cfg if scale == 1 else dataclasses.replace(cfg, **{f: getattr(cfg, f) * scale for f in EPOCH_FIELDS})


@dataclass(frozen=True)
class StageSpec:
    """How every training stage trains (field names as in the compress study's config)."""

    batch_size: int = 128  # minibatch size
    lr: float = 2e-3  # peak learning rate from scratch (one-cycle)
    finetune_lr: float = 1e-3  # starting learning rate of a fine-tuning stage (decays linearly)
    weight_decay: float = 1e-4  # Adam's L2 weight decay
    distill_temperature: float = 4.0  # softmax temperature of the distillation term
    bf16: bool = False  # bf16 autocast on the CPU too (AMX); weights and Adam's state stay float32
    seed: int = 0  # data order of every stage

    @classmethod
    def of(cls, cfg: Any) -> StageSpec:
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def train(model: nn.Module, data: Mnist, spec: StageSpec, run: Run | None, name: str, epochs: int, *,
          finetune: bool = True, teacher: nn.Module | None = None, distill: float = 0.0) -> nn.Module:
    """Train the trainable tensors of `model` (weights, or centroids after sharing) with Adam;
    resumable under `name`. From scratch: a one-cycle schedule to `lr`. Fine-tuning: start at
    `finetune_lr` with no warm-up (the network is already good) and decay linearly to zero.
    With a `teacher` and a distillation weight `distill` > 0, the loss distils the teacher's
    outputs too."""
    if epochs <= 0:
        return model
    lr = spec.finetune_lr if finetune else spec.lr
    opt = make_optimizer("adam", trainable(model), lr=lr, weight_decay=spec.weight_decay)
    steps = epochs * math.ceil(len(data.train[0]) / spec.batch_size)
    schedule = linear_decay(opt, steps) if finetune else one_cycle(opt, lr, steps)
    loss = (distillation_objective(teacher, distill, spec.distill_temperature)
            if teacher is not None and distill > 0 else cross_entropy)
    fit(model, data.train, loss, optimizer=opt, epochs=epochs, batch_size=spec.batch_size,
        scheduler=schedule, cpu_bf16=spec.bf16, seed=spec.seed, run=run, name=name)
    return model


@dataclass(frozen=True)
class PruneSpec:
    """Iterative per-layer magnitude pruning of one network."""

    sparsity: dict[str, float]  # target sparsity per weight layer
    rounds: int  # pruning rounds; the sparsity rises cubically to the targets
    epochs: int  # retraining epochs after each round
    distill: float = 0.0  # weight of distilling the unpruned model in that retraining (0 = labels only)

    @classmethod
    def of(cls, cfg: Any, net: str, model: nn.Module) -> PruneSpec:
        """From a config's `<net>_density`, `prune_rounds`, `prune_epochs`, `<net>_prune_distill`."""
        sparsity, _ = layer_settings(model, getattr(cfg, f"{net}_density"), getattr(cfg, f"{net}_bits"), net)
        return cls(sparsity, cfg.prune_rounds, cfg.prune_epochs, getattr(cfg, f"{net}_prune_distill"))


def layer_settings(model: nn.Module, density: list[float], bits: list[int], net: str = "model"
                   ) -> tuple[dict[str, float], dict[str, int]]:
    """Per-layer target sparsity and k-means bits from per-layer lists (weight layers in order)."""
    names = list(weight_layers(model))
    if len(density) != len(names) or len(bits) != len(names):
        raise ConfigError(f"{net}_density and {net}_bits need one value per layer ({', '.join(names)}); "
                          f"got {len(density)} and {len(bits)}")
    if any(not 0 < d <= 1 for d in density):
        raise ConfigError(f"{net}_density: fractions kept must lie in (0, 1]; got {density}")
    if any(not 1 <= b <= 16 for b in bits):
        raise ConfigError(f"{net}_bits: bits per layer must lie in 1..16; got {bits}")
    return {n: 1 - d for n, d in zip(names, density)}, dict(zip(names, bits))


def pruning_rounds(base: nn.Module, data: Mnist, stages: StageSpec, prune: PruneSpec, run: Run | None, net: str
                   ) -> Iterator[tuple[int, nn.Module]]:
    """Iterative per-layer magnitude pruning of a copy of `base`, each round retrained (distilling
    `base` when `prune.distill` > 0) and baked. Yields (round, model) after each round; it is the
    same model every time, pruned further, so clone what must outlive the next round."""
    pruned = clone_model(base)
    for r, round_sparsity in enumerate(sparsity_schedule(prune.sparsity, prune.rounds), 1):
        prune_magnitude(pruned, round_sparsity)
        train(pruned, data, stages, run, f"{net}-prune{r}", prune.epochs, teacher=base, distill=prune.distill)
        yield r, bake(pruned)  # parametrized models are baked before copying: copies share their class


def qat_layer_bits(cfg: Any, net: str, model: nn.Module) -> dict[str, int]:
    """Bits per weight layer of `net`'s pruning -> QAT stage: the config's `<net>_qat_bits`
    (one width per layer), or `qat_bits` for every layer when that list is empty or absent."""
    names = list(weight_layers(model))
    per_layer = list(getattr(cfg, f"{net}_qat_bits", []))
    if per_layer and len(per_layer) != len(names):
        raise ConfigError(f"{net}_qat_bits needs one width per layer ({', '.join(names)}) or none; got {per_layer}")
    if any(not 2 <= b <= 8 for b in per_layer or [cfg.qat_bits]):
        raise ConfigError(f"{net}_qat_bits and qat_bits: widths must lie in 2..8; got {per_layer or cfg.qat_bits}")
    return dict(zip(names, per_layer)) if per_layer else dict.fromkeys(names, cfg.qat_bits)


def bits_text(bits: int | dict[str, int]) -> str:
    """"3" for one width (or every layer at 3), "3/2/2/2" per layer, in layer order."""
    widths = list(bits.values()) if isinstance(bits, dict) else [bits]
    return str(widths[0]) if len(set(widths)) == 1 else "/".join(map(str, widths))


def quantise_pruned(pruned: nn.Module, base: nn.Module, data: Mnist, stages: StageSpec, run: Run | None, name: str, *,
                    bits: int | dict[str, int], epochs: int, distill: float, bias_bits: int = 0) -> nn.Module:
    """A copy of `pruned` trained `epochs` quantisation-aware at `bits` (one width, or layer ->
    width) with its pruned weights held at exactly zero (distilling `base` when `distill` > 0),
    baked onto its grid. With `bias_bits` > 0 every bias is shared too: k-means into
    2**bias_bits centroids that train with the stage (as Deep Compression shares them), so the
    file stores codes and a small codebook instead of float32 biases."""
    m = prepare_qat(clone_model(pruned), bits, keep_zeros=True)
    if bias_bits:
        for layer in bias_layers(m).values():
            attach(layer, "bias", shared_weight(layer.bias.detach(), bias_bits), freeze_original=True)
    train(m, data, stages, run, name, epochs, teacher=base, distill=distill)
    return bake(m)


def quantised_label(r: int, bits: int | dict[str, int], distill: float, bias_bits: int = 0) -> str:
    return (f"prune round {r} + int{bits_text(bits)} quantisation-aware" + (" + distillation" if distill > 0 else "")
            + (f" + {bias_bits}-bit k-means biases" if bias_bits else ""))


def quantised_stage_name(net: str, r: int, bits: int | dict[str, int], bias_bits: int = 0) -> str:
    """The stage's checkpoint name: `lenet5-prune2-qat3`, `lenet5-prune5-qat3-2-2-2-b5`."""
    return f"{net}-prune{r}-qat{bits_text(bits).replace('/', '-')}" + (f"-b{bias_bits}" if bias_bits else "")


# --- measuring on the file loaded back ----------------------------------------------------------------


@dataclass
class Measured:
    """One compressed model, packed, loaded back and measured."""

    label: str
    kind: str  # technique | pipeline | curve
    report: PackReport
    error: float  # test error (%) of the model loaded from the file
    file: str  # path inside the run folder

    def row(self, base_error: float) -> dict[str, Any]:
        return {"model": self.label, "kind": self.kind, "file": self.file, "bytes": self.report.file_bytes,
                "ratio": round(self.report.ratio, 2), "size_reduction_%": round(100 * (1 - 1 / self.report.ratio), 2),
                "test_error_%": round(self.error, 2), "change_pp": round(self.error - base_error, 2)}


def tensor_rows(report: PackReport) -> list[dict[str, Any]]:
    """One table row per tensor of a packed file: density, layout, codebook, bits and bytes."""
    return [{"tensor": t.name, "shape": "x".join(map(str, t.shape)), "params": t.numel,
             "density_%": round(100 * t.density, 2), "layout": t.layout, "codebook": t.codebook,
             "bits/code": round(t.code_bits, 2), "bits/index": round(t.index_bits, 2), "bytes": t.nbytes}
            for t in report.tensors]


class Bench:
    """Packs a model into the run folder, loads it back, and measures the loaded model."""

    def __init__(self, net: str, data: Mnist, run: Run, reference: nn.Module):
        self.net, self.data, self.run = net, data, run
        self.dense_bytes = dense_bytes(reference.state_dict())  # every ratio divides the uncompressed size
        self.results: list[Measured] = []

    def measure(self, model: nn.Module, label: str, kind: str, *, kwargs: dict[str, Any] | None = None,
                structure: dict[str, Any] | None = None, entropy: str = "huffman") -> Measured:
        bake(model)
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        rel = f"packed/{self.net}-{slug}.dlz"
        report = pack_model(model, self.run.path(rel), name=self.net, kwargs=kwargs, structure=structure,
                            entropy=entropy, meta={"study": "compress", "label": label},
                            reference_bytes=self.dense_bytes)
        loaded, _ = load_packed(report.path, self.run.device)
        result = Measured(label, kind, report, error_percent(loaded, self.data), rel)
        self.results.append(result)
        self.run.info(f"[{self.net}] {label}: {report.file_bytes} bytes, {report.ratio:.1f}x, "
                      f"error {result.error:.2f}%")
        return result
