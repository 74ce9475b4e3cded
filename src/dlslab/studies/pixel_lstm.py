"""Study 9: an LSTM that writes the lower half of an MNIST digit, row by row, from its upper half.

A row LSTM (`models.pixel_lstm.RowLSTM`) reads a binarized digit one row per step; its state
conditions a small autoregressive (MADE) head that predicts the next row pixel by pixel, so
the model is an exact density over whole binary images. It is trained with teacher forcing.
At test time it is given the upper `given_rows` rows and writes the rest, feeding its own
output back: the sampled variant writes Bernoulli samples; the mean variant is the model's
expected lower half, each pixel's probability averaged along `samples_per_input` sampled
completions. Completions are compared with the real lower half (per-pixel MSE and BCE), read
by the reference MNIST classifier (does it still show the original digit?), and set against
two baselines: the training set's mean lower half, and the lower half of the training image
whose upper half is nearest. The model's test NLL of whole binarized images is reported in
nats, next to PixelRNN's.

Scientific variable: the completion (LSTM mean or sampled vs the two baselines and a blank
half). Nuisance: hidden sizes, layers, learning rate, batch size and epochs, chosen on the
validation NLL. Fixed: the data, the rows given, the binarization (dynamic for training, one
fixed draw for the test set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from dlslab.config import StudyConfig, require
from dlslab.data.images import load_images
from dlslab.errors import ConfigError
from dlslab.metrics import judge as judge_metrics
from dlslab.metrics.image import BCE_CLAMP, binary_scores, nearest_neighbours
from dlslab.metrics.likelihood import bernoulli_nll, binarize, binarized_splits, fixed_binarization
from dlslab.models.pixel_lstm import RowLSTM
from dlslab.report.plots import line_plot
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.engine import History, fit, predict
from dlslab.train.optim import linear_decay

PIXELRNN_NLL = 79.2  # nats, Diagonal BiLSTM on binarized MNIST (van den Oord et al. 2016, table 4)


@dataclass
class Config(StudyConfig):
    epochs: int = 12  # passes over the training set
    batch_size: int = 128  # images per step
    lr: float = 2e-3  # Adam learning rate (warm-up over 5% of the steps, then linear decay to 0)
    hidden: int = 256  # LSTM hidden units per layer
    layers: int = 2  # stacked LSTM layers
    head_hidden: int = 256  # hidden units of the within-row autoregressive head (0 = independent pixels)
    bf16: bool = True  # train under bf16 autocast on the CPU (fast with bf16 matrix units)
    grad_clip: float = 1.0  # gradient-norm clip
    given_rows: int = 14  # rows of the test image given to the model; it writes the rest
    train_size: int = 0  # training images used (0 = all 60000 minus validation)
    val_size: int = 1000  # training images held out for the per-epoch validation NLL
    test_size: int = 10000  # test images for the NLL and the completion metrics
    samples_per_input: int = 4  # sampled completions per test image (their average is the mean variant)
    shown: int = 10  # test images shown in the completion figures


PRESETS = {
    "smoke": {"epochs": 2, "lr": 1e-2, "bf16": False, "train_size": 2000, "val_size": 200, "test_size": 300,
              "hidden": 64, "layers": 1, "head_hidden": 64, "samples_per_input": 2},
    "quick": {"epochs": 2, "lr": 5e-3, "train_size": 30000, "test_size": 2000, "layers": 1},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return ["mnist"]


def check(cfg: Config) -> None:
    """Range checks of every numeric field."""
    require(cfg, at_least_1=("epochs", "batch_size", "hidden", "layers", "val_size", "test_size",
                             "samples_per_input", "shown"),
            non_negative=("train_size", "head_hidden"), positive=("lr", "grad_clip"))
    if not 1 <= cfg.given_rows < 28:
        raise ConfigError(f"given_rows={cfg.given_rows}: must be between 1 and 27 (an MNIST image has 28 rows)")


# --- data, model, completions ----------------------------------------------------------------------


def load_data(cfg: Config, run: Run) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train grey levels, validation, test binarized once, test labels), images (N, 28, 28)."""
    data = load_images("mnist", run.data_dir)
    train_all = data.train_x.to(run.device).float().squeeze(1) / 255  # (60000, 28, 28) grey levels
    test_grey = data.test_x.to(run.device).float().squeeze(1) / 255
    train_x, val_x, test_x = binarized_splits(train_all, test_grey, seed=cfg.seed, val_size=cfg.val_size,
                                              train_size=cfg.train_size, test_size=cfg.test_size)
    return train_x, val_x, test_x, data.test_y.to(run.device)[:cfg.test_size]


