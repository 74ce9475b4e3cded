"""Study 10: a VAE's latent space on MNIST: likelihood, samples, how real the samples are,
and which latent dimension rotates the digit.

Models: an MLP and a convolutional VAE with a `latent`-D code (beta = 1), a 2-D MLP VAE for
the latent manifold, and the `rotation_arch` VAE again with every other beta in `betas`.
Training images are binarized afresh every batch (dynamic binarization); the test set is
binarized once with a fixed seed, and every likelihood below is on those binary images, in
nats per image. Realism is judged against held-out test images: the reference MNIST
classifier's confidence and entropy, the nearest-neighbour distance to the training set (a
memorisation check), and a Fréchet distance in that classifier's feature space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from dlslab.config import StudyConfig
from dlslab.data.images import load_images
from dlslab.errors import UsageError
from dlslab.metrics import judge as judge_metrics
from dlslab.metrics.likelihood import (binarize, binarized_splits, elbo, evaluate_in_batches,
                                       importance_weighted_ll, vae_loss)
from dlslab.metrics.orientation import rotation_regression, traversal_rotation
from dlslab.models.vae import ConvVAE, MLPVAE, VAEBase
from dlslab.report.plots import bar_chart, line_plot, pyplot
from dlslab.runs import Run
from dlslab.train.engine import fit

PUBLISHED_NLL = "published VAE test NLLs on binarized MNIST are about 85 to 90 nats (Kingma & Welling 2014; Burda et al. 2016, k = 5000)"


@dataclass
class Config(StudyConfig):
    epochs: int = 100  # passes over the training set, per model
    batch_size: int = 128  # images per step
    lr: float = 1e-3  # Adam learning rate (decays linearly to 0 over training)
    latent: int = 20  # latent size of the quality models (the 2-D one is extra)
    archs: list[str] = field(default_factory=lambda: ["mlp", "conv"])  # VAEs trained with beta = 1
    hidden: list[int] = field(default_factory=lambda: [512, 256])  # MLP VAE hidden widths (encoder; decoder mirrors)
    conv_width: int = 32  # channels of the conv VAE's first layer (the second has twice as many)
    manifold: bool = True  # also train a 2-D MLP VAE and plot its latent manifold
    betas: list[float] = field(default_factory=lambda: [1.0, 4.0])  # betas compared for rotation
    rotation_arch: Literal["mlp", "conv"] = "conv"  # the VAE trained at every beta for the rotation study
    train_size: int = 0  # training images used (0 = all 60000 minus validation)
    val_size: int = 1000  # training images held out for the per-epoch validation ELBO
    test_size: int = 10000  # test images for the ELBO
    iw_k: int = 100  # importance samples per image for the NLL estimate (>= 100 for the usual test NLL)
    iw_test_size: int = 10000  # test images for the importance-weighted NLL
    realism_samples: int = 2000  # samples from N(0, I) per model for the realism metrics
    rotation_images: int = 200  # test digits rotated by each angle for the rotation regression
    rotation_angles: list[float] = field(default_factory=lambda: [-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0])  # degrees
    traversal_range: float = 3.0  # traverse each latent dimension over [-r, r] (prior std units)
    traversal_steps: int = 11  # values per traversal
    traversal_bases: int = 32  # codes (of test digits) traversed from, for the correlation


PRESETS = {
    "smoke": {"epochs": 2, "lr": 3e-3, "train_size": 3000, "val_size": 200, "test_size": 500, "archs": ["mlp"],
              "hidden": [128], "latent": 8, "manifold": False, "betas": [1.0], "rotation_arch": "mlp",
              "iw_k": 100, "iw_test_size": 100, "realism_samples": 200, "rotation_images": 40,
              "traversal_bases": 8},
    "quick": {"epochs": 3, "lr": 3e-3, "train_size": 20000, "test_size": 2000, "conv_width": 16,
              "hidden": [256, 128], "rotation_arch": "mlp",
              "iw_test_size": 300, "realism_samples": 1000, "rotation_images": 100,
              "traversal_bases": 16},
    "full": {},
}

ARCHS = ("mlp", "conv")


def data_needs(cfg: Config) -> list[str]:
    return ["mnist"]


@dataclass(frozen=True)
class Spec:
    key: str  # name in tables and metrics: "mlp", "conv", "conv-beta4", "mlp-z2"
    arch: str
    latent: int
    beta: float


def model_specs(cfg: Config) -> list[Spec]:
    """The VAEs this config trains (quality models first)."""
    for arch in [*cfg.archs, cfg.rotation_arch]:
        if arch not in ARCHS:
            raise UsageError(f"unknown VAE architecture {arch!r} in archs; valid: {', '.join(ARCHS)}")
    if cfg.iw_k < 1 or cfg.latent < 1:
        raise UsageError("iw_k and latent must be at least 1")
    specs = [Spec(a, a, cfg.latent, 1.0) for a in cfg.archs]
    for beta in cfg.betas:
        key = cfg.rotation_arch if beta == 1.0 else f"{cfg.rotation_arch}-beta{beta:g}"
        if all(s.key != key for s in specs):
            specs.append(Spec(key, cfg.rotation_arch, cfg.latent, beta))
    if cfg.manifold:
        specs.append(Spec("mlp-z2", "mlp", 2, 1.0))
    return specs


def build(spec: Spec, cfg: Config) -> VAEBase:
    if spec.arch == "mlp":
        return MLPVAE(spec.latent, tuple(cfg.hidden))
    return ConvVAE(spec.latent, cfg.conv_width)


# --- the realism and memorisation checks ---------------------------------------------------------


def nearest_train_distance(queries: torch.Tensor, train: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Euclidean pixel distance from each query image to its nearest training image: (N,)."""
    ref = train.flatten(1)
    return torch.cat([torch.cdist(q.flatten(1), ref).min(1).values for q in queries.split(chunk)])


