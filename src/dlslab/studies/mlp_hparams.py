"""Study 1: how optimizer, initializer, activation, learning rate, width and depth change an
MLP classifier on MNIST and Fashion-MNIST.

Scientific factors are swept one at a time around a baseline (design=ofat) or as a grid over
chosen factors (design=grid). The learning rate is a nuisance parameter when optimizers are
compared: with `tune_lr`, every optimizer runs at every `tune_lrs` value and is compared at its
best rate (chosen on validation accuracy). Every configuration runs with `seeds` seeds;
tables show mean ± std and n. Test accuracy is measured at each trial's epoch of best
validation accuracy. Fixed: the data split, epochs, batch size and learning-rate schedule.
Same-shape configurations train together (`train.sweep`); designs, the per-configuration
summary and the failure diagnosis live there too (`train.sweep_summary`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from dlslab.config import StudyConfig, require
from dlslab.errors import ConfigError, UsageError
from dlslab.report.plots import line_plot, pyplot
from dlslab.runs import Run
from dlslab.train import sweep
from dlslab.train.optim import OptimizerName
from dlslab.train.sweep_summary import LEARNED_SHARE, aggregate, halving_rows, halving_savings

Dataset = Literal["mnist", "fashion-mnist"]
Optimizer = OptimizerName
Init = Literal["default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
               "normal", "zeros"]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"]
Factor = Literal["optimizer", "init", "activation", "lr", "width", "depth"]
# every value of each factor, in order: the defaults of the sweep lists below
FACTORS, OPTIMIZERS, INITS, ACTIVATIONS = (list(get_args(t)) for t in (Factor, Optimizer, Init, Activation))


@dataclass
class Config(StudyConfig):
    datasets: list[Dataset] = field(default_factory=lambda: ["mnist", "fashion-mnist"])  # datasets, same design each
    design: Literal["ofat", "grid"] = "ofat"  # ofat: each factor alone around the baseline; grid: all combinations
    factors: list[Factor] = field(default_factory=lambda: list(FACTORS))  # factors to sweep
    optimizers: list[Optimizer] = field(default_factory=lambda: list(OPTIMIZERS))  # optimizer values (momentum: SGD + 0.9)
    inits: list[Init] = field(default_factory=lambda: list(INITS))  # initializers (default: PyTorch's; normal: N(0, 0.01))
    activations: list[Activation] = field(default_factory=lambda: list(ACTIVATIONS))  # activation values
    lrs: list[float] = field(default_factory=lambda: [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])  # learning rates
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024])  # hidden widths
    depths: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])  # numbers of hidden layers
    optimizer: Optimizer = "adam"  # baseline optimizer
    init: Init = "default"  # baseline initializer
    activation: Activation = "relu"  # baseline activation
    lr: float = 1e-3  # baseline learning rate
    width: int = 512  # baseline hidden width
    depth: int = 2  # baseline number of hidden layers
    tune_lr: bool = True  # compare optimizers each at its best lr of `tune_lrs` (chosen on validation accuracy)
    tune_lrs: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 0.1])  # lrs per optimizer (+ baseline lr)
    deep_activations: bool = True  # also sweep activations at the deepest depth (vanishing gradients)
    seeds: int = 3  # seeds per configuration (weights and data order)
    epochs: int = 20  # passes over the training set
    batch_size: int = 128  # examples per step
    schedule: Literal["constant", "cosine"] = "cosine"  # learning-rate schedule over training (per step)
    train_size: int = 0  # training examples used (0: all not held out for validation)
    val_size: int = 5000  # training examples held out (stratified) to pick each trial's best epoch
    max_stack: int = 64  # most configurations trained together in one batched pass
    precision: Literal["fp32", "bf16"] = "fp32"  # matmul precision (bf16: fast on CPUs with AMX; weights stay fp32)
    halving: bool = False  # successive halving (ASHA's rule): stop trials outside the top 1/halving_rate at each rung
    halving_rate: int = 3  # reduction factor between rungs
    halving_min_epochs: int = 1  # first rung; later rungs at min_epochs * rate^k before the last epoch
    workers: int = 1  # worker processes training groups in parallel (CPU only; halving needs one process)
    pad_ratio: float = 6.0  # a shape with few trials joins a wider/deeper stack costing at most this x its own (1: off)
    ray: str | None = None  # address of a Ray cluster (host:port): train groups as Ray tasks there


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"datasets": ["mnist"], "factors": ["init", "width"], "inits": ["default", "zeros"],
              "widths": [32, 64], "width": 64, "seeds": 1, "epochs": 2, "train_size": 3000, "val_size": 1000,
              "tune_lr": False, "deep_activations": False, "batch_size": 100},
    "quick": {"datasets": ["fashion-mnist"], "seeds": 1, "epochs": 4, "train_size": 8000, "val_size": 2000,
              "width": 128, "widths": [32, 64, 128, 256, 512], "depths": [1, 2, 4, 6],
              "lrs": [1e-4, 1e-3, 1e-2, 0.1, 1.0], "tune_lrs": [1e-3, 1e-2, 0.1]},
    "full": {"epochs": 8, "batch_size": 256, "precision": "bf16", "workers": 2, "pad_ratio": 1.0, "width": 256},
}

def data_needs(cfg: Config) -> list[str]:
    return list(cfg.datasets)


def check(cfg: Config) -> None:
    """Range checks of every numeric field; the design itself (factor values) is checked too."""
    require(cfg, at_least_1=("seeds", "epochs", "batch_size", "val_size", "max_stack", "halving_rate",
                             "halving_min_epochs", "workers", "pad_ratio"),
            non_negative=("train_size",), positive=("tune_lrs",))  # train_size 0 = all not held out
    try:
        sweep.design_points(sweep.DesignSpec.of(cfg))  # lrs, widths, depths and the baseline in range
    except UsageError as exc:
        raise ConfigError(str(exc)) from None


# --- tables ------------------------------------------------------------------------------------


def _pct(row: dict[str, Any]) -> str:
    """'98.31 ± 0.05' (the std only when there are several seeds)."""
    if row["n"] < 2:
        return f"{100 * row['test_acc']:.2f}"
    return f"{100 * row['test_acc']:.2f} ± {100 * row['test_std']:.2f}"


def _table_row(label: str, value: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {label: value, "test acc % (mean ± std)": _pct(row), "n": row["n"],
            "final train loss": row["final_train_loss"], "train s": row["train_s"],
            "best val epoch": row["best_epoch"], "status": _status(row)}


def _status(row: dict[str, Any]) -> str:
    status = row["why"] or "learned"
    if row["stopped"]:
        status += f"; stopped early by halving ({row['stopped']}/{row['n']} seeds, {row['epochs_trained']:g} epochs)"
    return status


# --- report ------------------------------------------------------------------------------------


def _learning_curves(rows: list[tuple[Any, dict[str, Any]]], title: str) -> Any:
    series = {str(v): (list(range(1, len(r["val_curve"]) + 1)), r["val_curve"]) for v, r in rows}
    return line_plot(series, title=title, xlabel="epoch", ylabel="validation accuracy")


def _heatmap(rows: dict[str, dict[str, Any]], factors: list[str], title: str) -> Any:
    plt = pyplot()
    fa, fb = factors
    va = list(dict.fromkeys(r[fa] for r in rows.values()))
    vb = list(dict.fromkeys(r[fb] for r in rows.values()))
    cell = {(r[fa], r[fb]): r["test_acc"] for r in rows.values()}
    grid = [[cell.get((a, b), math.nan) for b in vb] for a in va]
    fig, ax = plt.subplots(figsize=(1.1 * len(vb) + 2, 0.5 * len(va) + 1.5))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(vb)), [str(v) for v in vb], rotation=30)
    ax.set_yticks(range(len(va)), [str(v) for v in va])
    ax.set(xlabel=fb, ylabel=fa, title=title)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if math.isfinite(v):
                ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.5 else "black")
    fig.colorbar(im, ax=ax, label="test accuracy")
    return fig


def _factor_sentence(factor: str, ranked: list[tuple[Any, dict[str, Any]]]) -> str:
    (best_v, best), rest = ranked[0], ranked[1:]
    text = f"{factor}: {best_v} wins (best validation accuracy) with {_pct(best)} % test accuracy (n={best['n']})"
    if rest:
        second_v, second = rest[0]
        gap = 100 * (best["test_acc"] - second["test_acc"])
        noise = 100 * max(best["test_std"], second["test_std"])
        verdict = "" if best["n"] < 2 else (" (more than one std apart)" if abs(gap) > noise else
                                             " (within one std: not a clear win)")
        worst_v, worst = ranked[-1]
        text += (f", {gap:+.2f} points over {second_v}{verdict}; "
                 f"worst is {worst_v} at {100 * worst['test_acc']:.2f} %")
    return text + "."


def report_dataset(cfg: Config, run: Run, dataset: str, points: list[tuple[str, dict[str, Any]]],
                   rows: dict[tuple[str, str], dict[str, Any]], classes: int) -> dict[str, Any]:
    """Tables, curves, heatmap and computed conclusions for one dataset; returns its summary."""
    cfg_of = lambda s: sweep.Trial(dataset=dataset, seed=0, **s).config  # noqa: E731
    mine = {c: r for (d, c), r in rows.items() if d == dataset}
    sentences = []
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label, s in points:
        by_label[label].append(s)

    for label, settings in by_label.items():
        if label == "baseline":
            continue
        entries = list({cfg_of(s): s for s in settings}.values())
        if label == "optimizer" and cfg.tune_lr and cfg.design == "ofat":
            sentences.append(_report_tuned(cfg, run, dataset, entries, mine, cfg_of))
            continue
        if cfg.design == "grid":
            continue
        factor = label.split("@")[0]
        vals = [(s[factor], mine[cfg_of(s)]) for s in entries]
        run.add_table(f"{dataset}: {label}", [_table_row(factor, v, r) for v, r in vals],
                      caption=f"{label} swept, other factors at the baseline ({cfg_of(sweep.DesignSpec.of(cfg).baseline)}"
                              + (f", depth {settings[0]['depth']}" if "@" in label else "") + ").")
        run.add_figure(_learning_curves(vals, f"{dataset}: {label}"), f"curves-{dataset}-{label}",
                       title=f"{dataset}: learning curves, {label}", caption="Mean over seeds.")
        ranked = sorted(vals, key=lambda vr: vr[1]["val_acc"], reverse=True)
        sentences.append(_factor_sentence(label, ranked))

    if cfg.design == "grid":
        rows_grid = {c: mine[c] for c in {cfg_of(s) for s in by_label[next(iter(by_label))]}}
        label = "*".join(cfg.factors)
        ordered = sorted(rows_grid.values(), key=lambda r: tuple(r[f] for f in cfg.factors))
        run.add_table(f"{dataset}: grid {label}",
                      [{**{f: r[f] for f in cfg.factors}, **_table_row("config", r["config"], r)} for r in ordered])
        if len(cfg.factors) == 2:
            run.add_figure(_heatmap(rows_grid, list(cfg.factors), f"{dataset}: test accuracy"),
                           f"heatmap-{dataset}", title=f"{dataset}: {label} heatmap")
        if set(cfg.factors) == {"optimizer", "lr"}:
            best = sweep.best_lr_per_optimizer(list(rows_grid.values()))
            sentences.append(_tuned_sentence(best))
        for f in cfg.factors:
            means = defaultdict(list)
            for r in rows_grid.values():
                means[r[f]].append(r["test_acc"])
            mean_rows = sorted(((v, statistics.fmean(a)) for v, a in means.items()), key=lambda x: -x[1])
            sentences.append(f"{f} (averaged over the other grid factors): best {mean_rows[0][0]} at "
                             f"{100 * mean_rows[0][1]:.2f} %, worst {mean_rows[-1][0]} at {100 * mean_rows[-1][1]:.2f} %.")

    deep = [k for k in by_label if k.startswith("activation@")]
    if deep and "activation" in by_label:
        d = by_label[deep[0]][0]["depth"]
        parts = []
        for s in by_label["activation"]:
            shallow, deep_row = mine[cfg_of(s)], mine[cfg_of(s | {"depth": d})]
            parts.append(f"{s['activation']} {100 * shallow['test_acc']:.1f} -> {100 * deep_row['test_acc']:.1f} % "
                         f"(first/last layer gradient at init {deep_row['grad_ratio']:.1e})")
        sentences.append(f"Going from depth {cfg.depth} to depth {d}: " + "; ".join(parts) + ".")

    ranked = sorted(mine.values(), key=lambda r: r["val_acc"], reverse=True)
    run.add_table(f"{dataset}: 10 best configurations",
                  [{"rank": i + 1, "config": r["config"], "val acc %": 100 * r["val_acc"],
                    "test acc % (mean ± std)": _pct(r), "n": r["n"], "train s": r["train_s"]}
                   for i, r in enumerate(ranked[:10])], caption="Ranked by mean validation accuracy.")
    failed = [r for r in ranked if r["failed"]]
    if failed:
        run.add_table(f"{dataset}: configurations that failed to learn",
                      [{"config": r["config"], "test acc %": 100 * r["test_acc"], "why": r["why"]} for r in failed],
                      caption=f"Failed: mean validation accuracy gained less than {LEARNED_SHARE:.0%} of the best "
                              f"configuration's gain over chance ({100 / classes:.0f} %).")
    best = ranked[0]
    sentences.insert(0, f"Best configuration on {dataset}: {best['config']} with {_pct(best)} % test accuracy "
                        f"(n={best['n']}); {len(failed)} of {len(ranked)} configurations failed to learn"
                        + (": " + "; ".join(f"{r['config']} ({r['why'].split(':')[0]})" for r in failed) if failed else "")
                        + ".")
    run.add_text(f"{dataset}: findings", "\n".join(sentences))
    base = mine.get(cfg_of(sweep.DesignSpec.of(cfg).baseline))
    return {"best": best, "failed": len(failed), "configs": len(ranked),
            "baseline_test_acc": base["test_acc"] if base else None}


def _tuned_sentence(best: dict[str, dict[str, Any]]) -> str:
    order = sorted(best.items(), key=lambda kv: kv[1]["val_acc"], reverse=True)
    (o1, r1), rest = order[0], order[1:]
    text = (f"optimizer (each at its best learning rate): {o1} (lr={r1['lr']:g}) wins (best validation accuracy) "
            f"with {_pct(r1)} % test accuracy")
    if rest:
        o2, r2 = rest[0]
        text += (f", {100 * (r1['test_acc'] - r2['test_acc']):+.2f} points over {o2} (lr={r2['lr']:g}); "
                 f"worst is {order[-1][0]} at {100 * order[-1][1]['test_acc']:.2f} %")
    return text + "."


def _report_tuned(cfg: Config, run: Run, dataset: str, entries: list[dict[str, Any]],
                  mine: dict[str, dict[str, Any]], cfg_of: Any) -> str:
    rows = [mine[cfg_of(s)] for s in entries]
    best = sweep.best_lr_per_optimizer(rows)
    at_base = {r["optimizer"]: r for r in rows if r["lr"] == cfg.lr}
    table = []
    for o, r in best.items():
        table.append({**_table_row("optimizer", o, r), "best lr": r["lr"],
                      f"test acc % at lr={cfg.lr:g}": 100 * at_base[o]["test_acc"] if o in at_base else None})
    run.add_table(f"{dataset}: optimizer at its best learning rate", table,
                  caption=f"Each optimizer tried at lr in {sorted({r['lr'] for r in rows})}; best chosen on "
                          "validation accuracy. Other factors at the baseline.")
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in sorted(rows, key=lambda r: r["lr"]):
        xs, ys = series.setdefault(r["optimizer"], ([], []))
        xs.append(r["lr"])
        ys.append(r["test_acc"])
    run.add_figure(line_plot(series, title=f"{dataset}: test accuracy vs learning rate", xlabel="learning rate",
                             ylabel="test accuracy", logx=True), f"lr-per-optimizer-{dataset}",
                   title=f"{dataset}: test accuracy vs learning rate, per optimizer")
    run.add_figure(_learning_curves([(f"{o} lr={r['lr']:g}", r) for o, r in best.items()],
                                    f"{dataset}: optimizers at best lr"),
                   f"curves-{dataset}-optimizer", title=f"{dataset}: learning curves, optimizer (best lr each)")
    return _tuned_sentence(best)


def report_halving(cfg: Config, run: Run, results: list[dict[str, Any]],
                   summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How many trials successive halving stopped at each rung, and the epochs it saved."""
    rungs = sweep.Halving(cfg.halving_rate, cfg.halving_min_epochs).rungs(cfg.epochs)
    run.add_table("successive halving", halving_rows(results, list(cfg.datasets), rungs, cfg.epochs),
                  caption=f"Reduction factor {cfg.halving_rate}: at each rung a trial goes on only if its validation "
                          "accuracy is in the top 1/rate of the results recorded at that rung so far.")
    savings = halving_savings(results, rungs, cfg.epochs)
    best = []
    for d, summary in summaries.items():
        config = summary["best"]["config"]
        ran = all(r["stopped_epoch"] is None for r in results if r["dataset"] == d and r["config"] == config)
        best.append(f"best on {d}: {config} ({'trained to the end' if ran else 'stopped early'})")
    run.add_text("successive halving: compute", f"Trained {savings['epochs_trained']} of {savings['epochs_full']} "
                 f"trial-epochs ({100 * savings['saved']:.0f} % saved); " + "; ".join(best) + ".")
    return savings


