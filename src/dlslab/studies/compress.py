"""Study 7: how small can a network get without losing accuracy?

LeNet-300-100 and LeNet-5 are trained on MNIST, then compressed by each technique alone
(magnitude pruning one-shot and iterative, structured pruning, k-means weight sharing,
int8/int4 quantisation post-training and quantisation-aware, truncated-SVD low rank) and in
chains, above all Deep Compression's prune -> share -> Huffman. Every result is written as a
packed file (`compress/packed.py`), loaded back into a fresh model, and measured after
loading: ratio = dense float32 bytes / the file's size on disk, error = that loaded model's
test error.

Scientific variables: the technique and its strength (sparsity, bits, rank). Nuisance:
fine-tuning epochs and learning rate, the same for every technique. Fixed: architecture,
data, seed.
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import zstandard
from torch import nn

from dlslab.compress.layers import weight_layers
from dlslab.compress.lowrank import low_rank_factorise
from dlslab.compress.pipeline import (Bench, Mnist, PruneSpec, StageSpec, error_percent, layer_settings, load_mnist,
                                      network_epochs, pruning_rounds, qat_layer_bits, quantise_pruned, quantised_label,
                                      quantised_stage_name, tensor_rows, train)
from dlslab.compress.prune import layer_density, prune_magnitude
from dlslab.compress.quant import prepare_qat, quantise_ptq
from dlslab.compress.share import share_weights
from dlslab.compress.structured import structured_prune
from dlslab.config import StudyConfig
from dlslab.errors import ConfigError
from dlslab.models import build_model
from dlslab.report.plots import pyplot
from dlslab.runs import Run
from dlslab.train.engine import clone_model

NETWORKS = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5"}
BASELINE_TARGET = {"lenet300": 2.0, "lenet5": 1.0}  # uncompressed test error (%) a run must reach
BASELINE_ANCHOR = {"lenet300": "Deep Compression's baseline 1.64%", "lenet5": "Deep Compression's baseline 0.80%"}
RATIO_ANCHOR = {"lenet300": "97% smaller; Deep Compression 40x at -0.06 pp",  # Han et al. 2016, Table 1
                "lenet5": "97% smaller; Deep Compression 39x at -0.06 pp, sparse VD 280x, Bayesian compression 419x"}
Network = Literal["lenet300", "lenet5"]


@dataclass
class Config(StudyConfig):
    networks: list[Network] = field(default_factory=lambda: ["lenet300", "lenet5"])  # networks to compress
    train_subset: int = 0  # training images used (0 = all 60,000; a seeded, class-stratified subset otherwise)
    test_subset: int = 0  # test images every error is measured on (0 = all 10,000)
    batch_size: int = 128  # minibatch size of every training stage
    bf16: bool = False  # train every stage under bf16 autocast on the CPU (AMX); weights stay float32
    epochs: int = 30  # epochs of the uncompressed baseline (Adam, one-cycle LR)
    lr: float = 2e-3  # peak learning rate of the baseline
    weight_decay: float = 1e-4  # L2 weight decay (Adam) of the baseline and of every retraining / fine-tuning stage
    finetune_lr: float = 1e-3  # starting learning rate of every retraining / fine-tuning stage (decays linearly)
    prune_rounds: int = 5  # rounds of iterative pruning (sparsity rises cubically), each retrained
    prune_epochs: int = 3  # retraining epochs after each pruning round
    lenet300_density: list[float] = field(default_factory=lambda: [0.08, 0.09, 0.26])  # LeNet-300-100 weights kept per layer (fc1, fc2, fc3)
    lenet5_density: list[float] = field(default_factory=lambda: [0.66, 0.12, 0.05, 0.19])  # LeNet-5 weights kept per layer (conv1, conv2, fc1, fc2)
    lenet300_bits: list[int] = field(default_factory=lambda: [5, 5, 5])  # k-means bits per layer, deep compression of LeNet-300-100
    lenet5_bits: list[int] = field(default_factory=lambda: [5, 5, 4, 5])  # k-means bits per layer, deep compression of LeNet-5
    lenet300_qat_round: int = 2  # pruning round whose model is then trained quantisation-aware at qat_bits, pruned weights held at zero (0 = skip; chosen on validation splits, see docs/studies/compress.md)
    lenet5_qat_round: int = 2  # the same for LeNet-5 (chosen on validation splits)
    qat_epochs: int = 12  # epochs of that pruning -> QAT stage (learning rate finetune_lr, decaying linearly to zero; chosen on a validation split)
    qat_bits: int = 3  # bits of that stage's uniform quantiser, 2..8 (3: 7 levels; chosen on validation splits)
    lenet300_qat_bits: list[int] = field(default_factory=list)  # LeNet-300-100's QAT bits per layer, 2..8 (empty = qat_bits)
    lenet5_qat_bits: list[int] = field(default_factory=list)  # the same for LeNet-5 (2: ternary)
    lenet300_qat_bias_bits: int = 0  # k-means bits of the biases, shared in LeNet-300-100's QAT stage (0 = float32)
    lenet5_qat_bias_bits: int = 0  # the same for LeNet-5
    lenet300_distill: float = 0.9  # weight of knowledge distillation from the uncompressed model in LeNet-300-100's QAT stage (0 = labels only; chosen on validation splits)
    lenet5_distill: float = 0.0  # the same for LeNet-5
    lenet300_prune_distill: float = 0.9  # the same weight in every pruning round's retraining of LeNet-300-100 (chosen on validation splits)
    lenet5_prune_distill: float = 0.0  # the same for LeNet-5
    lenet300_epoch_scale: int = 1  # LeNet-300-100 trains this many times the epochs of every stage (an epoch costs ~1/15 of LeNet-5's)
    lenet5_epoch_scale: int = 1  # the same for LeNet-5
    distill_temperature: float = 4.0  # softmax temperature of the distillation term
    bias_bits: int = 5  # k-means bits of the biases (shared too, so they are not stored as floats)
    share_epochs: int = 4  # centroid fine-tuning epochs after weight sharing
    technique_epochs: int = 3  # fine-tuning epochs of each single technique (k-means, QAT, structured, low rank)
    dense_share_bits: int = 4  # bits of k-means sharing applied alone (no pruning)
    structured_keep: float = 0.5  # fraction of hidden units / channels that structured pruning keeps
    lowrank_keep: float = 0.15  # rank kept by truncated SVD, as a fraction of each hidden layer's full rank
    loss_tolerance_pp: float = 0.1  # allowed test-error increase (percentage points) for the headline target


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"train_subset": 800, "test_subset": 500, "epochs": 2, "prune_rounds": 2, "prune_epochs": 1,
              "lenet300_qat_round": 2, "lenet5_qat_round": 2, "qat_epochs": 2,
              "share_epochs": 1, "technique_epochs": 1, "lenet5_density": [0.6, 0.2, 0.05, 0.2]},
    # quick: bf16, all 60,000 images, 3 epochs (LeNet-300-100: x2); settings chosen on a validation split
    "quick": {"bf16": True, "test_subset": 5000, "epochs": 3, "prune_rounds": 2, "prune_epochs": 1, "qat_epochs": 2,
              "lenet300_epoch_scale": 2, "lenet300_density": [0.14, 0.14, 0.3], "share_epochs": 0,
              "technique_epochs": 0},
    # full: LeNet-5's conv2 ternary, the rest 3 bits, shared biases, from the last round; chosen on 4 validation splits
    "full": {"lenet5_density": [0.66, 0.12, 0.045, 0.19], "lenet5_qat_round": 5, "lenet5_qat_bits": [3, 2, 3, 3],
             "lenet5_qat_bias_bits": 5},
}


def data_needs(cfg: Config) -> list[str]:
    return ["mnist"]


# --- checks --------------------------------------------------------------------------------------


def check(cfg: Config) -> None:
    """Range checks of every numeric field, and the per-layer lists against each network's layers."""
    if not cfg.networks:
        raise ConfigError(f"networks is empty: name some of {', '.join(NETWORKS)}")
    for name in ("batch_size", "epochs", "prune_rounds", "qat_epochs"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1; got {getattr(cfg, name)}")
    for name in ("train_subset", "test_subset", "prune_epochs", "share_epochs", "technique_epochs"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0; got {getattr(cfg, name)}")
    for name in ("lr", "finetune_lr", "distill_temperature"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be > 0; got {getattr(cfg, name)}")
    if cfg.weight_decay < 0 or cfg.loss_tolerance_pp < 0:
        raise ConfigError(f"weight_decay ({cfg.weight_decay}) and loss_tolerance_pp ({cfg.loss_tolerance_pp}) "
                          "must be >= 0")
    for name, lo, hi in (("bias_bits", 1, 16), ("dense_share_bits", 1, 16), ("structured_keep", 1e-9, 1),
                         ("lowrank_keep", 1e-9, 1)):
        if not lo <= getattr(cfg, name) <= hi:
            raise ConfigError(f"{name} must lie in {'1..16' if hi == 16 else '(0, 1]'}; got {getattr(cfg, name)}")
    for net in NETWORKS:
        qat_round = getattr(cfg, f"{net}_qat_round")
        if not 0 <= qat_round <= cfg.prune_rounds:
            raise ConfigError(f"{net}_qat_round must lie in 0..prune_rounds ({cfg.prune_rounds}); got {qat_round}")
        if getattr(cfg, f"{net}_epoch_scale") < 1 or not 0 <= getattr(cfg, f"{net}_qat_bias_bits") <= 16:
            raise ConfigError(f"{net}_epoch_scale must be >= 1 ({getattr(cfg, f'{net}_epoch_scale')}) and "
                              f"{net}_qat_bias_bits in 0..16 ({getattr(cfg, f'{net}_qat_bias_bits')})")
        for stage in ("distill", "prune_distill"):
            if not 0 <= getattr(cfg, f"{net}_{stage}") <= 1:
                raise ConfigError(f"{net}_{stage} must lie in [0, 1]; got {getattr(cfg, f'{net}_{stage}')}")
        layer_settings(build_model(net), getattr(cfg, f"{net}_density"), getattr(cfg, f"{net}_bits"), net)
        qat_layer_bits(cfg, net, build_model(net))  # qat_bits and <net>_qat_bits in 2..8, one per layer


# --- the compression runs of one network --------------------------------------------------------------


def compress_network(net: str, cfg: Config, data: Mnist, run: Run) -> dict[str, Any]:
    cfg = network_epochs(cfg, net)
    qat_round, distill = getattr(cfg, f"{net}_qat_round"), getattr(cfg, f"{net}_distill")
    stages, bias_bits = StageSpec.of(cfg), getattr(cfg, f"{net}_qat_bias_bits")
    torch.manual_seed(cfg.seed)
    base = build_model(net).to(run.device)
    qat_bits = qat_layer_bits(cfg, net, base)
    train(base, data, stages, run, f"{net}-baseline", cfg.epochs, finetune=False)
    base_error = error_percent(base, data)
    bench = Bench(net, data, run, base)
    bench.measure(clone_model(base), "baseline float32", "technique")
    sparsity, bits = layer_settings(base, getattr(cfg, f"{net}_density"), getattr(cfg, f"{net}_bits"), net)

    # pruning: one-shot with a global threshold, at the same overall sparsity as the target
    sizes = {n: m.weight.numel() for n, m in weight_layers(base).items()}
    overall = sum(sparsity[n] * sizes[n] for n in sizes) / sum(sizes.values())
    m = clone_model(base)
    prune_magnitude(m, overall, scope="global")
    bench.measure(m, "prune one-shot global", "technique")

    # iterative per-layer pruning with retraining; every round is a point on the curve
    for r, pruned in pruning_rounds(base, data, stages, PruneSpec.of(cfg, net, base), run, net):
        last = r == cfg.prune_rounds
        bench.measure(clone_model(pruned), "prune iterative" if last else f"prune round {r}",
                      "technique" if last else "curve")
        bench.measure(share_weights(clone_model(pruned), bits, cfg.bias_bits),
                      f"prune round {r} + k-means (no fine-tuning)", "curve")
        if r == qat_round:  # pruning, then quantisation-aware training with the pruned weights held at zero
            m = quantise_pruned(pruned, base, data, stages, run, quantised_stage_name(net, r, qat_bits, bias_bits),
                                bits=qat_bits, epochs=cfg.qat_epochs, distill=distill, bias_bits=bias_bits)
            bench.measure(m, quantised_label(r, qat_bits, distill, bias_bits), "pipeline")
    density = layer_density(pruned)

    # Deep Compression: prune -> k-means sharing -> centroid fine-tuning -> Huffman
    deep = share_weights(clone_model(pruned), bits, cfg.bias_bits)
    train(deep, data, stages, run, f"{net}-share", cfg.share_epochs)
    deep_result = bench.measure(deep, "deep compression (prune + k-means + Huffman)"
                                + ("" if cfg.share_epochs else ", centroids not fine-tuned"), "pipeline")
    fixed = bench.measure(deep, "prune + k-means, fixed-width codes", "pipeline", entropy="fixed")

    # weight sharing alone, then uniform quantisation
    m = share_weights(clone_model(base), dict.fromkeys(bits, cfg.dense_share_bits), cfg.bias_bits)
    train(m, data, stages, run, f"{net}-kmeans", cfg.technique_epochs)
    untuned = "" if cfg.technique_epochs else " (not fine-tuned)"  # the quick preset skips these epochs
    bench.measure(m, f"k-means {cfg.dense_share_bits}-bit + centroid fine-tuning" + untuned, "technique")
    for b in (8, 4):
        bench.measure(quantise_ptq(clone_model(base), b), f"int{b} post-training", "technique")
    m = prepare_qat(clone_model(base), 4)
    train(m, data, stages, run, f"{net}-qat4", cfg.technique_epochs)
    bench.measure(m, "int4 quantisation-aware" + untuned, "technique")

    # structured pruning: a smaller dense network; then chained with int8
    small, small_kwargs = structured_prune(base, net, {}, cfg.structured_keep)
    train(small, data, stages, run, f"{net}-structured", cfg.technique_epochs)
    bench.measure(small, f"structured keep {cfg.structured_keep:.0%}" + untuned, "technique", kwargs=small_kwargs)
    bench.measure(quantise_ptq(small, 8), "structured + int8", "pipeline", kwargs=small_kwargs)

    # low rank: truncated SVD of the hidden linear layers; then chained with int8
    lr_model = clone_model(base)
    linears = [n for n, mod in weight_layers(base).items() if isinstance(mod, nn.Linear)][:-1]
    ranks = low_rank_factorise(lr_model, {n: max(1, round(cfg.lowrank_keep * min(base.get_submodule(n).weight.shape)))
                                          for n in linears})
    train(lr_model, data, stages, run, f"{net}-lowrank", cfg.technique_epochs)
    structure = {"lowrank": ranks}
    bench.measure(lr_model, "low rank (SVD) " + ", ".join(f"{k} r={v}" for k, v in ranks.items()) + untuned,
                  "technique", structure=structure)
    bench.measure(quantise_ptq(lr_model, 8), "low rank + int8", "pipeline", structure=structure)

    return {"base": base, "base_error": base_error, "bench": bench, "deep": deep_result, "fixed": fixed,
            "density": density, "bits": bits, "deep_model": deep}


# --- reporting --------------------------------------------------------------------------------


def entropy_rows(run: Run, out: dict[str, Any]) -> list[dict[str, Any]]:
    """The same compressed model under each coder: our Huffman vs general-purpose compressors."""
    fixed_bytes = run.path(out["fixed"].file).read_bytes()
    huff_bytes = run.path(out["deep"].file).read_bytes()
    dense = run.path(out["bench"].results[0].file).read_bytes()
    rows = [("float32, no pruning (packed raw)", len(dense)),
            ("  ... + zstd -9", len(zstandard.ZstdCompressor(level=9).compress(dense))),
            ("pruned + shared, fixed-width codes and gaps", len(fixed_bytes)),
            ("  ... + zstd -19", len(zstandard.ZstdCompressor(level=19).compress(fixed_bytes))),
            ("  ... + lzma -9e", len(lzma.compress(fixed_bytes, preset=9 | lzma.PRESET_EXTREME))),
            ("pruned + shared, Huffman codes and gaps (ours)", len(huff_bytes)),
            ("  ... + zstd -19", len(zstandard.ZstdCompressor(level=19).compress(huff_bytes))),
            ("  ... + lzma -9e", len(lzma.compress(huff_bytes, preset=9 | lzma.PRESET_EXTREME)))]
    dense_f32 = out["deep"].report.dense_bytes
    return [{"coding": name, "bytes": n, "ratio": round(dense_f32 / n, 2)} for name, n in rows]


def histogram_figure(net: str, out: dict[str, Any]) -> Any:
    plt = pyplot()
    layers = weight_layers(out["base"])
    first = max(layers, key=lambda n: layers[n].weight.numel())  # the layer that dominates the size
    base_w = out["base"].get_submodule(first).weight.detach().flatten().cpu()
    deep_layer = out["deep_model"].get_submodule(first)
    deep_w = deep_layer.weight.detach().flatten().cpu()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharex=True)
    axes[0].hist(base_w.numpy(), bins=200, color="tab:blue")
    axes[0].set(title=f"{NETWORKS[net]} {first}: trained, dense", xlabel="weight", ylabel="count")
    nz = deep_w[deep_w != 0]
    values, counts = torch.unique(nz, return_counts=True)
    axes[1].bar(values.numpy(), counts.numpy(), width=(float(base_w.max() - base_w.min())) / 200, color="tab:red")
    axes[1].set(title=f"after pruning + sharing: {len(nz)} non-zero, {len(values)} values",
                xlabel="weight", ylabel="count")
    fig.tight_layout()
    return fig


def curve_figure(outs: dict[str, dict[str, Any]], tolerance: float) -> Any:
    plt = pyplot()
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(len(outs), 1, figsize=(9, 4.5 * len(outs)), squeeze=False)
    for ax, (net, out) in zip(axes[:, 0], outs.items()):
        results = out["bench"].results
        prune_pts = [r for r in results if r.label.startswith("prune round") and "k-means" not in r.label
                     or r.label == "prune iterative"]
        share_pts = [r for r in results if "k-means (no fine-tuning)" in r.label]
        for pts, name in ((prune_pts, "iterative pruning (float32 values)"),
                          (share_pts, "pruning rounds + k-means, no fine-tuning")):
            ax.plot([p.report.ratio for p in pts], [p.error for p in pts], marker="o", label=name)
        others = [r for r in results if r not in prune_pts and r not in share_pts]
        for r in others:
            ax.scatter(r.report.ratio, r.error, marker="s" if r.kind == "pipeline" else "^", zorder=3,
                       label=r.label)
        ax.axhline(out["base_error"], color="k", lw=0.8, ls="--", label="uncompressed")
        ax.axhline(out["base_error"] + tolerance, color="gray", lw=0.8, ls=":", label=f"+{tolerance} pp")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set(title=f"{NETWORKS[net]}: test error vs compression", xlabel="compression ratio (file bytes)",
               ylabel="test error (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def record_answer(cfg: Config, run: Run, headline: dict[str, dict[str, float]]) -> None:
    """The answer (the largest ratio within the tolerance per network) and the targets."""
    best = headline["best_ratio_within_tolerance"]
    run.answer(f"Within +{cfg.loss_tolerance_pp} pp of its own uncompressed test error, "
               + " and ".join(f"{NETWORKS[n]} ({headline['baseline_error_pct'][n]:.2f}% error) gets "
                              f"{best[n]:.1f}x smaller ({100 * (1 - 1 / best[n]):.1f}%)" for n in best)
               + "; Deep Compression's prune + k-means + Huffman file: "
               + ", ".join(f"{headline['compression_ratio'][n]:.1f}x at {headline['error_delta_pp'][n]:+.2f} pp"
                           for n in best) + ".")
    for net in best:
        run.target(f"{NETWORKS[net]} uncompressed test error (%)", headline["baseline_error_pct"][net],
                   at_most=BASELINE_TARGET[net], anchor=BASELINE_ANCHOR[net])
        run.target(f"{NETWORKS[net]} largest ratio within +{cfg.loss_tolerance_pp} pp", best[net], at_least=33.4,
                   anchor=RATIO_ANCHOR[net])


def run(cfg: Config, run: Run) -> dict[str, Any]:
    data = load_mnist(run.data_dir, run.device, train_subset=cfg.train_subset, test_subset=cfg.test_subset,
                      seed=cfg.seed)
    run.test_data(*data.test)
    outs = {net: compress_network(net, cfg, data, run) for net in cfg.networks}

    headline: dict[str, dict[str, float]] = {k: {} for k in (
        "compression_ratio", "error_delta_pp", "baseline_error_pct", "compressed_error_pct",
        "best_ratio_within_tolerance", "lossless_size_reduction_pct")}
    findings = []
    for net, out in outs.items():
        base_error, deep = out["base_error"], out["deep"]
        rows = [r.row(base_error) for r in out["bench"].results]
        run.add_table(f"{NETWORKS[net]}: every technique and pipeline", rows,
                      caption=f"Uncompressed test error {base_error:.2f}%. Bytes are the sizes of the packed "
                                "files on disk; errors are measured on the models loaded back from them.")
        run.add_table(f"{NETWORKS[net]}: deep compression, per tensor", tensor_rows(out["deep"].report),
                      caption="Density, codebook size and the average bits per code and per sparse index "
                              "(Huffman coded) of every tensor in the packed file.")
        run.add_table(f"{NETWORKS[net]}: entropy coding vs general-purpose compressors", entropy_rows(run, out))
        run.add_figure(histogram_figure(net, out), f"{net}-weights", title=f"{NETWORKS[net]}: weights before and after")
        within = [r for r in out["bench"].results if r.error <= base_error + cfg.loss_tolerance_pp]
        lossless = [r for r in out["bench"].results if r.error <= base_error]
        best = max(within, key=lambda r: r.report.ratio)
        best_lossless = max(lossless, key=lambda r: r.report.ratio)
        headline["compression_ratio"][net] = round(deep.report.ratio, 2)
        headline["error_delta_pp"][net] = round(deep.error - base_error, 3)
        headline["baseline_error_pct"][net] = round(base_error, 3)
        headline["compressed_error_pct"][net] = round(deep.error, 3)
        headline["best_ratio_within_tolerance"][net] = round(best.report.ratio, 2)
        headline["lossless_size_reduction_pct"][net] = round(100 * (1 - 1 / best_lossless.report.ratio), 2)
        ok = deep.error <= base_error + cfg.loss_tolerance_pp
        prune_distill = getattr(cfg, f"{net}_prune_distill")
        findings.append(
            f"{NETWORKS[net]}: deep compression stores {deep.report.dense_bytes:,} float32 bytes in "
            f"{deep.report.file_bytes:,} bytes ({deep.report.ratio:.1f}x) at {deep.error:.2f}% test error "
            f"vs {base_error:.2f}% uncompressed ({deep.error - base_error:+.2f} pp), "
            f"{'within' if ok else 'outside'} the +{cfg.loss_tolerance_pp} pp tolerance. "
            f"The largest ratio within the tolerance is {best.report.ratio:.1f}x ({best.label}); "
            f"the largest with no loss at all is {best_lossless.report.ratio:.1f}x "
            f"({100 * (1 - 1 / best_lossless.report.ratio):.1f}% smaller, {best_lossless.label}). "
            f"Huffman coding makes the file {out['fixed'].report.file_bytes / deep.report.file_bytes:.2f}x "
            f"smaller than fixed-width codes."
            + (f" Every pruning round retrained with knowledge distillation from the uncompressed model "
               f"(weight {prune_distill:g})." if prune_distill > 0 else ""))
    run.add_figure(curve_figure(outs, cfg.loss_tolerance_pp), "error-vs-ratio",
                   title="Test error vs compression ratio",
                   caption="Each point is a packed file loaded back and evaluated; the lines follow the "
                           "iterative-pruning rounds.")
    run.add_text("Findings", "\n\n".join(findings))
    record_answer(cfg, run, headline)
    return {"headline": headline,
            "results": {net: [r.row(out["base_error"]) for r in out["bench"].results] for net, out in outs.items()},
            "layer_density": {net: out["density"] for net, out in outs.items()}}
