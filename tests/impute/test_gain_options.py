"""GAIN's ablation switches: the authors' hint H = B*M and their Xavier initialisation."""

from __future__ import annotations

import torch
from torch import nn

from dlslab.impute.gain import holdout_mask, train_gain, xavier_init
from dlslab.impute.masks import block_mask
from dlslab.models.gan import GAIN


def test_xavier_init_zeroes_every_bias_and_rescales_the_weights() -> None:
    torch.manual_seed(0)
    model = xavier_init(GAIN(30))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(torch.count_nonzero(m.bias) == 0 for m in linears)
    first = linears[0].weight  # fan_in 60, fan_out 30: Xavier std sqrt(2 / 90)
    assert abs(first.std().item() - (2 / 90) ** 0.5) < 0.02


def test_both_hint_modes_train_and_differ() -> None:
    """The same seed and data with the paper's hint and the authors' code's hint give different
    discriminators: the switch reaches what the discriminator is shown."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(256, 1, generator=g)
    x = (base + 0.1 * torch.rand(256, 6, generator=g)).clamp(0, 1)  # correlated columns
    m = (torch.rand(256, 6, generator=g) > 0.2).float()
    half, _ = train_gain(x, m, iterations=60, batch_size=32, log_every=60, seed=0, hint_mode="half")
    mask, _ = train_gain(x, m, iterations=60, batch_size=32, log_every=60, seed=0, hint_mode="mask")
    probe = torch.cat([x, m], 1)
    assert (half.discriminator.net(probe) - mask.discriminator.net(probe)).abs().max() > 1e-3


def test_holdout_keeps_the_epoch_with_the_lowest_error_on_held_out_observed_entries() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(300, 1, generator=g)
    x = (base + 0.1 * torch.rand(300, 8, generator=g)).clamp(0, 1)
    m = (torch.rand(300, 8, generator=g) > 0.2).float()
    model, history = train_gain(x, m, iterations=120, batch_size=32, log_every=30, seed=0, holdout=0.2)
    val = [e["val_rmse"] for e in history.epochs]
    assert len(val) == 4 and history.best_epoch == 1 + val.index(min(val))


def test_observed_normalisation_makes_gain_blind_to_a_rescaled_column() -> None:
    """With `normalize="observed"` GAIN trains on each column rescaled by its observed values (the
    authors' code), so stretching and shifting a column changes the imputed values by the same
    map; trained on the data as given (`"table"`) it does not."""
    import numpy as np

    from dlslab.impute.compare import ImputerSpec, impute_with
    from dlslab.impute.imputer import scale_observed

    rng = np.random.default_rng(0)
    base = rng.random((200, 1))
    x = np.clip(base + 0.1 * rng.random((200, 5)), 0, 1)
    m = (rng.random((200, 5)) > 0.2).astype(np.float64)
    scaled, lo, span = scale_observed(x, m)
    assert np.allclose((lo + scaled * span)[m > 0], x[m > 0])
    shown = np.where(m > 0, scaled, np.nan)
    assert np.allclose(np.nanmin(shown, 0), 0) and np.allclose(np.nanmax(shown, 0), 1)

    a, b = np.array([0.3, 1.0, 0.5, 0.2, 0.8]), np.array([0.6, 0.0, 0.1, 0.4, 0.05])  # stays in [0, 1]
    for normalize, invariant in (("observed", True), ("table", False)):
        spec = ImputerSpec(iterations=60, batch_size=32, log_every=60, normalize=normalize)
        plain, _ = impute_with("gain", x, m, spec, seed=0)
        moved, _ = impute_with("gain", a * x + b, m, spec, seed=0)
        gap = np.abs(a * plain + b - moved)[m == 0].max()
        assert (gap < 1e-4) == invariant, (normalize, gap)
        assert np.allclose(moved[m > 0], (a * x + b)[m > 0])  # observed entries untouched


def test_a_missingness_shaped_holdout_hides_whole_squares_in_a_share_of_the_rows() -> None:
    m = block_mask(2000, 28, 14, torch.Generator().manual_seed(0)).float()  # one missing 14 x 14 square per row
    held = holdout_mask(m, 0.15, "missing", seed=3)
    assert not (held * (1 - m)).any()  # only observed entries are hidden
    rows = held.sum(1) > 0
    assert 0.11 < rows.float().mean().item() < 0.19  # about 15% of the rows
    for r in rows.nonzero().flatten()[:50].tolist():  # each hides one borrowed square, minus its own
        ys, xs = held[r].view(28, 28).nonzero(as_tuple=True)
        assert ys.max() - ys.min() <= 13 and xs.max() - xs.min() <= 13
    assert held.sum(1).max().item() == 14 * 14  # squares that do not overlap the row's own are whole
    entries = holdout_mask(m, 0.15, "entries", seed=3)  # the default: observed entries at random
    assert abs(entries.sum().item() / m.sum().item() - 0.15) < 0.01 and (entries.sum(1) > 0).float().mean() > 0.99
