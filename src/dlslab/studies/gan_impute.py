"""Study 12, `gan-impute`: GAN imputation of missing values (GAIN, Yoon et al. 2018).

The generator reads a row with noise in its missing entries plus the missing-data mask and
proposes every entry; the discriminator sees the completed row and a hint (the mask,
revealed on a fixed fraction of entries, 0.5 elsewhere) and guesses which entries were
observed. Compared on the same missing entries with mean, k-NN and iterative imputation
(scikit-learn) and a reconstruction-only denoising autoencoder of the generator's shape:

- images: MNIST with 20/50/80% of pixels missing completely at random, and a missing block;
- tables: breast cancer Wisconsin (diagnostic), wine, digits and California housing,
  min-max normalised, at 20/50/80% missing.

Metrics: RMSE on the missing entries only (normalised data) and, for labelled data, the test
accuracy of a logistic regression trained on the imputed rows; mean ± std over seeds.
Imputation is transductive, as in the paper's code: every imputer sees all rows' observed
values (never the labels) and is scored on the entries it filled in.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dlslab.config import StudyConfig
from dlslab.errors import DataError, UsageError
from dlslab.metrics.image import rmse_missing
from dlslab.models.gan import GAIN, ImputerMLP
from dlslab.runs import Run
from dlslab.train.engine import History, fit, predict

TABLES = ("breast", "wine", "digits", "housing")
METHODS = ("mean", "knn", "iterative", "dae", "gain")
GAIN_PAPER_BREAST_20 = (0.0546, 0.0006)  # Yoon et al. 2018, Table 2: UCI Breast, 20% missing


@dataclass
class Config(StudyConfig):
    tables: list[str] = field(default_factory=lambda: list(TABLES))  # UCI tables (breast, wine, digits, housing)
    table_rates: list[float] = field(default_factory=lambda: [0.2, 0.5, 0.8])  # fractions of table entries missing at random
    max_rows: int = 0  # at most this many rows of a table (a seeded subset; 0 = all rows)
    images: int = 4000  # MNIST training images imputed (0 = no image part)
    image_rates: list[float] = field(default_factory=lambda: [0.2, 0.5, 0.8])  # fractions of MNIST pixels missing at random
    image_block: int = 14  # side of one missing square per MNIST image (0 = no block pattern)
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # imputers on the tables
    image_methods: list[str] = field(default_factory=lambda: ["mean", "knn", "dae", "gain"])  # imputers on MNIST (iterative: 784 regressions a round, hours)
    seeds: int = 5  # repetitions per setting (missing mask, weights, split): mean ± std over them
    iterations: int = 10000  # GAIN / autoencoder training steps on a table (the paper's code: 10000)
    image_iterations: int = 4000  # GAIN / autoencoder training steps on MNIST
    batch_size: int = 128  # rows per training step (the paper: 128)
    hint_rate: float = 0.9  # fraction of entries whose mask the hint reveals (the paper: 0.9)
    alpha: float = 100.0  # weight of the reconstruction loss on observed entries (the paper's code: 100)
    lr: float = 1e-3  # Adam learning rate of generator, discriminator and autoencoder
    image_hidden: int = 256  # MLP width on MNIST (tables use the data dimension, as the paper)
    dae_drop: float = 0.5  # fraction of observed entries the autoencoder hides and must reconstruct
    knn_neighbors: int = 5  # neighbours of the k-NN imputer
    iterative_rounds: int = 10  # rounds of the iterative imputer over all columns (scikit-learn's max_iter)
    test_fraction: float = 0.3  # rows held out to test the classifier trained on imputed rows
    download: bool = True  # try to download California housing when scikit-learn has no copy
    log_every: int = 500  # training steps per logged epoch (losses are averaged over them)


PRESETS = {
    "smoke": {"tables": ["breast"], "table_rates": [0.2], "images": 0, "methods": ["mean", "knn", "gain"],
              "seeds": 1, "iterations": 1000, "log_every": 500},
    "quick": {"tables": ["breast", "wine", "digits", "housing"], "table_rates": [0.2, 0.5, 0.8], "max_rows": 2000,
              "iterative_rounds": 5, "images": 500, "image_rates": [0.5],
              "seeds": 1, "iterations": 500, "image_iterations": 200, "image_hidden": 64, "batch_size": 64,
              "log_every": 250},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return (["mnist"] if cfg.images else []) + (["uci"] if cfg.tables else [])


# --- missing-data masks and the hint ---------------------------------------------------------------


def mcar_mask(shape: tuple[int, ...], rate: float, generator: torch.Generator) -> torch.Tensor:
    """Observed-entry mask (1 = observed) with each entry missing with probability `rate`."""
    if not 0.0 <= rate < 1.0:
        raise UsageError(f"missing rate {rate} must be in [0, 1)")
    return (torch.rand(shape, generator=generator) >= rate).float()


def block_mask(n: int, side: int, block: int, generator: torch.Generator) -> torch.Tensor:
    """(n, side*side) observed mask with one missing `block` x `block` square per image, at a
    uniformly random position inside the image."""
    if not 0 < block < side:
        raise UsageError(f"image_block={block} must be between 1 and the image side {side}")
    top = torch.randint(0, side - block + 1, (n,), generator=generator)
    left = torch.randint(0, side - block + 1, (n,), generator=generator)
    rows = torch.arange(side)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + block)  # (n, side)
    in_cols = (rows[None] >= left[:, None]) & (rows[None] < left[:, None] + block)
    missing = in_rows[:, :, None] & in_cols[:, None, :]  # (n, side, side)
    return (~missing).flatten(1).float()


def hint_reveal(shape: tuple[int, int], rate: float, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """B: exactly round(rate * d) revealed entries (1) in every row, at random places."""
    n, d = shape
    k = round(rate * d)
    scores = torch.rand(shape, device=device, generator=generator)
    return torch.zeros(shape, device=device).scatter_(1, scores.topk(k, dim=1).indices, 1.0)


def hint(m: torch.Tensor, reveal: torch.Tensor) -> torch.Tensor:
    """The paper's hint H = B * M + 0.5 (1 - B): the mask where revealed, 0.5 elsewhere."""
    return reveal * m + 0.5 * (1 - reveal)