def train_model(cfg: Config, run: Run, train_x: torch.Tensor, val_x: torch.Tensor) -> tuple[RowLSTM, History]:
    """The row LSTM, teacher-forced on dynamically binarized digits; validation NLL per epoch
    (the epoch with the best one is kept)."""
    torch.manual_seed(cfg.seed)
    model = RowLSTM(28, cfg.hidden, cfg.layers, cfg.head_hidden).to(run.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = cfg.epochs * -(-len(train_x) // cfg.batch_size)
    nll = lambda m, xb: bernoulli_nll(predict(m, xb, 500), xb)  # noqa: E731  (N,) nats per image
    hist = fit(model, (train_x,), lambda m, xb: bernoulli_nll(m(xb), xb).mean(), optimizer=opt,
               scheduler=linear_decay(opt, steps, warmup_steps=steps // 20), epochs=cfg.epochs,
               batch_size=cfg.batch_size, grad_clip=cfg.grad_clip, transform=lambda batch: [binarize(batch[0])],
               evaluate=lambda m: {"val_nll": nll(m, val_x).mean().item()}, monitor="val_nll", mode="min",
               restore_best=True, cpu_bf16=cfg.bf16, seed=cfg.seed, run=run, name="pixel-lstm")
    return model.eval(), hist


@torch.no_grad()
def complete_test(model: RowLSTM, cfg: Config, train_x: torch.Tensor, test_x: torch.Tensor) -> dict[str, Any]:
    """Each row's exact NLL under teacher forcing, and every method's lower halves of the test digits."""
    g = cfg.given_rows
    logits = predict(model, test_x, 500)
    row_nll = F.binary_cross_entropy_with_logits(logits, test_x, reduction="none").sum(2)  # (N, 28)
    upper, real = test_x[:, :g], test_x[:, g:]
    gen = torch.Generator().manual_seed(derive(cfg.seed, "completion-samples"))
    parts = [model.expected_lower(u, 28 - g, cfg.samples_per_input, gen) for u in upper.split(1000)]
    mean = torch.cat([p[0] for p in parts])  # (N, 28-g, 28) expected lower half
    sampled = torch.cat([p[1] for p in parts])  # (N, S, 28-g, 28)
    train_bin = fixed_binarization(train_x, derive(cfg.seed, "binarize", "train"))
    _, nearest = nearest_neighbours(upper, train_bin[:, :g])
    methods = {"lstm (mean)": mean, "lstm (sampled)": sampled[:, 0],
               "training-set mean": train_x[:, g:].mean(0, keepdim=True).expand_as(real),
               "nearest neighbour": train_bin[nearest, g:], "blank (zeros)": torch.zeros_like(real)}
    return {"row_nll": row_nll, "methods": methods, "sampled": sampled}


# --- the study ---------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    train_x, val_x, test_x, test_y = load_data(cfg, run)
    run.info(f"pixel-lstm: {len(train_x)} training images (dynamically binarized), {len(test_x)} test images "
             f"(one fixed binarization); the model is given {cfg.given_rows} rows and writes {28 - cfg.given_rows}")
    model, hist = train_model(cfg, run, train_x, val_x)
    epochs = list(range(1, len(hist.epochs) + 1))
    run.add_figure(line_plot({"validation": (epochs, hist.series("val_nll")), "training": (epochs, hist.series("train_loss"))},
                             title="NLL of whole binarized images", xlabel="epoch", ylabel="nats per image"),
                   "nll", title="Negative log-likelihood per epoch")
    run.test_data(test_x, test_y)
    out = run.cached("completions", lambda: complete_test(model, cfg, train_x, test_x))
    judge = judge_metrics.reference_classifier("mnist", run.device, data_dir=run.data_dir)
    rows = completion_rows(cfg, run, judge, out["methods"], test_x, test_y)
    nll_whole, nll_lower = record_nll(cfg, run, out["row_nll"])
    record_figures(cfg, run, test_x, out["methods"]["lstm (mean)"], out["sampled"])

    by = {r["completion"]: r for r in rows}
    record_findings(run, by, nll_whole)
    lstm, nn_row, mean_row, real = by["lstm (mean)"], by["nearest neighbour"], by["training-set mean"], by["real lower half"]
    headline = {"test_nll_nats": nll_whole, "lower_nll_nats": nll_lower,
                "mse": {"lstm_mean": lstm["mse"], "nearest_neighbour": nn_row["mse"], "train_mean": mean_row["mse"]},
                "bce": {"lstm_mean": lstm["bce"], "nearest_neighbour": nn_row["bce"], "train_mean": mean_row["bce"]},
                "judge_acc": {"lstm_mean": lstm["judge_acc"], "lstm_sampled": by["lstm (sampled)"]["judge_acc"],
                              "nearest_neighbour": nn_row["judge_acc"], "real": real["judge_acc"]}}
    return {"headline": headline, "completions": rows, "val_nll": hist.series("val_nll"),
            "binarization": "train: dynamic (fresh Bernoulli per batch); test: one fixed Bernoulli draw"}


# --- report ------------------------------------------------------------------------------------------


def completion_rows(cfg: Config, run: Run, judge: Any, methods: dict[str, torch.Tensor], test_x: torch.Tensor,
                    test_y: torch.Tensor) -> list[dict[str, Any]]:
    g = cfg.given_rows
    upper, real = test_x[:, :g], test_x[:, g:]
    rows = [{"completion": name, **binary_scores(lower, real),
             "judge_acc": judge_metrics.judge_accuracy(judge, torch.cat([upper, lower], 1).unsqueeze(1), test_y)}
            for name, lower in methods.items()]
    rows.append({"completion": "real lower half", "mse": 0.0, "bce": None,
                 "judge_acc": judge_metrics.judge_accuracy(judge, test_x.unsqueeze(1), test_y)})
    run.add_table("Lower-half completions against the real lower half", rows,
                  caption=f"{len(test_x)} binarized test digits; the first {g} rows are given. mse/bce: per pixel "
                          f"on the {28 - g} written rows (bce in nats; probabilities clamped to "
                          f"[{BCE_CLAMP:g}, {1 - BCE_CLAMP:g}]). judge_acc: the reference MNIST classifier's "
                          "accuracy on the completed images, i.e. whether they still read as the original digit.")
    return rows


def record_nll(cfg: Config, run: Run, row_nll: torch.Tensor) -> tuple[float, float]:
    nll_whole = row_nll.sum(1).mean().item()
    nll_lower = row_nll[:, cfg.given_rows:].sum(1).mean().item()
    run.add_table("Test NLL of binarized MNIST (nats per image)", [
        {"model": f"row LSTM ({cfg.layers}x{cfg.hidden}, head {cfg.head_hidden}), ours", "nll_nats": nll_whole,
         "lower_half_given_upper_nats": nll_lower},
        {"model": "PixelRNN Diagonal BiLSTM (published)", "nll_nats": PIXELRNN_NLL,
         "lower_half_given_upper_nats": None}],
        caption="Ours: exact NLL of the fixed binarization of the test set. Each pixel is conditioned on the rows "
                "above (through the LSTM) and, with a head (head > 0), on the pixels to its left in its row; "
                "PixelRNN's Diagonal BiLSTM conditions on the same context through a deeper network.")
    return nll_whole, nll_lower


def record_figures(cfg: Config, run: Run, test_x: torch.Tensor, mean: torch.Tensor, sampled: torch.Tensor) -> None:
    g, shown, k = cfg.given_rows, cfg.shown, cfg.samples_per_input
    upper, real = test_x[:, :g], test_x[:, g:]
    line = torch.full((max(shown, k), 1, 28), 0.5, device=test_x.device)  # marks the boundary
    given = torch.cat([upper[:shown], line[:shown], torch.zeros_like(real[:shown])], 1)
    fig_rows = [given, torch.cat([upper[:shown], line[:shown], mean[:shown]], 1),
                torch.cat([upper[:shown], line[:shown], real[:shown]], 1)]
    run.add_image_grid(torch.stack(fig_rows).flatten(0, 1).unsqueeze(1), "completions", nrow=shown,
                       title="Given upper half / LSTM lower half (mean) / real lower half",
                       caption="rows top to bottom: the input, the model's expected lower half, the real digit; "
                               "the grey line marks where writing starts")
    per_input = [torch.cat([upper[i:i + 1].expand(k, -1, -1), line[:k], sampled[i]], 1) for i in range(shown)]
    run.add_image_grid(torch.stack(per_input, 1).flatten(0, 1).unsqueeze(1), "samples", nrow=shown,
                       title=f"{k} sampled completions per input",
                       caption="each column is one test digit's upper half, completed by Bernoulli sampling")


def record_findings(run: Run, by: dict[str, dict[str, Any]], nll: float) -> None:
    """The answer, the issue's targets and the findings paragraph, all from the numbers."""
    lstm, sampled, nn_row, mean_row = by["lstm (mean)"], by["lstm (sampled)"], by["nearest neighbour"], by["training-set mean"]
    beats = [f"{m.upper()} {lstm[m]:.4f} vs {mean_row[m]:.4f} (mean half) and {nn_row[m]:.4f} (nearest neighbour)"
             for m in ("mse", "bce")]
    wins = all(lstm[m] < min(mean_row[m], nn_row[m]) for m in ("mse", "bce"))
    run.answer(f"The LSTM's lower halves are {'closer to the real ones than both baselines' if wins else 'not closer to the real ones than both baselines'} "
               f"({'; '.join(beats)}), the judge reads {lstm['judge_acc']:.0%} of them as the original digit "
               f"(nearest neighbour {nn_row['judge_acc']:.0%}), and its test NLL is {nll:.1f} nats (PixelRNN {PIXELRNN_NLL}).")
    for m in ("mse", "bce"):
        run.target(f"{m} of the LSTM's lower half", lstm[m], at_most=min(mean_row[m], nn_row[m]),
                   anchor="the better of the training-set mean half and the nearest neighbour")
    run.target("judge accuracy on LSTM completions (quick-preset target)", lstm["judge_acc"], at_least=0.75,
               anchor=f"real digits {by['real lower half']['judge_acc']:.1%}")
    run.target("judge accuracy, LSTM minus nearest neighbour (full-preset target)", lstm["judge_acc"] - nn_row["judge_acc"],
               at_least=0.0, anchor="read at least as often as nearest-neighbour completions")
    run.target("test NLL (full-preset target, nats)", nll, at_most=90.0,
               anchor=f"PixelRNN {PIXELRNN_NLL} nats (van den Oord et al. 2016)")
    best_judge = max((r for name, r in by.items() if name != "real lower half"), key=lambda r: r["judge_acc"])
    run.add_text("Findings", (
        f"The LSTM's expected lower half has per-pixel MSE {lstm['mse']:.4f} vs {nn_row['mse']:.4f} for the "
        f"nearest neighbour and {mean_row['mse']:.4f} for the training-set mean; the judge reads "
        f"{lstm['judge_acc']:.1%} of LSTM-completed digits as the original (nearest neighbour "
        f"{nn_row['judge_acc']:.1%}, sampled LSTM {sampled['judge_acc']:.1%}, real digits "
        f"{by['real lower half']['judge_acc']:.1%}, blank lower half {by['blank (zeros)']['judge_acc']:.1%}). Most "
        f"recognisable completions: {best_judge['completion']}. Test NLL {nll:.1f} nats per image vs {PIXELRNN_NLL} "
        f"for PixelRNN ({nll - PIXELRNN_NLL:+.1f} nats)."))
