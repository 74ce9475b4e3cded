"""Study 2: how each hidden layer of an MLP separates the classes.

Networks that differ in activation and depth are trained (or the best network of a finished
mlp-hparams run is reused), and every hidden layer's output on the test set is collected, the
input pixels being layer 0. For each network: a grid of PCA and t-SNE maps (layers as
columns), PCA explained-variance curves, and per layer four separation scores (silhouette,
cross-validated k-NN accuracy, linear-probe accuracy, Fisher ratio) as a table and as lines
across layers. The first network is also embedded at its initial weights, untrained.

Scientific variables: the activation and depth of the network, the layer, trained vs
untrained. Nuisance: optimizer, learning rate, epochs and width (the same for every
network). Fixed: the data split, the embedded test points, t-SNE's perplexity and the scores.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dlslab import config
from dlslab.config import StudyConfig, require
from dlslab.data.splits import stratified_indices
from dlslab.errors import ConfigError, DataError, UsageError
from dlslab.metrics import separation
from dlslab.metrics.projection import pca, tsne
from dlslab.models.mlp import ACTIVATIONS, MLP
from dlslab.report.plots import line_plot, pyplot
from dlslab.runs import Run, safe_torch_load
from dlslab.seeding import derive
from dlslab.train import sweep
from dlslab.train.optim import OptimizerName

METRICS = ("silhouette", "knn_acc", "probe_acc", "fisher_ratio")


@dataclass
class Config(StudyConfig):
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"  # dataset the networks learn and are embedded on
    networks: list[str] = field(default_factory=lambda: ["relu-2", "tanh-2", "sigmoid-2", "relu-6", "sigmoid-6"])  # ACTIVATION-DEPTH
    untrained: bool = True  # also embed the first network at its initial weights
    width: int = 256  # hidden width of every network
    optimizer: OptimizerName = "adam"  # optimizer
    lr: float = 1e-3  # learning rate (cosine schedule)
    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # examples per step
    train_size: int = 0  # training examples used (0: all not held out)
    val_size: int = 5000  # training examples held out to pick the best epoch
    pre_activation: bool = False  # embed each layer's Linear output instead of its activation
    eval_points: int = 10000  # test points (stratified) embedded and scored
    tsne_points: int = 10000  # points per t-SNE map (a stratified subsample of eval_points)
    perplexity: float = 30.0  # t-SNE perplexity
    knn_k: int = 5  # neighbours for the k-NN accuracy
    folds: int = 5  # cross-validation folds for the k-NN accuracy
    from_run: str | None = None  # a finished mlp-hparams run folder: embed its best network instead of training


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"networks": ["relu-2"], "width": 64, "epochs": 2, "train_size": 4000, "val_size": 1000,
              "eval_points": 800, "tsne_points": 200, "folds": 3},
    "quick": {"networks": ["relu-2", "sigmoid-4"], "width": 128, "epochs": 3, "train_size": 12000,
              "val_size": 2000, "eval_points": 2000, "tsne_points": 600},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return [cfg.dataset]


def parse_network(text: str) -> tuple[str, int]:
    """'relu-6' -> ('relu', 6); a clear error otherwise."""
    act, _, depth = text.rpartition("-")
    if act not in ACTIVATIONS or not depth.isdigit() or not 1 <= int(depth) <= 32:
        raise UsageError(f"network {text!r}: expected ACTIVATION-DEPTH such as relu-2 or sigmoid-6 "
                         f"(activations: {', '.join(ACTIVATIONS)}; depth 1..32)")
    return act, int(depth)


def check(cfg: Config) -> None:
    """Range checks of every numeric field, and the network names."""
    for n in cfg.networks:
        try:
            parse_network(n)
        except UsageError as exc:
            raise ConfigError(f"networks: {exc}") from None
    if not cfg.networks and cfg.from_run is None:
        raise ConfigError("networks is empty: name at least one, e.g. --set networks=relu-2,sigmoid-6")
    require(cfg, at_least_1=("width", "epochs", "batch_size", "val_size", "knn_k"),
            non_negative=("train_size",), positive=("lr", "perplexity"))  # train_size 0 = all not held out
    if cfg.folds < 2:
        raise ConfigError(f"folds={cfg.folds}: cross-validation needs at least 2")
    if cfg.tsne_points < 10 or cfg.eval_points < 10 * cfg.folds:
        raise ConfigError(f"tsne_points={cfg.tsne_points}, eval_points={cfg.eval_points}: tsne_points must be "
                          ">= 10 and eval_points >= 10 x folds")


# --- networks: trained here, or taken from a finished mlp-hparams run --------------------------


def train_networks(cfg: Config, run: Run, spec: sweep.DataSpec) -> dict[str, MLP]:
    """Each network trained through the sweep engine (checkpointed in this run), plus the
    first one at its initial weights when `cfg.untrained`."""
    data = sweep.load_sweep_data(spec, str(run.device))
    trials = []
    for net in cfg.networks:
        act, depth = parse_network(net)
        trials.append(sweep.Trial(cfg.dataset, cfg.optimizer, "default", act, cfg.lr, cfg.width, depth, cfg.seed))
    groups = sweep.make_groups(trials, lambda _: spec, epochs=cfg.epochs, batch_size=cfg.batch_size,
                               schedule="cosine", order_seed=cfg.seed, max_stack=1)
    nets: dict[str, MLP] = {}
    for group in groups:
        for res in sweep.train_group(group, run, run.device, keep_models=True):
            name = f"{res['activation']}-{res['depth']}"
            nets[name] = res["model"].eval()
            run.info(f"[{name}] best val acc {res['val_acc']:.4f} at epoch {res['best_epoch']}, "
                     f"test acc {res['test_acc']:.4f}")
            run.log(event="trained", network=name, **{k: res[k] for k in ("val_acc", "test_acc", "best_epoch")})
    nets = {net: nets[net] for net in cfg.networks}  # the order asked for
    if cfg.untrained:
        first = sweep.build_member(trials[0], data.x_train.shape[1], len(data.classes))
        nets[f"{cfg.networks[0]}-untrained"] = first.to(run.device).eval()
    return nets


def networks_from_run(cfg: Config, run: Run) -> tuple[dict[str, MLP], sweep.DataSpec]:
    """The best network on `cfg.dataset` of a finished mlp-hparams run, with the data split it used."""
    folder = Path(cfg.from_run)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"from_run={folder}: no readable metrics.json there; give the folder of a finished "
                         "mlp-hparams run (the `run:` line it printed)") from None
    if metrics.get("study") != "mlp-hparams":
        raise UsageError(f"from_run={folder}: that is a {metrics.get('study')!r} run, not mlp-hparams")
    rows = [r for r in metrics.get("configs", []) if r["dataset"] == cfg.dataset]
    if not rows:
        raise UsageError(f"from_run={folder}: it did not sweep {cfg.dataset}; set dataset to one it did")
    best = max(rows, key=lambda r: r["val_acc"])
    used = config.load_yaml(folder / "config.yaml")["config"]
    spec = sweep.DataSpec(cfg.dataset, str(run.data_dir) if run.data_dir else None, used["train_size"],
                          used["val_size"], used["seed"])
    trial = best["trials"][0]
    ckpt = folder / "checkpoints" / f"{trial['group']}.done.pt"
    if not ckpt.exists():
        raise DataError(f"{ckpt}: the finished run's checkpoint is missing; run mlp-hparams again or train here "
                        "(leave from_run unset)")
    state = safe_torch_load(ckpt, map_location=run.device)["model"]
    t = sweep.Trial(cfg.dataset, best["optimizer"], best["init"], best["activation"], best["lr"], best["width"],
                    best["depth"], trial["seed"])
    data = sweep.load_sweep_data(spec, str(run.device))
    dims = (data.x_train.shape[1], len(data.classes))
    net = sweep.build_member(t, *dims).to(run.device)
    net.load_state_dict(sweep.best_member_state(state, trial["member"], t.width, t.depth))
    name = f"{best['activation']}-{best['depth']}"
    run.info(f"reusing {best['config']} (seed {trial['seed']}) from {folder}")
    nets = {name: net.eval()}
    if cfg.untrained:
        nets[f"{name}-untrained"] = sweep.build_member(t, *dims).to(run.device).eval()
    return nets, spec


# --- embedding analysis ------------------------------------------------------------------------


def scores(cfg: Config, z: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {"silhouette": separation.silhouette(z, y, seed=cfg.seed),
            "knn_acc": separation.knn_accuracy(z, y, k=cfg.knn_k, folds=cfg.folds, seed=cfg.seed),
            "probe_acc": separation.linear_probe_accuracy(z, y, seed=cfg.seed),
            "fisher_ratio": separation.fisher_ratio(z, y)}


def _scatter_grid(name: str, maps: list[tuple[torch.Tensor, torch.Tensor]], y: np.ndarray, y_tsne: np.ndarray,
                  classes: list[str]) -> Any:
    plt = pyplot()
    cols = len(maps)
    fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols + 1.6, 5.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for j, (p, t) in enumerate(maps):
        for row, (pts, labels, kind) in enumerate(((p.numpy(), y, "PCA"), (t.numpy(), y_tsne, "t-SNE"))):
            ax = axes[row][j]
            for c in range(len(classes)):
                sel = labels == c
                ax.scatter(pts[sel, 0], pts[sel, 1], s=2, color=cmap(c % 10), label=classes[c], rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("input" if j == 0 else f"layer {j}", fontsize=9)
            if j == 0:
                ax.set_ylabel(kind)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", markerscale=5, fontsize=8, title="class")
    fig.suptitle(name)
    fig.subplots_adjust(right=1 - 1.4 / (2.6 * cols + 1.6))
    return fig


def _explained_variance(name: str, ratios: list[torch.Tensor]) -> Any:
    series = {}
    for j, r in enumerate(ratios):
        r = r.numpy()
        k = min(len(r), 100)
        series["input" if j == 0 else f"layer {j}"] = (list(range(1, k + 1)), np.cumsum(r)[:k].tolist())
    return line_plot(series, title=f"{name}: PCA explained variance", xlabel="principal components",
                     ylabel="cumulative explained variance", logx=True)


def _metric_lines(table: dict[str, list[dict[str, float]]]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    for ax, metric in zip(axes, METRICS):
        for net, rows in table.items():
            ax.plot([r["layer"] for r in rows], [r[metric] for r in rows], marker="o", markersize=3, label=net,
                    linestyle="--" if net.endswith("-untrained") else "-")
        ax.set(title=metric, xlabel="layer (0 = input)")
        ax.set_xticks(sorted({r["layer"] for rows in table.values() for r in rows}))
        ax.grid(alpha=0.3)
        if metric == "fisher_ratio":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    return fig


def conclusions(table: dict[str, list[dict[str, float]]]) -> list[str]:
    """Sentences computed from the per-layer scores."""
    out = []
    for net, rows in table.items():
        first, last = rows[0], rows[-1]
        steps = [(rows[i]["layer"], rows[i]["probe_acc"] - rows[i - 1]["probe_acc"]) for i in range(1, len(rows))]
        layer, gain = max(steps, key=lambda s: abs(s[1]))
        out.append(f"{net}: from input to last hidden layer, linear-probe accuracy {100 * first['probe_acc']:.1f} -> "
                   f"{100 * last['probe_acc']:.1f} %, k-NN {100 * first['knn_acc']:.1f} -> {100 * last['knn_acc']:.1f} %, "
                   f"silhouette {first['silhouette']:.3f} -> {last['silhouette']:.3f}, Fisher ratio "
                   f"{first['fisher_ratio']:.3f} -> {last['fisher_ratio']:.3f} ({last['fisher_ratio'] / first['fisher_ratio']:.1f}x); "
                   f"the largest single-layer change in probe accuracy is at layer {layer} ({100 * gain:+.1f} points).")
    trained = {n: r for n, r in table.items() if not n.endswith("-untrained")}
    if len(trained) > 1:
        ranked = sorted(trained, key=lambda n: trained[n][-1]["fisher_ratio"], reverse=True)
        out.append("Last-layer Fisher ratio, best to worst: "
                   + ", ".join(f"{n} {trained[n][-1]['fisher_ratio']:.2f}" for n in ranked) + ".")
    for net, rows in table.items():
        if net.endswith("-untrained"):
            base = net[: -len("-untrained")]
            if base in table:
                t, u = table[base][-1], rows[-1]
                out.append(f"Training made the difference: at the last hidden layer {base} reaches Fisher ratio "
                           f"{t['fisher_ratio']:.2f} and k-NN {100 * t['knn_acc']:.1f} % trained, vs "
                           f"{u['fisher_ratio']:.2f} and {100 * u['knn_acc']:.1f} % untrained (input: "
                           f"{rows[0]['fisher_ratio']:.2f}, {100 * rows[0]['knn_acc']:.1f} %).")
    return out


def run(cfg: Config, run: Run) -> dict[str, Any]:
    if cfg.from_run:
        nets, spec = networks_from_run(cfg, run)
    else:
        spec = sweep.DataSpec(cfg.dataset, str(run.data_dir) if run.data_dir else None, cfg.train_size,
                              cfg.val_size, cfg.seed)
        nets = train_networks(cfg, run, spec)
    data = sweep.load_sweep_data(spec, str(run.device))
    n_test = len(data.y_test)
    keep = torch.arange(n_test) if cfg.eval_points >= n_test else stratified_indices(
        data.y_test.cpu(), cfg.eval_points / n_test, derive(cfg.seed, "subset", "evaluation"))[1]
    x, y = data.x_test[keep.to(data.x_test.device)], data.y_test[keep.to(data.y_test.device)]
    sub = torch.arange(len(y)) if cfg.tsne_points >= len(y) else stratified_indices(
        y.cpu(), cfg.tsne_points / len(y), derive(cfg.seed, "subset", "t-SNE"))[1]
    y_np, y_tsne = y.cpu().numpy(), y[sub.to(y.device)].cpu().numpy()

    def analyse_layer(z: torch.Tensor) -> dict[str, Any]:
        t0 = time.perf_counter()
        proj, ratio = pca(z)
        t_map = tsne(z[sub.to(z.device)], perplexity=cfg.perplexity, seed=cfg.seed)
        t_tsne = time.perf_counter() - t0
        return {"scores": scores(cfg, z, y), "pca": proj, "ratio": ratio, "tsne": t_map, "tsne_s": t_tsne}

    input_layer = run.cached("layer0", lambda: analyse_layer(x))
    table: dict[str, list[dict[str, float]]] = {}
    tsne_seconds = [input_layer["tsne_s"]]
    for name, net in nets.items():
        outs = net.layer_outputs(x, pre_activation=cfg.pre_activation)
        layers = [input_layer] + [run.cached(f"{name}-layer{j}", lambda z=z: analyse_layer(z))
                                  for j, z in enumerate(outs[1:], start=1)]
        tsne_seconds += [la["tsne_s"] for la in layers[1:]]
        table[name] = [{"layer": j, "width": int(outs[j].shape[1]), **la["scores"]} for j, la in enumerate(layers)]
        run.add_figure(_scatter_grid(name, [(la["pca"], la["tsne"]) for la in layers], y_np, y_tsne, data.classes),
                       f"maps-{name}", title=f"{name}: PCA and t-SNE of every layer",
                       caption=f"{len(y_np)} test points (PCA), {len(y_tsne)} (t-SNE); "
                               f"{'pre-activations' if cfg.pre_activation else 'layer outputs'}.")
        run.add_figure(_explained_variance(name, [la["ratio"] for la in layers]), f"pca-variance-{name}",
                       title=f"{name}: PCA explained variance per layer")
        run.add_table(f"{name}: separation per layer", table[name],
                      caption=f"silhouette (Euclidean), {cfg.knn_k}-NN accuracy ({cfg.folds}-fold CV), linear-probe "
                              "accuracy (25 % held out), Fisher ratio tr(S_b)/tr(S_w).")
        run.info(f"[{name}] last layer: " + "  ".join(f"{k}={v:.4g}" for k, v in table[name][-1].items()))
    run.add_figure(_metric_lines(table), "separation-by-layer", title="Separation scores across layers",
                   caption="Dashed: untrained network.")
    run.answer("From the input to the last layer, the Fisher ratio of the classes changes " + "; ".join(
        f"{rows[-1]['fisher_ratio'] / rows[0]['fisher_ratio']:.1f}x in {n} (k-NN accuracy {100 * rows[0]['knn_acc']:.1f}% "
        f"-> {100 * rows[-1]['knn_acc']:.1f}%)" for n, rows in table.items()) + ".")
    run.test_data(x, y)
    run.add_text("Findings", "\n".join(conclusions(table)))
    return {
        "headline": {
            "probe_acc_last": {n: rows[-1]["probe_acc"] for n, rows in table.items()},
            "knn_acc_last": {n: rows[-1]["knn_acc"] for n, rows in table.items()},
            "fisher_gain": {n: rows[-1]["fisher_ratio"] / rows[0]["fisher_ratio"] for n, rows in table.items()},
            "tsne_s_max": max(tsne_seconds),
        },
        "layers": table,
        "tsne_points": len(y_tsne), "eval_points": len(y_np),
        "tsne_s_per_layer": {"max": max(tsne_seconds), "mean": sum(tsne_seconds) / len(tsne_seconds)},
        "chance": 1.0 / len(data.classes) if data.classes else math.nan,
    }
