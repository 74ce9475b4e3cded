"""Study 10: a VAE's latent space on MNIST: likelihood, samples, how real the samples are,
and which latent dimension rotates the digit.

Models: an MLP and a convolutional VAE with a `latent`-D code (beta = 1), a 2-D MLP VAE for
the latent manifold, and the `rotation_arch` VAE again with every other beta in `betas`.
Training is dynamically binarized; the test set is binarized once (seeded); likelihoods are in
nats per image. Realism is judged against held-out test images by the reference classifier.
Scientific variables: the architecture (MLP vs conv) and beta. Nuisance: learning rate, batch
size and epochs (chosen on the validation ELBO; the best epoch is kept). Fixed: the data, the
binarizations, the latent size, the judge and the rotation protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from dlslab.config import StudyConfig, require
from dlslab.data.images import load_images
from dlslab.errors import ConfigError
from dlslab.metrics import judge as judge_metrics
from dlslab.metrics.likelihood import (binarize, binarized_splits, elbo, evaluate_in_batches,
                                       importance_weighted_ll, vae_loss)
from dlslab.metrics.orientation import rotation_regression, traversal_rotation
from dlslab.models.vae import ConvVAE, MLPVAE, VAEBase
from dlslab.report.plots import bar_chart, line_plot, pyplot
from dlslab.runs import Run
from dlslab.seeding import derive
from dlslab.train.engine import History, fit
from dlslab.train.optim import linear_decay

PUBLISHED_NLL = "published VAE test NLLs on binarized MNIST are about 85 to 90 nats (Kingma & Welling 2014; Burda et al. 2016, k = 5000)"
Arch = Literal["mlp", "conv"]
ELBO_TARGETS = {"mlp": (-105.0, -95.0), "conv": (-105.0, -90.0)}  # test ELBO (quick, full), issue 19


@dataclass
class Config(StudyConfig):
    epochs: int = 35  # passes over the training set, per quality model (beta = 1, `latent`-D)
    aux_epochs: int = 20  # passes for the other VAEs (beta != 1, the 2-D one), at most `epochs`; 0 = `epochs`
    batch_size: int = 256  # images per step
    lr: float = 2e-3  # Adam learning rate (warm-up over 5% of the steps, then linear decay to 0)
    bf16: bool = True  # train under bf16 autocast on the CPU (fast with bf16 matrix units; scored in float32)
    latent: int = 20  # latent size of the quality models (the 2-D one is extra)
    archs: list[Arch] = field(default_factory=lambda: ["mlp", "conv"])  # VAEs trained with beta = 1
    hidden: list[int] = field(default_factory=lambda: [512, 256])  # MLP VAE hidden widths (encoder; decoder mirrors)
    conv_width: int = 32  # channels of the conv VAE's first layer (the second has twice as many)
    conv_hidden: int = 768  # units of the conv VAE's fully connected layer (encoder; the decoder mirrors it)
    manifold: bool = True  # also train a 2-D MLP VAE and plot its latent manifold
    betas: list[float] = field(default_factory=lambda: [1.0, 4.0])  # betas compared for rotation
    rotation_arch: Arch = "mlp"  # the VAE trained at every beta for the rotation study
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
    "smoke": {"epochs": 2, "batch_size": 128, "lr": 3e-3, "bf16": False, "train_size": 3000, "val_size": 200,
              "test_size": 500, "archs": ["mlp"], "hidden": [128], "latent": 8, "manifold": False, "betas": [1.0],
              "iw_k": 100, "iw_test_size": 100, "realism_samples": 200, "rotation_images": 40, "traversal_bases": 8},
    "quick": {"epochs": 6, "lr": 4e-3, "conv_width": 16, "conv_hidden": 256, "betas": [1.0], "rotation_arch": "conv",
              "manifold": False, "iw_test_size": 300, "realism_samples": 1000, "rotation_images": 100,
              "traversal_bases": 16},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return ["mnist"]


def check(cfg: Config) -> None:
    """Range checks of every numeric field."""
    require(cfg, at_least_1=("epochs", "batch_size", "latent", "conv_width", "conv_hidden", "val_size", "test_size",
                             "iw_k", "iw_test_size", "realism_samples", "rotation_images", "traversal_steps",
                             "traversal_bases", "hidden"),
            non_negative=("train_size", "aux_epochs"), positive=("lr", "traversal_range", "betas"))
    if not cfg.hidden or not cfg.betas:
        raise ConfigError("hidden and betas: give one or more values each")
    if len(cfg.rotation_angles) < 2:
        raise ConfigError(f"rotation_angles={cfg.rotation_angles}: give at least two angles")


@dataclass(frozen=True)
class Spec:
    key: str  # name in tables and metrics: "mlp", "conv", "conv-beta4", "mlp-z2"
    arch: str
    latent: int
    beta: float
    epochs: int


def model_specs(cfg: Config) -> list[Spec]:
    """The VAEs this config trains (quality models first)."""
    aux_epochs = min(cfg.aux_epochs or cfg.epochs, cfg.epochs)
    specs = [Spec(a, a, cfg.latent, 1.0, cfg.epochs) for a in cfg.archs]
    for beta in cfg.betas:
        key = cfg.rotation_arch if beta == 1.0 else f"{cfg.rotation_arch}-beta{beta:g}"
        if all(s.key != key for s in specs):
            specs.append(Spec(key, cfg.rotation_arch, cfg.latent, beta, cfg.epochs if beta == 1.0 else aux_epochs))
    if cfg.manifold:
        specs.append(Spec("mlp-z2", "mlp", 2, 1.0, aux_epochs))
    return specs


# --- data, models, likelihoods ------------------------------------------------------------------


@dataclass
class Data:
    train: torch.Tensor  # grey levels, binarized afresh every batch
    val: torch.Tensor  # binarized once
    test: torch.Tensor  # binarized once
    test_grey: torch.Tensor  # the whole test set in grey levels (realism, rotation)
    test_y: torch.Tensor


def load_data(cfg: Config, run: Run) -> Data:
    data = load_images("mnist", run.data_dir)
    train_all = data.train_x.to(run.device).float() / 255  # (60000, 1, 28, 28) grey levels
    test_grey = data.test_x.to(run.device).float() / 255
    train, val, test = binarized_splits(train_all, test_grey, seed=cfg.seed, val_size=cfg.val_size,
                                        train_size=cfg.train_size, test_size=cfg.test_size)
    return Data(train, val, test, test_grey, data.test_y.to(run.device))


def train_vae(spec: Spec, cfg: Config, data: Data, run: Run) -> tuple[VAEBase, History]:
    torch.manual_seed(cfg.seed)
    # the conv VAE channels-last, oneDNN's fast layout (its float32 IW bound about 1.6x faster)
    model = (MLPVAE(spec.latent, tuple(cfg.hidden)).to(run.device) if spec.arch == "mlp" else
             ConvVAE(spec.latent, cfg.conv_width, cfg.conv_hidden).to(run.device, memory_format=torch.channels_last))
    model.init_output_bias(data.train.mean(0))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = spec.epochs * -(-len(data.train) // cfg.batch_size)
    hist = fit(model, (data.train,), lambda m, xb: vae_loss(m, xb, spec.beta), optimizer=opt,
               scheduler=linear_decay(opt, steps, warmup_steps=steps // 20), epochs=spec.epochs,
               batch_size=cfg.batch_size, transform=lambda batch: [binarize(batch[0])],
               evaluate=lambda m: {"val_elbo": elbo(m, data.val).mean().item()},
               monitor="val_elbo", restore_best=True, cpu_bf16=cfg.bf16, seed=cfg.seed, run=run, name=f"vae-{spec.key}")
    return model.eval(), hist


def likelihoods(model: VAEBase, cfg: Config, test: torch.Tensor) -> dict[str, float]:
    """Test ELBO, and the importance-weighted bound and the ELBO on its (fewer) images."""
    test_elbo = evaluate_in_batches(lambda xb: elbo(model, xb), test)
    iw = evaluate_in_batches(lambda xb: importance_weighted_ll(model, xb, cfg.iw_k, chunk=10),  # 1000 decodes a call
                             test[:cfg.iw_test_size], batch_size=100)
    return {"elbo": test_elbo.mean().item(), "iw_ll": iw.mean().item(),
            "elbo_same_images": test_elbo[:cfg.iw_test_size].mean().item()}


@torch.no_grad()
def rotation(model: VAEBase, spec: Spec, cfg: Config, data: Data, values: torch.Tensor) -> dict[str, Any]:
    """(a) how much traversing each latent dimension turns the decoded digit, and (b) how well
    each dimension predicts the angle of rotated test digits (held-out R²)."""
    base = model.encode(data.test_grey[:cfg.traversal_bases])[0]
    trav = traversal_rotation(lambda z: torch.sigmoid(model.decode(z)), base, values)
    reg = rotation_regression(lambda x: model.encode(x)[0], data.test_grey[-cfg.rotation_images:], cfg.rotation_angles)
    return {"traversal_deg_per_unit": trav["slope"].tolist(), "traversal_abs_corr": trav["abs_corr"].tolist(),
            "regression_abs_corr": reg["abs_corr"].tolist(), "r2": reg["r2"].tolist(),
            "r2_all_dims": reg["r2_all_dims"].item(), "best_dim": int(reg["r2"].argmax()),
            "best_r2": reg["r2"].max().item(), "best_traversal_dim": int(trav["slope"].abs().argmax()),
            "beta": spec.beta}


# --- the study ----------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    specs = model_specs(cfg)
    data = load_data(cfg, run)
    run.test_data(data.test)
    run.info(f"vae: {len(data.train)} training images (dynamically binarized), {len(data.test)} test images "
             f"(one fixed binarization), models: {', '.join(s.key for s in specs)}")
    models, curves, quality = {}, {}, []
    for spec in specs:
        model, hist = train_vae(spec, cfg, data, run)
        models[spec.key], curves[spec.key] = model, hist.series("val_elbo")
        lik = run.cached(f"likelihood-{spec.key}", lambda model=model: likelihoods(model, cfg, data.test))
        quality.append({"model": spec.key, "latent": spec.latent, "beta": spec.beta, "epochs": len(hist.epochs),
                        "train_s": hist.seconds, "test_elbo_nats": lik["elbo"], "iw_nll_nats": -lik["iw_ll"],
                        "iw_gap_nats": lik["iw_ll"] - lik["elbo_same_images"],
                        "n_elbo": len(data.test), "n_iw": min(cfg.iw_test_size, len(data.test))})
        run.info(f"[vae-{spec.key}] test ELBO {lik['elbo']:.2f} nats, IW NLL (k={cfg.iw_k}) {-lik['iw_ll']:.2f} nats")
    record_likelihood(cfg, run, quality, curves, len(data.train), len(data.test))
    samples = record_samples(cfg, run, specs, models, data)

    judge = judge_metrics.reference_classifier("mnist", run.device, data_dir=run.data_dir)
    realism = run.cached("realism", lambda: judge_metrics.realism_rows(judge, samples, data.test_grey, data.train))
    record_realism(run, realism)

    values = torch.linspace(-cfg.traversal_range, cfg.traversal_range, cfg.traversal_steps, device=run.device)
    rot = {s.key: rotation(models[s.key], s, cfg, data, values) for s in specs if s.latent == cfg.latent}
    rot_specs = [s for s in specs if s.latent == cfg.latent and s.arch == cfg.rotation_arch]
    record_rotation(cfg, run, specs, rot_specs, models, rot, data, values)

    headline: dict[str, dict[str, float]] = {"test_elbo": {}, "iw_nll": {}, "frechet_judge": {},
                                             "rotation_r2": {}, "rotation_dim": {}}
    for q in quality:
        if q["latent"] == cfg.latent and q["beta"] == 1.0:
            headline["test_elbo"][q["model"]] = q["test_elbo_nats"]
            headline["iw_nll"][q["model"]] = q["iw_nll_nats"]
    for r in realism[1:]:
        headline["frechet_judge"][r["images"]] = r["frechet_judge"]
    for spec in rot_specs:
        headline["rotation_r2"][f"beta{spec.beta:g}"] = rot[spec.key]["best_r2"]
        headline["rotation_dim"][f"beta{spec.beta:g}"] = rot[spec.key]["best_dim"]
    record_answer(cfg, run, headline, rot[rot_specs[0].key])
    return {"headline": headline, "quality": quality, "realism": realism, "rotation": rot,
            "binarization": "train: dynamic (fresh Bernoulli per batch); test: one fixed Bernoulli draw",
            "val_elbo": curves}


# --- report ---------------------------------------------------------------------------------------------


def record_answer(cfg: Config, run: Run, headline: dict[str, dict[str, float]], rot: dict[str, Any]) -> None:
    """The answer in one sentence, and the rotation target (the first beta of `rotation_arch`)."""
    d, t = rot["best_dim"], rot["best_traversal_dim"]
    share = rot["best_r2"] / rot["r2_all_dims"] if rot["r2_all_dims"] > 0 else float("nan")
    why = ("which its traversal also names" if d == t else f"while its traversal turns digits most along z{t}: the "
           f"rotation is spread over several dimensions (z{d} holds {share:.0%} of what all {cfg.latent} give), so "
           "the dimension the encoder moves most need not be the one that turns the decoded digit most per unit")
    elbos = ", ".join(f"{k} {v:.1f}" for k, v in headline["test_elbo"].items())
    run.answer(f"After {cfg.epochs} epochs the VAEs' test ELBOs are {elbos} nats (best importance-weighted NLL "
               f"{min(headline['iw_nll'].values()):.1f}; published about 87), and z{d} of the {cfg.rotation_arch} VAE "
               f"(beta = {rot['beta']:g}) carries the rotation (held-out R² {rot['best_r2']:.2f}), {why}.")
    run.target(f"rotation: held-out R² of z{d}", rot["best_r2"], at_least=0.5, anchor="quick-preset target")


def record_likelihood(cfg: Config, run: Run, quality: list[dict], curves: dict[str, list[float]], n_train: int,
                      n_test: int) -> None:
    aux = f" ({cfg.aux_epochs} for the other VAEs)" if cfg.aux_epochs not in (0, cfg.epochs) else ""
    run.add_table("Test likelihood (nats per image, fixed binarization of the test set)", quality,
                  caption=f"ELBO on {n_test} test images; importance-weighted NLL with k = {cfg.iw_k} "
                          f"on the first {min(cfg.iw_test_size, n_test)} (gap = IW bound - ELBO on the "
                          f"same images, >= 0). Training: {cfg.epochs} epochs{aux} on {n_train} images, "
                          f"dynamically binarized. For reference, {PUBLISHED_NLL}.")
    run.add_figure(line_plot({k: (list(range(1, len(v) + 1)), v) for k, v in curves.items()},
                             title="Validation ELBO", xlabel="epoch", ylabel="ELBO (nats)"),
                   "val_elbo", title="Validation ELBO per epoch")
    for q in quality:
        if q["beta"] == 1.0 and q["latent"] == cfg.latent and q["model"] in ELBO_TARGETS:
            for preset, goal in zip(("quick", "full"), ELBO_TARGETS[q["model"]]):
                run.target(f"test ELBO, {q['model']} ({preset}-preset target, nats)", q["test_elbo_nats"], at_least=goal,
                           anchor="Burda et al. 2016: a one-layer VAE's NLL 86.8 nats (k = 5000)")
    best = min(q["iw_nll_nats"] for q in quality if q["beta"] == 1.0 and q["latent"] == cfg.latent)
    run.target(f"IW NLL of the best VAE (nats, k = {cfg.iw_k})", best, at_most=88.0,
               anchor="full-preset target; Burda et al. 2016: 86.8 nats (k = 5000)")


def record_samples(cfg: Config, run: Run, specs: list[Spec], models: dict[str, VAEBase], data: Data
                   ) -> dict[str, torch.Tensor]:
    """Reconstructions, samples from the prior (returned, for the realism checks) and the 2-D manifold."""
    gen = torch.Generator().manual_seed(derive(cfg.seed, "prior-samples"))
    shown = data.test[:8]
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
        run.add_image_grid(model.manifold(), "manifold-z2", nrow=20, title="The 2-D latent manifold",
                           caption="decoder means on a 20x20 grid of prior quantiles (5% to 95%)")
        with torch.no_grad():
            mu = evaluate_in_batches(lambda xb: model.encode(xb)[0], data.test, 1000)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 5))
        pts = ax.scatter(mu[:, 0].cpu(), mu[:, 1].cpu(), c=data.test_y[:len(mu)].cpu(), cmap="tab10", s=3, alpha=0.6)
        fig.colorbar(pts, ax=ax, ticks=range(10), label="digit")
        ax.set(title="Test digits in the 2-D latent space (posterior means)", xlabel="z1", ylabel="z2")
        run.add_figure(fig, "latent-z2", title="Test digits in 2-D latent space")
    return samples


def record_realism(run: Run, realism: list[dict]) -> None:
    real, gen_rows = realism[0], realism[1:]
    for r in realism:
        r["nn_ratio_to_test"] = r["nn_train_distance"] / real["nn_train_distance"]
    run.add_table("How real are the samples? (against held-out test images)", realism,
                  caption="judge = our reference MNIST CNN (not Inception); frechet_judge = Fréchet distance "
                          "to test images in its 128-d feature space (the real-images row compares two "
                          "disjoint sets of test images: the floor); nn_train_distance = mean L2 pixel "
                          "distance to the nearest training image (ratio < 1 would mean samples sit closer "
                          "to training images than unseen real digits do: memorisation). Samples are "
                          "decoder means, real images grey levels.")
    best = min(gen_rows, key=lambda r: r["frechet_judge"])
    memorising = [r["images"] for r in gen_rows if r["nn_ratio_to_test"] < 0.9]
    run.add_text("Realism", f"Closest to real digits in the judge's feature space: {best['images']} "
                 f"(Fréchet {best['frechet_judge']:.1f} vs {real['frechet_judge']:.1f} between two real sets). "
                 f"Judge confidence on samples ranges {min(r['judge_confidence'] for r in gen_rows):.3f}–"
                 f"{max(r['judge_confidence'] for r in gen_rows):.3f} vs {real['judge_confidence']:.3f} on real "
                 f"test digits. " + (f"Possible memorisation (samples nearer the training set than test digits "
                 f"are): {', '.join(memorising)}." if memorising else "No model's samples sit closer to the "
                 "training set than held-out test digits do (no sign of memorisation)."))


def record_rotation(cfg: Config, run: Run, specs: list[Spec], rot_specs: list[Spec], models: dict[str, VAEBase],
                    rot: dict[str, dict[str, Any]], data: Data, values: torch.Tensor) -> None:
    with torch.no_grad():
        for spec in [s for s in specs if s.key in rot]:
            base = models[spec.key].encode(data.test_grey[:1])[0]
            run.add_image_grid(models[spec.key].traversal(base, list(range(spec.latent)), values),
                               f"traversal-{spec.key}", nrow=len(values),
                               title=f"Traversal of every latent dimension: {spec.key}",
                               caption=f"row d: dimension d from {-cfg.traversal_range:g} to {cfg.traversal_range:g}, "
                                       "the others fixed at one test digit's code")
        for spec in rot_specs:
            r, model = rot[spec.key], models[spec.key]
            run.add_image_grid(model.traversal(model.encode(data.test_grey[:6])[0], [r["best_dim"]], values),
                               f"rotation-dim-{spec.key}", nrow=len(values),
                               title=f"The rotation dimension of {spec.key} (beta={spec.beta:g}): z{r['best_dim']}",
                               caption="its traversal from six test digits' codes")
            run.add_figure(bar_chart({f"z{d}": v for d, v in enumerate(r["r2"])}, title=f"{spec.key}: held-out R² of "
                                     "angle on each dimension", ylabel="R²"), f"rotation-r2-{spec.key}",
                           title=f"Rotation read from each latent dimension: {spec.key}")
    run.add_table("Which latent dimension controls rotation", [
        {"model": s.key, "beta": s.beta, "dim": d, "traversal_deg_per_unit": rot[s.key]["traversal_deg_per_unit"][d],
         "traversal_abs_corr": rot[s.key]["traversal_abs_corr"][d],
         "rotation_abs_corr": rot[s.key]["regression_abs_corr"][d], "rotation_r2_heldout": rot[s.key]["r2"][d]}
        for s in rot_specs for d in range(s.latent)],
        caption="(a) traversing a dimension from the codes of test digits: the decoded image's "
                "principal-axis angle (second-order moments) changes by traversal_deg_per_unit degrees "
                "per unit, with |correlation| traversal_abs_corr. (b) test digits rotated "
                f"by {', '.join(f'{a:g}' for a in cfg.rotation_angles)} degrees and encoded: "
                "|correlation| of the angle with each dimension's shift from the unrotated code, and "
                "R² of that 1-D regression on held-out digits.")
    lines = []
    for spec in rot_specs:
        r = rot[spec.key]
        share = r["best_r2"] / r["r2_all_dims"] if r["r2_all_dims"] > 0 else float("nan")
        slope = r["traversal_deg_per_unit"][r["best_dim"]]
        agree = ("agrees: it also turns decoded digits most" if r["best_traversal_dim"] == r["best_dim"] else
                 f"points elsewhere (z{r['best_traversal_dim']} turns decoded digits most, "
                 f"{r['traversal_deg_per_unit'][r['best_traversal_dim']]:+.1f} deg per unit)")
        lines.append(f"beta={spec.beta:g}: z{r['best_dim']} carries the rotation (held-out R² {r['best_r2']:.2f}; "
                     f"all {spec.latent} dimensions together {r['r2_all_dims']:.2f}, so one dimension holds "
                     f"{share:.0%} of it); traversing it turns decoded digits {slope:+.1f} deg per unit; the traversal test {agree}.")
    if len(rot_specs) > 1:
        top = max(rot_specs, key=lambda s: rot[s.key]["best_r2"])
        lines.append(f"The most rotation-specific single dimension comes with beta={top.beta:g}.")
    run.add_text("Rotation", " ".join(lines))