# --- imputers -----------------------------------------------------------------------------------------


def _row_schedule(n: int, iterations: int, batch_size: int, log_every: int) -> tuple[torch.Tensor, int, int]:
    """Row indices for one logged epoch of `log_every` steps, the batch size and the epochs.
    A table of a few hundred rows is a few batches; training steps, not passes, are the unit."""
    batch = min(batch_size, n)
    steps = min(log_every, iterations)
    epochs = max(1, math.ceil(iterations / steps))
    rows = torch.arange(n).repeat(math.ceil(steps * batch / n))[: steps * batch]
    return rows, batch, epochs


def train_gain(x: torch.Tensor, m: torch.Tensor, *, iterations: int, batch_size: int = 128,
               hint_rate: float = 0.9, alpha: float = 100.0, lr: float = 1e-3, hidden: int | None = None,
               seed: int = 0, log_every: int = 500, run: Run | None = None, name: str = "gain",
               evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
               verbose: bool = False) -> tuple[GAIN, History]:
    """Train GAIN on `x` (n, d) in [0, 1] (missing entries are ignored) with observed mask `m`.
    Logs, per epoch: d_loss (discriminator BCE), g_adv (generator's adversarial loss on the
    missing entries), mse (reconstruction of the observed entries)."""
    n, d = x.shape
    torch.manual_seed(seed)
    model = GAIN(d, hidden).to(x.device)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr)
    bce = nn.functional.binary_cross_entropy_with_logits

    def step(model: GAIN, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        xb, mb = x[batch[0]], m[batch[0]]
        x_tilde = mb * xb + (1 - mb) * 0.01 * torch.rand_like(xb)  # noise in the missing entries
        h = hint(mb, hint_reveal(tuple(mb.shape), hint_rate, mb.device))
        with torch.no_grad():
            proposal = model.generator(x_tilde, mb)
        d_loss = bce(model.discriminator(mb * xb + (1 - mb) * proposal, h), mb)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        proposal = model.generator(x_tilde, mb)
        logits = model.discriminator(mb * xb + (1 - mb) * proposal, h)
        g_adv = -((1 - mb) * nn.functional.logsigmoid(logits)).mean()  # fool D on the imputed entries
        mse = ((mb * (proposal - xb)) ** 2).mean() / mb.mean()
        opt_g.zero_grad(set_to_none=True)
        (g_adv + alpha * mse).backward()
        opt_g.step()
        return {"d_loss": d_loss.detach(), "g_adv": g_adv.detach(), "mse": mse.detach()}

    rows, batch, epochs = _row_schedule(n, iterations, batch_size, log_every)
    history = fit(model, (rows.to(x.device),), step=step, optimizer={"G": opt_g, "D": opt_d},
                  epochs=epochs, batch_size=batch, evaluate=evaluate, seed=seed, run=run, name=name,
                  verbose=verbose, progress=verbose)
    return model, history


def gain_impute(model: GAIN, x: torch.Tensor, m: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Observed entries unchanged; missing ones from the generator (noise drawn with `seed`)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    x_tilde = m * x + (1 - m) * 0.01 * torch.rand(x.shape, generator=g, device=x.device)
    proposal = predict(model.generator, torch.cat([x_tilde, m], 1),
                       fn=lambda net, xb: net(xb[:, : x.shape[1]], xb[:, x.shape[1]:]))
    return torch.where(m.bool(), x, proposal)


def train_dae(x: torch.Tensor, m: torch.Tensor, *, iterations: int, batch_size: int = 128,
              drop: float = 0.5, lr: float = 1e-3, hidden: int | None = None, seed: int = 0,
              log_every: int = 500, run: Run | None = None, name: str = "dae") -> tuple[ImputerMLP, History]:
    """A denoising autoencoder of the generator's shape, trained only to reconstruct observed
    entries, a fraction `drop` of which it is not shown (no adversary, no hint)."""
    n, d = x.shape
    torch.manual_seed(seed)
    model = ImputerMLP(d, hidden).to(x.device)

    def loss_fn(model: ImputerMLP, rows: torch.Tensor) -> torch.Tensor:
        xb, mb = x[rows], m[rows]
        shown = mb * (torch.rand_like(mb) >= drop).float()
        out = model(shown * xb, shown)
        return (((out - xb) ** 2) * mb).sum() / mb.sum().clamp_min(1.0)

    rows, batch, epochs = _row_schedule(n, iterations, batch_size, log_every)
    history = fit(model, (rows.to(x.device),), loss_fn, optimizer=torch.optim.Adam(model.parameters(), lr=lr),
                  epochs=epochs, batch_size=batch, seed=seed, run=run, name=name, verbose=False, progress=False)
    return model, history


def dae_impute(model: ImputerMLP, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    proposal = predict(model, torch.cat([m * x, m], 1), fn=lambda net, xb: net(xb[:, : x.shape[1]], xb[:, x.shape[1]:]))
    return torch.where(m.bool(), x, proposal)


def sklearn_impute(method: str, x: np.ndarray, m: np.ndarray, *, seed: int = 0, neighbors: int = 5,
                   rounds: int = 10) -> np.ndarray:
    """Mean, k-NN or iterative (chained regressions) imputation from scikit-learn."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers IterativeImputer)
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    from threadpoolctl import threadpool_limits

    holes = np.where(m > 0, x, np.nan)
    if method == "mean":
        imputer: Any = SimpleImputer(strategy="mean", keep_empty_features=True)
    elif method == "knn":
        imputer = KNNImputer(n_neighbors=neighbors, keep_empty_features=True)
    elif method == "iterative":
        imputer = IterativeImputer(max_iter=rounds, random_state=seed, keep_empty_features=True)
    else:
        raise UsageError(f"unknown imputer {method!r}; valid: {', '.join(METHODS)}")
    with threadpool_limits(1, user_api="blas"):  # small matrices: BLAS threads only add waiting
        out = imputer.fit_transform(holes)
    return np.where(m > 0, x, out)


# --- data ---------------------------------------------------------------------------------------------


@dataclass
class Table:
    name: str
    title: str
    x: np.ndarray  # (n, d) min-max normalised to [0, 1]
    y: np.ndarray | None  # class labels, or None for a regression target


def minmax(x: np.ndarray) -> np.ndarray:
    """Each column scaled to [0, 1]; a constant column becomes 0."""
    lo, hi = x.min(0), x.max(0)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def load_table(name: str, *, download: bool = True) -> Table:
    """A scikit-learn UCI table, normalised. California housing needs a download the first
    time: without network that is a DataError saying so."""
    from sklearn import datasets

    if name == "breast":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        title = "breast cancer Wisconsin (diagnostic)"
    elif name == "wine":
        x, y = datasets.load_wine(return_X_y=True)
        title = "wine"
    elif name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
        title = "digits (8x8)"
    elif name == "housing":
        try:
            x, _ = datasets.fetch_california_housing(return_X_y=True, download_if_missing=download,
                                                      n_retries=1, delay=0.1)
        except OSError as exc:  # URLError is an OSError; no cached copy raises OSError too
            raise DataError(f"California housing is not in scikit-learn's cache and could not be "
                            f"downloaded ({exc}); it needs network once") from None
        y, title = None, "California housing"
    else:
        raise UsageError(f"unknown table {name!r}; valid: {', '.join(TABLES)}")
    return Table(name, f"{title} ({x.shape[0]} x {x.shape[1]})", minmax(x.astype(np.float64)),
                 None if y is None else y.astype(np.int64))


def _load_mnist(cfg: Config, run: Run) -> tuple[np.ndarray, np.ndarray]:
    from dlslab.data.images import load_images

    data = load_images("mnist", run.data_dir)
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(data.train_x), generator=g)[: cfg.images]
    return ((data.train_x[idx].flatten(1).float() / 255).numpy().astype(np.float64),
            data.train_y[idx].numpy())


# --- one setting ---------------------------------------------------------------------------------------


def _accuracy(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> float:
    """Test accuracy of a logistic regression trained on the (imputed) training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from threadpoolctl import threadpool_limits

    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    with threadpool_limits(1, user_api="blas"):
        clf = LogisticRegression(max_iter=500).fit(xtr, ytr)
    return float(clf.score(xte, yte))


def impute_setting(cfg: Config, run: Run, key: str, x: np.ndarray, y: np.ndarray | None, m: np.ndarray,
                   methods: list[str], seed: int, *, iterations: int, hidden: int | None,
                   keep: int = 0) -> dict[str, Any]:
    """Every method on one (data, missing mask): RMSE on missing entries, accuracy, seconds,
    the final GAIN losses, and the first `keep` imputed rows (for figures)."""
    with few_threads(x.shape[1]):
        return _impute_setting(cfg, run, key, x, y, m, methods, seed, iterations=iterations, hidden=hidden,
                               keep=keep)


@contextlib.contextmanager
def few_threads(dim: int) -> Iterator[None]:
    """One torch thread for tables of at most 128 columns: splitting a 128 x 30 matmul over
    threads costs more than it saves, and far more on a busy machine."""
    before = torch.get_num_threads()
    if dim <= 128:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _impute_setting(cfg: Config, run: Run, key: str, x: np.ndarray, y: np.ndarray | None, m: np.ndarray,
                    methods: list[str], seed: int, *, iterations: int, hidden: int | None,
                    keep: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    xt = torch.from_numpy(x).float().to(run.device)
    mt = torch.from_numpy(m).float().to(run.device)
    truth = torch.from_numpy(x)
    for method in methods:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if method == "gain":
            model, hist = train_gain(xt, mt, iterations=iterations, batch_size=cfg.batch_size,
                                     hint_rate=cfg.hint_rate, alpha=cfg.alpha, lr=cfg.lr, hidden=hidden,
                                     seed=seed, log_every=cfg.log_every, run=run, name=f"gain-{key}")
            imputed = gain_impute(model, xt, mt, seed).double().cpu()
            extra = {"history": [{k[6:]: e[k] for k in e if k.startswith("train_")} for e in hist.epochs]}
        elif method == "dae":
            model, _ = train_dae(xt, mt, iterations=iterations, batch_size=cfg.batch_size, drop=cfg.dae_drop,
                                 lr=cfg.lr, hidden=hidden, seed=seed, log_every=cfg.log_every, run=run,
                                 name=f"dae-{key}")
            imputed = dae_impute(model, xt, mt).double().cpu()
        else:
            imputed = torch.from_numpy(sklearn_impute(method, x, m, seed=seed, neighbors=cfg.knn_neighbors,
                                                            rounds=cfg.iterative_rounds))
        seconds = time.perf_counter() - t0
        row = {"rmse": rmse_missing(imputed, truth, torch.from_numpy(m)), "seconds": seconds, **extra}
        if y is not None:
            row["acc"] = _accuracy(imputed.numpy(), y, cfg.test_fraction, seed)
        if keep:
            row["sample"] = imputed[:keep].float()
        out[method] = row
    return out


# --- the study --------------------------------------------------------------------------------------------


def _pattern_name(rate: float) -> str:
    return f"p{round(rate * 100)}"


def _mask_seed(*parts: object) -> int:
    """A seed for one (data, pattern, repetition), stable across runs and Python versions."""
    import zlib

    return zlib.crc32("/".join(map(str, parts)).encode())


def _check(cfg: Config) -> None:
    for name in cfg.tables:
        if name not in TABLES:
            raise UsageError(f"tables: unknown table {name!r}; valid: {', '.join(TABLES)}")
    for name in list(cfg.methods) + list(cfg.image_methods):
        if name not in METHODS:
            raise UsageError(f"methods: unknown imputer {name!r}; valid: {', '.join(METHODS)}")
    for rate in list(cfg.table_rates) + list(cfg.image_rates):
        if not 0.0 < rate < 1.0:
            raise UsageError(f"missing rate {rate} must be strictly between 0 and 1")
    if cfg.seeds < 1:
        raise UsageError("seeds must be at least 1")


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _fmt(values: list[float], digits: int = 4) -> str:
    mu, sd = _mean_std(values)
    return f"{mu:.{digits}f} ± {sd:.{digits}f}" if len(values) > 1 else f"{mu:.{digits}f}"


def run(cfg: Config, run: Run) -> dict:
    _check(cfg)
    # results[data][pattern][method] = one row per seed
    results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    titles: dict[str, str] = {}
    complete_acc: dict[str, list[float]] = {}
    not_run: list[dict[str, str]] = []

    def cells(data: str, x: np.ndarray, y: np.ndarray | None, patterns: dict[str, Callable[[int], np.ndarray]],
              methods: list[str], iterations: int, hidden: int | None, keep: int) -> None:
        results[data] = {}
        for pattern, make_mask in patterns.items():
            results[data][pattern] = {method: [] for method in methods}
            for s in range(cfg.seeds):
                seed = cfg.seed + s
                key = f"{data}-{pattern}-s{seed}"
                cell = run.cached(key, lambda: impute_setting(
                    cfg, run, key, x, y, make_mask(seed), methods, seed, iterations=iterations,
                    hidden=hidden, keep=keep))
                for method in methods:
                    results[data][pattern][method].append(cell[method])
                run.info(f"[{key}] " + "  ".join(f"{k}={v['rmse']:.4f}" for k, v in cell.items()))
        if y is not None:
            complete_acc[data] = [_accuracy(x, y, cfg.test_fraction, cfg.seed + s) for s in range(cfg.seeds)]

    for name in cfg.tables:
        try:
            table = load_table(name, download=cfg.download)
        except DataError as exc:
            not_run.append({"data": name, "status": "not run: needs network", "reason": str(exc)})
            run.info(f"[{name}] not run: {exc}")
            continue
        if cfg.max_rows and len(table.x) > cfg.max_rows:
            keep = np.random.default_rng(cfg.seed).permutation(len(table.x))[: cfg.max_rows]
            table = Table(name, f"{table.title}, {cfg.max_rows} rows used", table.x[keep],
                          None if table.y is None else table.y[keep])
        titles[name] = table.title
        patterns = {_pattern_name(r): (lambda seed, r=r, shape=table.x.shape, name=name: mcar_mask(
            shape, r, torch.Generator().manual_seed(_mask_seed(name, r, seed))).numpy()) for r in cfg.table_rates}
        cells(name, table.x, table.y, patterns, list(cfg.methods), cfg.iterations, None, 0)

    if cfg.images:
        x, y = _load_mnist(cfg, run)
        titles["mnist"] = f"MNIST ({x.shape[0]} training images x 784 pixels)"
        patterns = {_pattern_name(r): (lambda seed, r=r: mcar_mask(
            x.shape, r, torch.Generator().manual_seed(_mask_seed("mnist", r, seed))).numpy()) for r in cfg.image_rates}
        if cfg.image_block:
            patterns[f"block{cfg.image_block}"] = lambda seed: block_mask(
                len(x), 28, cfg.image_block, torch.Generator().manual_seed(_mask_seed("block", seed))).numpy()
        cells("mnist", x, y, patterns, list(cfg.image_methods), cfg.image_iterations, cfg.image_hidden, 8)
        _image_figures(run, x, patterns, results["mnist"], cfg.seed)

    summary = _report(cfg, run, results, titles, complete_acc, not_run)
    return summary


def _image_figures(run: Run, x: np.ndarray, patterns: dict[str, Callable[[int], np.ndarray]],
                   res: dict[str, dict[str, list[dict[str, Any]]]], seed: int) -> None:
    for pattern, make_mask in patterns.items():
        methods = list(res[pattern])
        m = make_mask(seed)[:8]
        shown = np.where(m > 0, x[:8], 0.5)  # missing pixels in grey
        rows = [shown] + [res[pattern][method][0]["sample"].numpy() for method in methods] + [x[:8]]
        grid = torch.from_numpy(np.concatenate(rows).astype(np.float32)).view(-1, 1, 28, 28)
        run.add_image_grid(grid, f"mnist_{pattern}.png", nrow=8,
                           title=f"MNIST, {pattern}: rows are the input (missing in grey), "
                                 f"{', '.join(methods)}, and the truth")


def _report(cfg: Config, run: Run, results: dict[str, Any], titles: dict[str, str],
            complete_acc: dict[str, list[float]], not_run: list[dict[str, str]]) -> dict[str, Any]:
    from dlslab.report.plots import line_plot

    rmse_rows, acc_rows, summary, wins, best_counts, dae_wins = [], [], {}, [], {}, []
    for data, by_pattern in results.items():
        summary[data] = {}
        for pattern, by_method in by_pattern.items():
            means = {meth: _mean_std([r["rmse"] for r in rows])[0] for meth, rows in by_method.items()}
            best = min(means, key=means.get)
            best_counts[best] = best_counts.get(best, 0) + 1
            if "gain" in means and "mean" in means:
                wins.append(means["gain"] < means["mean"])
            if "gain" in means and "dae" in means:
                dae_wins.append(means["gain"] < means["dae"])
            rmse_rows.append({"data": data, "missing": pattern, "seeds": cfg.seeds,
                              **{meth: _fmt([r["rmse"] for r in rows]) for meth, rows in by_method.items()},
                              "best": best})
            if data in complete_acc:
                acc_rows.append({"data": data, "missing": pattern, "complete data": _fmt(complete_acc[data], 3),
                                 **{meth: _fmt([r["acc"] for r in rows], 3) for meth, rows in by_method.items()}})
            summary[data][pattern] = {meth: {
                "rmse": _mean_std([r["rmse"] for r in rows]),
                "acc": _mean_std([r["acc"] for r in rows]) if data in complete_acc else None,
                "seconds": _mean_std([r["seconds"] for r in rows])[0]} for meth, rows in by_method.items()}

    run.add_table("RMSE on the missing entries (normalised data; lower is better)", rmse_rows,
                  caption=f"mean ± std over {cfg.seeds} seed(s); each seed draws a new missing mask and new weights")
    if acc_rows:
        run.add_table("Accuracy of a logistic regression trained on the imputed rows", acc_rows,
                      caption=f"test accuracy on {cfg.test_fraction:.0%} held-out (imputed) rows; "
                              "'complete data' is the same classifier without missing values")
    data_rows = [{"data": d, "what": t} for d, t in titles.items()] + \
                [{"data": r["data"], "what": f"{r['status']} ({r['reason']})"} for r in not_run]
    run.add_table("Data", data_rows)

    for data, by_pattern in summary.items():
        rates = [p for p in by_pattern if p.startswith("p")]
        if len(rates) < 2:
            continue
        xs = [int(p[1:]) for p in rates]
        methods = list(by_pattern[rates[0]])
        run.add_figure(line_plot({meth: (xs, [by_pattern[p][meth]["rmse"][0] for p in rates]) for meth in methods},
                                 bands={meth: [by_pattern[p][meth]["rmse"][1] for p in rates] for meth in methods},
                                 title=f"{data}: RMSE on missing entries", xlabel="% missing",
                                 ylabel="RMSE (normalised)"), f"rmse_{data}", title=f"RMSE vs missing rate: {data}")

    for data in [d for d in ("breast", "mnist") if d in results] or list(results)[:1]:
        pattern = next(iter(results[data]))
        rows = results[data][pattern].get("gain")
        if rows and rows[0].get("history"):
            hist = rows[0]["history"]
            xs = list(range(1, len(hist) + 1))
            run.add_figure(line_plot({k: (xs, [e[k] for e in hist]) for k in ("d_loss", "g_adv", "mse")},
                                     title=f"GAIN losses, {data} {pattern}", xlabel=f"epoch ({cfg.log_every} steps)",
                                     ylabel="loss"), f"gain_losses_{data}", title=f"GAIN training: {data}, {pattern}",
                           caption="d_loss: discriminator BCE over all entries; g_adv: generator's adversarial "
                                   "loss on the imputed entries; mse: reconstruction of observed entries")

    headline: dict[str, Any] = {"rmse": {f"{d}.{p}": {meth: v["rmse"][0] for meth, v in bm.items()}
                                         for d, bp in summary.items() for p, bm in bp.items()}}
    lines = []
    if wins:
        headline["gain_beats_mean_fraction"] = sum(wins) / len(wins)
        lines.append(f"GAIN has a lower RMSE than mean imputation in {sum(wins)} of {len(wins)} settings.")
    if dae_wins:
        headline["gain_beats_dae_fraction"] = sum(dae_wins) / len(dae_wins)
        lines.append(f"GAIN beats the reconstruction-only autoencoder of the same shape in {sum(dae_wins)} of "
                     f"{len(dae_wins)} settings, so the adversarial term "
                     f"{'helps more often than not' if sum(dae_wins) * 2 > len(dae_wins) else 'does not help more often than not'}"
                     " at this training budget.")
    if best_counts:
        lines.append("Lowest RMSE per setting: " + ", ".join(f"{m} {c}" for m, c in
                                                               sorted(best_counts.items(), key=lambda kv: -kv[1])) + ".")
    if "breast" in summary and "p20" in summary["breast"]:
        paper_mu, paper_sd = GAIN_PAPER_BREAST_20
        ours = summary["breast"]["p20"]
        rows = [{"method": "GAIN (paper, Yoon et al. 2018)", "RMSE": f"{paper_mu:.4f} ± {paper_sd:.4f}"}]
        rows += [{"method": f"{meth} (ours)", "RMSE": _fmt([r["rmse"] for r in results["breast"]["p20"][meth]])}
                 for meth in ours]
        run.add_table("Breast cancer at 20% missing: ours next to the GAIN paper", rows,
                      caption=f"ours: {titles['breast']}, {cfg.seeds} seed(s), {cfg.iterations} training steps")
        if "gain" in ours:
            mu = ours["gain"]["rmse"][0]
            headline["paper_breast_p20"] = {"paper": paper_mu, "ours": mu}
            lines.append(f"Breast cancer, 20% missing: our GAIN RMSE is {mu:.4f} against the paper's "
                         f"{paper_mu:.4f} ± {paper_sd:.4f} ({mu / paper_mu:.2f}x). Dataset: ours is scikit-learn's "
                         f"Wisconsin Diagnostic table ({titles['breast'].split('(')[-1].rstrip(')')}); the paper "
                         "calls its data 'Breast' from UCI and we could not confirm it is the same file, and its "
                         "protocol (normalisation, splits, repetitions) may differ from ours.")
    for r in not_run:
        lines.append(f"{r['data']}: {r['status']}.")
    if lines:
        run.add_text("Findings", " ".join(lines))
    return {"headline": headline, "results": summary, "not_run": not_run}