# --- run ----------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict[str, Any]:
    points = sweep.design_points(sweep.DesignSpec.of(cfg))
    seeds = [cfg.seed + k for k in range(cfg.seeds)]
    trials = sweep.trials_for(points, cfg.datasets, seeds)
    spec_of = sweep.data_specs(run.data_dir, train_size=cfg.train_size, val_size=cfg.val_size, split_seed=cfg.seed)
    for name in cfg.datasets:
        sweep.load_sweep_data(spec_of(name), str(run.device))  # a missing dataset fails here, before any work
    groups = sweep.make_groups(trials, spec_of, epochs=cfg.epochs, batch_size=cfg.batch_size,
                               schedule=cfg.schedule, order_seed=cfg.seed, max_stack=cfg.max_stack,
                               precision=cfg.precision, pad_ratio=cfg.pad_ratio)
    workers = cfg.workers if cfg.ray or (run.device.type == "cpu" and not cfg.halving) else 1  # else 1 process
    halving = sweep.Halving(cfg.halving_rate, cfg.halving_min_epochs) if cfg.halving else None
    run.info(f"mlp-hparams: {len(trials)} trials ({len(trials) // len(seeds)} configurations x {len(seeds)} seeds) "
             f"in {len(groups)} batched groups" + (f" on Ray at {cfg.ray}" if cfg.ray else
                                                     f", {workers} worker processes" if workers > 1 else ""))
    count = [0]

    def on_group(spec: sweep.GroupSpec, res: list[dict[str, Any]], elapsed: float) -> None:
        count[0] += 1
        best = max(r["val_acc"] for r in res)
        run.info(f"[{count[0]}/{len(groups)}] {spec.name}: {len(res)} models, best val acc {best:.4f} "
                 f"({elapsed:.1f} s so far)")

    def on_epoch(name: str, epoch: int, record: dict[str, float]) -> None:
        accs = [v for k, v in record.items() if k.startswith("val_acc/")]
        if not accs:  # successive halving stopped the whole group
            return
        run.info(f"  {name} epoch {epoch}/{cfg.epochs}: loss {record.get('train_loss', math.nan):.4f}  "
                 f"val acc mean {statistics.fmean(accs):.4f} max {max(accs):.4f}  ({record['epoch_s']:.1f} s)")

    results = sweep.run_groups(groups, run=run, device=run.device, workers=workers, ray_address=cfg.ray,
                               on_group=on_group, on_epoch=on_epoch, halving=halving)
    classes = len(sweep.load_sweep_data(spec_of(cfg.datasets[0]), str(run.device)).classes)
    rows = aggregate(results, classes)
    summaries = {d: report_dataset(cfg, run, d, points, rows, classes) for d in cfg.datasets}
    sweep_s = sum(r["train_s"] for r in results)
    halving_summary = report_halving(cfg, run, results, summaries) if halving is not None else None
    run.answer(" ".join(f"On {d} the best configuration, chosen on validation accuracy, is {s['best']['config']}: "
                        f"{100 * s['best']['test_acc']:.2f}% test accuracy" + (
                            "." if s["baseline_test_acc"] is None else
                            f" against {100 * s['baseline_test_acc']:.2f}% for the baseline.")
                        for d, s in summaries.items()))
    return {
        "headline": {
            "best_test_acc": {d: s["best"]["test_acc"] for d, s in summaries.items()},
            "baseline_test_acc": {d: s["baseline_test_acc"] for d, s in summaries.items()},
            "failed_configs": {d: s["failed"] for d, s in summaries.items()},
            "configs": len(rows), "trials": len(results), "train_s": sweep_s,
        } | ({"halving_epochs_saved": halving_summary["saved"]} if halving_summary else {}),
        "halving": halving_summary,
        "best_config": {d: s["best"]["config"] for d, s in summaries.items()},
        "configs": list(rows.values()),
    }