def realism_rows(judge: nn.Module, samples: dict[str, torch.Tensor], test_x: torch.Tensor,
                 train_x: torch.Tensor) -> list[dict]:
    """One row per sample set and for held-out real images: judge confidence and entropy,
    nearest-training-image distance, and the Fréchet distance to the test images in the
    judge's feature space."""
    n = min(len(s) for s in samples.values())
    real = test_x[:n]
    real_feats = judge_metrics.judge_features(judge, real)
    rows = []
    for name, images in {"real test images": real, **samples}.items():
        conf, ent = judge_metrics.confidence_entropy(judge, images)
        nn_dist = nearest_train_distance(images, train_x)
        if name == "real test images":  # the floor: other held-out real images vs these
            other = test_x[n:2 * n] if len(test_x) >= 2 * n else train_x[-n:]
            fd = judge_metrics.frechet_distance(judge_metrics.judge_features(judge, other), real_feats)
        else:
            fd = judge_metrics.frechet_distance(judge_metrics.judge_features(judge, images), real_feats)
        rows.append({"images": name, "n": len(images), "judge_confidence": conf, "judge_entropy_nats": ent,
                     "nn_train_distance": nn_dist.mean().item(), "frechet_judge": fd})
    return rows


# --- figures ------------------------------------------------------------------------------------


def traversal_images(model: VAEBase, base: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Decoded images, one row per (base code, dimension), one column per value: (R*V, 1, 28, 28)."""
    rows = []
    for z0 in base:
        for d in dims:
            z = z0.repeat(len(values), 1)
            z[:, d] = values
            rows.append(z)
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.cat(rows)))


def manifold_images(model: VAEBase, steps: int = 20) -> torch.Tensor:
    """The decoded 2-D latent plane on a grid of prior quantiles (5%..95%): (steps^2, 1, 28, 28)."""
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, steps))
    zy, zx = torch.meshgrid(q.flip(0), q, indexing="ij")
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], 1).to(next(model.parameters()).device)
    with torch.no_grad():
        return torch.sigmoid(model.decode(z))


def latent_scatter(mu: torch.Tensor, labels: torch.Tensor):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    pts = ax.scatter(mu[:, 0].cpu(), mu[:, 1].cpu(), c=labels.cpu(), cmap="tab10", s=3, alpha=0.6)
    fig.colorbar(pts, ax=ax, ticks=range(10), label="digit")
    ax.set(title="Test digits in the 2-D latent space (posterior means)", xlabel="z1", ylabel="z2")
    return fig


# --- the study ----------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    specs = model_specs(cfg)
    device = run.device
    data = load_images("mnist", run.data_dir)
    train_all = data.train_x.to(device).float() / 255  # (60000, 1, 28, 28) grey levels
    test_grey = data.test_x.to(device).float() / 255
    train_x, val_x, test_x = binarized_splits(train_all, test_grey, seed=cfg.seed, val_size=cfg.val_size,
                                              train_size=cfg.train_size, test_size=cfg.test_size)
    test_y = data.test_y.to(device)
    run.info(f"vae: {len(train_x)} training images (dynamically binarized), {len(test_x)} test images "
             f"(one fixed binarization), models: {', '.join(s.key for s in specs)}")

    models: dict[str, VAEBase] = {}
    curves, quality = {}, []
    for spec in specs:
        torch.manual_seed(cfg.seed)
        model = build(spec, cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        steps = cfg.epochs * -(-len(train_x) // cfg.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
        hist = fit(model, (train_x,), lambda m, xb, beta=spec.beta: vae_loss(m, xb, beta),
                   optimizer=opt, scheduler=sched, epochs=cfg.epochs, batch_size=cfg.batch_size,
                   transform=lambda batch: [binarize(batch[0])],
                   evaluate=lambda m: {"val_elbo": elbo(m, val_x).mean().item()},
                   seed=cfg.seed, run=run, name=f"vae-{spec.key}")
        model.eval()
        models[spec.key] = model
        curves[spec.key] = hist.series("val_elbo")

        def likelihoods(model: VAEBase = model) -> dict:
            test_elbo = evaluate_in_batches(lambda xb: elbo(model, xb), test_x)
            iw = evaluate_in_batches(lambda xb: importance_weighted_ll(model, xb, cfg.iw_k),
                                     test_x[:cfg.iw_test_size], batch_size=100)
            return {"elbo": test_elbo.mean().item(), "iw_ll": iw.mean().item(),
                    "elbo_same_images": test_elbo[:cfg.iw_test_size].mean().item()}

        lik = run.cached(f"likelihood-{spec.key}", likelihoods)
        quality.append({"model": spec.key, "latent": spec.latent, "beta": spec.beta, "epochs": len(hist.epochs),
                        "train_s": hist.seconds, "test_elbo_nats": lik["elbo"], "iw_nll_nats": -lik["iw_ll"],
                        "iw_gap_nats": lik["iw_ll"] - lik["elbo_same_images"],
                        "n_elbo": len(test_x), "n_iw": min(cfg.iw_test_size, len(test_x))})
        run.info(f"[vae-{spec.key}] test ELBO {lik['elbo']:.2f} nats, IW NLL (k={cfg.iw_k}) {-lik['iw_ll']:.2f} nats")

    run.add_table("Test likelihood (nats per image, fixed binarization of the test set)", quality,
                  caption=f"ELBO on {len(test_x)} test images; importance-weighted NLL with k = {cfg.iw_k} "
                          f"on the first {min(cfg.iw_test_size, len(test_x))} (gap = IW bound - ELBO on the "
                          f"same images, >= 0). Training: dynamic binarization. For reference, {PUBLISHED_NLL}.")
    run.add_figure(line_plot({k: (list(range(1, len(v) + 1)), v) for k, v in curves.items()},
                             title="Validation ELBO", xlabel="epoch", ylabel="ELBO (nats)"),
                   "val_elbo", title="Validation ELBO per epoch")
    targets = {"mlp": -100.0, "conv": -95.0}
    verdicts = [f"{q['model']} VAE ({q['latent']}-D): test ELBO {q['test_elbo_nats']:.1f} nats, "
                f"{'meets' if q['test_elbo_nats'] >= targets[q['model']] else 'misses'} the target "
                f">= {targets[q['model']]:.0f}; IW NLL {q['iw_nll_nats']:.1f} nats."
                for q in quality if q["model"] in targets and q["latent"] == cfg.latent]
    run.add_text("Likelihood", " ".join(verdicts) + f" For comparison, {PUBLISHED_NLL}; ours use "
                 f"{cfg.epochs} epochs on {len(train_x)} images.")

    # reconstructions and samples
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    shown = test_x[:8]
    samples = {}
    for spec in specs:
        model = models[spec.key]
        with torch.no_grad():
            recon = torch.sigmoid(model.decode(model.encode(shown)[0]))
        run.add_image_grid(torch.cat([shown, recon]), f"recon-{spec.key}", nrow=8,
                           title=f"Reconstructions: {spec.key}", caption="top: binarized test digits; "
                           "bottom: decoder means at the posterior mean")
        samples[spec.key] = model.sample(cfg.realism_samples, gen)
        run.add_image_grid(samples[spec.key][:64], f"samples-{spec.key}", nrow=8,
                           title=f"Samples from z ~ N(0, I): {spec.key}", caption="decoder means")

    if "mlp-z2" in models:
        model = models["mlp-z2"]
        run.add_image_grid(manifold_images(model), "manifold-z2", nrow=20, title="The 2-D latent manifold",
                           caption="decoder means on a 20x20 grid of prior quantiles (5% to 95%)")
        with torch.no_grad():
            mu = evaluate_in_batches(lambda xb: model.encode(xb)[0], test_x, 1000)
        run.add_figure(latent_scatter(mu, test_y[:len(test_x)]), "latent-z2", title="Test digits in 2-D latent space")

    # realism, judged against held-out real images
    judge = judge_metrics.reference_classifier("mnist", device, data_dir=run.data_dir)
    realism = run.cached("realism", lambda: realism_rows(judge, samples, test_grey, train_x))
    real = realism[0]
    for r in realism:
        r["nn_ratio_to_test"] = r["nn_train_distance"] / real["nn_train_distance"]
    run.add_table("How real are the samples? (against held-out test images)", realism,
                  caption="judge = our reference MNIST CNN (not Inception); frechet_judge = Fréchet distance "
                          "to test images in its 128-d feature space (the real-images row compares two "
                          "disjoint sets of test images: the floor); nn_train_distance = mean L2 pixel "
                          "distance to the nearest training image (ratio < 1 would mean samples sit closer "
                          "to training images than unseen real digits do: memorisation). Samples are "
                          "decoder means, real images grey levels.")
    gen_rows = realism[1:]
    best = min(gen_rows, key=lambda r: r["frechet_judge"])
    memorising = [r["images"] for r in gen_rows if r["nn_ratio_to_test"] < 0.9]
    run.add_text("Realism", f"Closest to real digits in the judge's feature space: {best['images']} "
                 f"(Fréchet {best['frechet_judge']:.1f} vs {real['frechet_judge']:.1f} between two real sets). "
                 f"Judge confidence on samples ranges {min(r['judge_confidence'] for r in gen_rows):.3f}–"
                 f"{max(r['judge_confidence'] for r in gen_rows):.3f} vs {real['judge_confidence']:.3f} on real "
                 f"test digits. " + (f"Possible memorisation (samples nearer the training set than test digits "
                 f"are): {', '.join(memorising)}." if memorising else "No model's samples sit closer to the "
                 "training set than held-out test digits do (no sign of memorisation)."))

    # which latent dimension rotates the digit
    rotation = {}
    values = torch.linspace(-cfg.traversal_range, cfg.traversal_range, cfg.traversal_steps, device=device)
    digits = test_grey[-cfg.rotation_images:]
    rot_specs = [s for s in specs if s.latent == cfg.latent and s.arch == cfg.rotation_arch]
    for spec in [s for s in specs if s.latent == cfg.latent]:
        model = models[spec.key]
        with torch.no_grad():
            base = model.encode(test_grey[:cfg.traversal_bases])[0]
            trav = traversal_rotation(lambda z: torch.sigmoid(model.decode(z)), base, values)
            reg = rotation_regression(lambda x: model.encode(x)[0], digits, cfg.rotation_angles)
        rotation[spec.key] = {"traversal_deg_per_unit": trav["slope"].tolist(),
                              "traversal_abs_corr": trav["abs_corr"].tolist(), "regression_abs_corr": reg["abs_corr"].tolist(),
                              "r2": reg["r2"].tolist(), "r2_all_dims": reg["r2_all_dims"].item(),
                              "best_dim": int(reg["r2"].argmax()), "best_r2": reg["r2"].max().item(),
                              "best_traversal_dim": int(trav["slope"].abs().argmax()), "beta": spec.beta}
        run.add_image_grid(traversal_images(model, base[:1], list(range(spec.latent)), values),
                           f"traversal-{spec.key}", nrow=len(values),
                           title=f"Traversal of every latent dimension: {spec.key}",
                           caption=f"row d: dimension d from {-cfg.traversal_range:g} to {cfg.traversal_range:g}, "
                                   "the others fixed at one test digit's code")
    for spec in rot_specs:
        r, model = rotation[spec.key], models[spec.key]
        with torch.no_grad():
            base = model.encode(test_grey[:6])[0]
        run.add_image_grid(traversal_images(model, base, [r["best_dim"]], values), f"rotation-dim-{spec.key}",
                           nrow=len(values), title=f"The rotation dimension of {spec.key} (beta={spec.beta:g}): "
                           f"z{r['best_dim']}", caption="its traversal from six test digits' codes")
        run.add_figure(bar_chart({f"z{d}": v for d, v in enumerate(r["r2"])}, title=f"{spec.key}: held-out R² of "
                                 "angle on each dimension", ylabel="R²"), f"rotation-r2-{spec.key}",
                       title=f"Rotation read from each latent dimension: {spec.key}")
    table = []
    for spec in rot_specs:
        r = rotation[spec.key]
        for d in range(spec.latent):
            table.append({"model": spec.key, "beta": spec.beta, "dim": d,
                          "traversal_deg_per_unit": r["traversal_deg_per_unit"][d], "traversal_abs_corr": r["traversal_abs_corr"][d],
                          "rotation_abs_corr": r["regression_abs_corr"][d], "rotation_r2_heldout": r["r2"][d]})
    run.add_table("Which latent dimension controls rotation", table,
                  caption="(a) traversing a dimension from the codes of test digits: the decoded image's "
                          "principal-axis angle (second-order moments) changes by traversal_deg_per_unit degrees "
                          "per unit, with |correlation| traversal_abs_corr. (b) test digits rotated "
                          f"by {', '.join(f'{a:g}' for a in cfg.rotation_angles)} degrees and encoded: "
                          "|correlation| of the angle with each dimension's shift from the unrotated code, and "
                          "R² of that 1-D regression on held-out digits.")
    lines = []
    for spec in rot_specs:
        r = rotation[spec.key]
        share = r["best_r2"] / r["r2_all_dims"] if r["r2_all_dims"] > 0 else float("nan")
        slope = r["traversal_deg_per_unit"][r["best_dim"]]
        agree = ("agrees: it also turns decoded digits most" if r["best_traversal_dim"] == r["best_dim"] else
                 f"points elsewhere (z{r['best_traversal_dim']} turns decoded digits most, "
                 f"{r['traversal_deg_per_unit'][r['best_traversal_dim']]:+.1f} deg per unit)")
        lines.append(f"beta={spec.beta:g}: z{r['best_dim']} carries the rotation (held-out R² {r['best_r2']:.2f}; "
                     f"all {spec.latent} dimensions together {r['r2_all_dims']:.2f}, so one dimension holds "
                     f"{share:.0%} of it); traversing it turns decoded digits {slope:+.1f} deg per unit; the traversal test {agree}.")
    if len(rot_specs) > 1:
        top = max(rot_specs, key=lambda s: rotation[s.key]["best_r2"])
        lines.append(f"The most rotation-specific single dimension comes with beta={top.beta:g}.")
    run.add_text("Rotation", " ".join(lines))

    headline = {}
    for q in quality:
        if q["latent"] == cfg.latent and q["beta"] == 1.0:
            headline[f"test_elbo.{q['model']}"] = q["test_elbo_nats"]
            headline[f"iw_nll.{q['model']}"] = q["iw_nll_nats"]
    for r in gen_rows:
        headline[f"frechet_judge.{r['images']}"] = r["frechet_judge"]
    for spec in rot_specs:
        headline[f"rotation_r2.beta{spec.beta:g}"] = rotation[spec.key]["best_r2"]
        headline[f"rotation_dim.beta{spec.beta:g}"] = rotation[spec.key]["best_dim"]
    return {"headline": headline, "quality": quality, "realism": realism, "rotation": rotation,
            "binarization": "train: dynamic (fresh Bernoulli per batch); test: one fixed Bernoulli draw",
            "val_elbo": curves}
