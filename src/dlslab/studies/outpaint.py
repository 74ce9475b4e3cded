"""Study 11, `outpaint`: a conditional GAN that draws the whole image around its centre patch.

Input: the centre patch (14x14 of a 28x28 MNIST digit, 16x16 of a 32x32 CIFAR-10 image);
output: the whole image with the patch pasted back exactly. The generator is a small U-Net
fed the patch on an empty canvas, a mask, noise and optionally the class label; the loss is
reconstruction (L1 or L2) plus, for the cGAN, an adversarial term (Context Encoders, pix2pix).

Compared on held-out test images, on the generated border only: L1, MSE, PSNR, SSIM; our
reference classifier's accuracy on the completed images; the Fréchet distance in that
classifier's feature space; and diversity across noise samples for the same patch. Two
simple references frame the numbers: the patch alone on a black canvas, and the patch on the
training set's mean image. The cGAN's losses and discriminator accuracies are logged per
epoch, and a collapsed run (no diversity, discriminator always winning, one class for every
completion) is detected from those numbers and said in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from dlslab.config import StudyConfig
from dlslab.errors import UsageError
from dlslab.metrics.image import region_l1, region_mse, region_psnr, region_ssim, sample_diversity
from dlslab.models.gan import OutpaintGenerator, Outpainter, centre_box, centre_mask
from dlslab.runs import Run
from dlslab.train.engine import fit, predict

VARIANTS = ("recon", "cgan")


@dataclass
class Config(StudyConfig):
    dataset: Literal["mnist", "cifar10"] = "mnist"  # images to outpaint
    patch: int = 0  # side of the known centre patch; 0 = half the image side (14 of 28, 16 of 32)
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # recon (no adversary) and/or cgan
    use_label: bool = False  # also condition generator and discriminator on the class label
    noise_dim: int = 16  # size of the noise vector fed to the generator's bottleneck
    width: int = 32  # channels of the first generator and discriminator layers
    discriminator: Literal["image", "patch"] = "image"  # one verdict per image, or per receptive field
    regularizer: Literal["spectral", "r1", "none"] = "spectral"  # spectral norm on D, R1 gradient penalty, or none
    r1_weight: float = 1.0  # gamma of the R1 penalty (gamma/2 * |grad D(real)|^2)
    rec_loss: Literal["l1", "l2"] = "l1"  # reconstruction loss on the border
    rec_weight: float = 10.0  # weight of the reconstruction term
    adv_weight: float = 1.0  # weight of the adversarial term (cgan only)
    train_images: int = 60000  # training images used (a seeded subset when fewer than the set)
    epochs: int = 15  # passes over the training images
    batch_size: int = 64  # images per step
    lr_g: float = 1e-3  # Adam learning rate of the generator (betas 0.5, 0.999 as in DCGAN)
    lr_d: float = 2e-4  # Adam learning rate of the discriminator
    eval_images: int = 2000  # test images the metrics are computed on
    samples: int = 6  # noise samples per patch, for diversity and the figure
    judge: bool = True  # score completions with our reference classifier (accuracy, Fréchet distance)


PRESETS = {
    "smoke": {"train_images": 1024, "epochs": 2, "width": 8, "eval_images": 256, "samples": 3, "judge": False},
    "quick": {"train_images": 3000, "epochs": 3, "width": 12, "eval_images": 600, "samples": 4},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return [cfg.dataset]


# --- training -------------------------------------------------------------------------------------


def _rec(fake: torch.Tensor, real: torch.Tensor, border: torch.Tensor, kind: str) -> torch.Tensor:
    err = (fake - real).abs() if kind == "l1" else (fake - real) ** 2
    return (err * border).sum() / (border.sum() * real.shape[0] * real.shape[1])


def _crop(x: torch.Tensor, box: tuple[int, int]) -> torch.Tensor:
    a, b = box
    return x[..., a:b, a:b]


def cgan_step(model: Outpainter, cfg: Config, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
              border: torch.Tensor, box: tuple[int, int]):
    """The cGAN's training step: one discriminator update, then one generator update."""
    bce = nn.functional.binary_cross_entropy_with_logits
    gen, disc = model.generator, model.discriminator

    def step(model: Outpainter, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0].float() / 255
        y = batch[1] if cfg.use_label else None
        z = torch.randn(len(x), cfg.noise_dim, device=x.device)
        fake = gen(_crop(x, box), z, y)

        real_in = x.requires_grad_(cfg.regularizer == "r1")
        d_real, d_fake = disc(real_in, y), disc(fake.detach(), y)
        d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        stats = {}
        if cfg.regularizer == "r1":
            (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            d_loss = d_loss + cfg.r1_weight / 2 * r1
            stats["r1"] = r1.detach()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        d_gen = disc(fake, y)
        g_adv = bce(d_gen, torch.ones_like(d_gen))
        rec = _rec(fake, x.detach(), border, cfg.rec_loss)
        opt_g.zero_grad(set_to_none=True)
        (cfg.adv_weight * g_adv + cfg.rec_weight * rec).backward()
        opt_g.step()
        return {"d_loss": d_loss.detach(), "g_adv": g_adv.detach(), "rec": rec.detach(),
                "d_real_acc": (d_real.detach() > 0).float().mean(), "d_fake_acc": (d_fake.detach() < 0).float().mean(),
                **stats}

    return step


def complete(gen: OutpaintGenerator, x: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor,
             box: tuple[int, int], batch_size: int = 500) -> torch.Tensor:
    """Completions of float images `x` (B, C, H, W) from their centre patches, noise `z` (B, nz)."""
    lab = y if y is not None else torch.zeros(len(x), dtype=torch.long, device=x.device)
    packed = torch.cat([x.flatten(1), z, lab[:, None].float()], 1)
    c, h, w = x.shape[1:]
    nz = z.shape[1]

    def fn(net: OutpaintGenerator, rows: torch.Tensor) -> torch.Tensor:
        xb = rows[:, : c * h * w].view(-1, c, h, w)
        zb = rows[:, c * h * w: c * h * w + nz]
        yb = rows[:, -1].long() if y is not None else None
        return net(_crop(xb, box), zb, yb)

    return predict(gen, packed, batch_size, fn=fn)


# --- evaluation and report ---------------------------------------------------------------------------


def _collapse(history: list[dict[str, float]], diversity: float, border_l1: float,
              top_class_share: float | None) -> list[str]:
    """What went wrong in a cGAN run, judged from its logged numbers (empty: nothing)."""
    found = []
    tail = history[-max(1, len(history) // 3):]
    d_acc = sum((e["train_d_real_acc"] + e["train_d_fake_acc"]) / 2 for e in tail) / len(tail)
    if d_acc > 0.95:
        found.append(f"discriminator always winning (accuracy {d_acc:.3f} over the last {len(tail)} epoch(s))")
    if diversity < 0.1 * border_l1:
        found.append(f"no diversity (samples for one patch differ by {diversity:.2g} per border pixel, "
                     f"{diversity / max(border_l1, 1e-12):.1%} of the border error): the generator ignores its noise")
    if top_class_share is not None and top_class_share > 0.5:
        found.append(f"mode collapse ({top_class_share:.0%} of completions read as one class)")
    return found


def run(cfg: Config, run: Run) -> dict:
    from dlslab.data.images import load_images

    for v in cfg.variants:
        if v not in VARIANTS:
            raise UsageError(f"variants: unknown variant {v!r}; valid: {', '.join(VARIANTS)}")
    if cfg.samples < 2:
        raise UsageError("samples must be at least 2 (diversity compares samples for the same patch)")
    data = load_images(cfg.dataset, run.data_dir)
    c, size, _ = data.shape
    patch = cfg.patch or size // 2
    box = centre_box(size, patch)
    dev = run.device
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(data.train_x), generator=g)[: cfg.train_images]
    train_x, train_y = data.train_x[idx].to(dev), data.train_y[idx].to(dev)
    test_idx = torch.randperm(len(data.test_x), generator=g)[: cfg.eval_images]
    test_x = data.test_x[test_idx].to(dev).float() / 255
    test_y = data.test_y[test_idx].to(dev)
    border = (1 - centre_mask(size, patch)).to(dev)  # (1, 1, S, S): 1 where the generator draws
    num_classes = len(data.classes) if cfg.use_label else 0
    labels = test_y if cfg.use_label else None
    # fixed evaluation noise: the same draws for every variant and every epoch
    z_eval = torch.randn(cfg.samples, len(test_x), cfg.noise_dim, generator=g).to(dev)
    probe = slice(0, min(256, len(test_x)))

    def evaluate(model: nn.Module) -> dict[str, float]:
        gen = model.generator if isinstance(model, Outpainter) else model
        outs = torch.stack([complete(gen, test_x[probe], None if labels is None else labels[probe], z_eval[k, probe], box)
                            for k in range(2)])
        return {"val_border_l1": region_l1(outs[0], test_x[probe], border),
                "val_diversity": sample_diversity(outs, border)}

    mean_image = train_x.float().mean(0, keepdim=True) / 255  # (1, C, S, S)
    models: dict[str, OutpaintGenerator] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    for variant in cfg.variants:
        torch.manual_seed(cfg.seed)
        model = Outpainter(c, size, patch, cfg.width, cfg.noise_dim, num_classes, cfg.discriminator == "patch",
                           cfg.regularizer == "spectral").to(dev)
        model.generator.set_prior(mean_image)
        opt_g = torch.optim.Adam(model.generator.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
        if variant == "recon":
            def loss_fn(gen: OutpaintGenerator, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
                x = xb.float() / 255
                z = torch.randn(len(x), cfg.noise_dim, device=x.device)
                return _rec(gen(_crop(x, box), z, yb if cfg.use_label else None), x, border, cfg.rec_loss)

            hist = fit(model.generator, (train_x, train_y), loss_fn, optimizer=opt_g, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, evaluate=evaluate, seed=cfg.seed, run=run, name="recon",
                       drop_last=True)
        else:
            opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
            hist = fit(model, (train_x, train_y), step=cgan_step(model, cfg, opt_g, opt_d, border, box),
                       optimizer={"G": opt_g, "D": opt_d}, epochs=cfg.epochs, batch_size=cfg.batch_size,
                       evaluate=evaluate, seed=cfg.seed, run=run, name="cgan", drop_last=True)
        models[variant] = model.generator.eval()
        histories[variant] = hist.epochs

    return _evaluate_and_report(cfg, run, data, models, histories, test_x, test_y, labels, z_eval, border, box,
                                train_x)


def _evaluate_and_report(cfg: Config, run: Run, data: Any, models: dict[str, OutpaintGenerator],
                         histories: dict[str, list[dict[str, float]]], test_x: torch.Tensor, test_y: torch.Tensor,
                         labels: torch.Tensor | None, z_eval: torch.Tensor, border: torch.Tensor,
                         box: tuple[int, int], train_x: torch.Tensor) -> dict[str, Any]:
    from dlslab.report.plots import line_plot

    known = 1 - border
    mean_image = train_x.float().mean(0, keepdim=True) / 255
    completions: dict[str, torch.Tensor] = {
        "patch only": test_x * known,
        "mean image": test_x * known + mean_image * border,
    }
    samples: dict[str, torch.Tensor] = {}
    for variant, gen in models.items():
        samples[variant] = torch.stack([complete(gen, test_x, labels, z_eval[k], box) for k in range(len(z_eval))])
        completions[variant] = samples[variant][0]
    exact = {v: bool(torch.equal(_crop(out, box), _crop(test_x, box))) for v, out in completions.items()}

    judge = None
    if cfg.judge:
        from dlslab.metrics.judge import frechet_distance, judge_accuracy, judge_features, reference_classifier

        judge = reference_classifier(cfg.dataset, run.device, data_dir=run.data_dir)
        reference = train_x[: len(test_x)].float() / 255  # other real images: the Fréchet floor
        ref_feats = judge_features(judge, reference)

    rows, judged = [], {}
    for name, out in list(completions.items()) + [("real", test_x)]:
        row: dict[str, Any] = {"completion": name}
        if name != "real":
            row |= {"border L1": region_l1(out, test_x, border), "border MSE": region_mse(out, test_x, border),
                    "border PSNR dB": region_psnr(out, test_x, border), "border SSIM": region_ssim(out, test_x, border)}
        if name in samples:
            row["diversity"] = sample_diversity(samples[name], border)
        if judge is not None:
            preds = predict(judge, out).argmax(1)
            row["judge acc"] = judge_accuracy(judge, out, test_y)
            row["Fréchet dist."] = frechet_distance(judge_features(judge, out), ref_feats)
            judged[name] = torch.bincount(preds, minlength=len(data.classes)).max().item() / len(preds)
        rows.append(row)
    by_name = {r["completion"]: r for r in rows}
    run.add_table(f"Completions of {len(test_x)} test images ({cfg.dataset}, centre patch "
                  f"{box[1] - box[0]}x{box[1] - box[0]})", rows,
                  caption="border metrics count only the generated border; 'diversity' is the mean pairwise L1 "
                          f"between {cfg.samples} noise samples per patch; the Fréchet distance is measured in our "
                          "reference classifier's feature space against other real images ('real' is the floor)")

    n = 8
    grid = [test_x[:n] * known] + [completions[v][:n] for v in ("mean image", *models)] + [test_x[:n]]
    run.add_image_grid(torch.cat(grid), "completions.png", nrow=n,
                       title="Rows: patch, " + ", ".join(["mean image", *models]) + ", real")
    for variant in models:
        per_patch = [torch.cat([test_x[i:i + 1] * known, samples[variant][:, i], test_x[i:i + 1]]) for i in range(6)]
        run.add_image_grid(torch.cat(per_patch), f"samples_{variant}.png", nrow=cfg.samples + 2,
                           title=f"{variant}: {cfg.samples} noise samples per patch (first: patch, last: real)")

    findings, collapse = [], {}
    for variant, hist in histories.items():
        xs = list(range(1, len(hist) + 1))
        keys = [k for k in ("train_loss", "train_rec", "train_d_loss", "train_g_adv") if k in hist[0]]
        run.add_figure(line_plot({k[6:]: (xs, [e[k] for e in hist]) for k in keys}, title=f"{variant}: losses per epoch",
                                 xlabel="epoch", ylabel="loss"), f"losses_{variant}", title=f"{variant}: training losses")
        if variant == "cgan":
            run.add_figure(line_plot({k: (xs, [e[f"train_{k}"] for e in hist]) for k in ("d_real_acc", "d_fake_acc")}
                                     | {"diversity x10": (xs, [10 * e["val_diversity"] for e in hist])},
                                     title="cgan: discriminator accuracy and diversity", xlabel="epoch", ylabel="value"),
                           "cgan_balance", title="cGAN: discriminator accuracy on real / fake, and sample diversity")
        found = _collapse(hist, by_name[variant]["diversity"], by_name[variant]["border L1"], judged.get(variant)) \
            if variant == "cgan" else []
        collapse[variant] = found
        if found:
            findings.append(f"The {variant} run shows: " + "; ".join(found) + ".")
        elif variant == "cgan":
            row = by_name[variant]
            findings.append("The cgan run shows no sign of collapse: the discriminator is not always winning, "
                            f"completions spread over classes, and noise samples differ by {row['diversity']:.2g} "
                            f"per border pixel ({row['diversity'] / max(row['border L1'], 1e-12):.1%} of the border "
                            "error; below 10% counts as no diversity).")
    if "recon" in models and "cgan" in models:
        r, gn = by_name["recon"], by_name["cgan"]
        findings.append(f"Reconstruction-only vs cGAN: border L1 {r['border L1']:.4f} vs {gn['border L1']:.4f}, "
                        f"PSNR {r['border PSNR dB']:.2f} vs {gn['border PSNR dB']:.2f} dB, SSIM "
                        f"{r['border SSIM']:.3f} vs {gn['border SSIM']:.3f}, diversity {r['diversity']:.4f} vs "
                        f"{gn['diversity']:.4f}.")
        if judge is not None:
            better = "cgan" if gn["Fréchet dist."] < r["Fréchet dist."] else "recon"
            findings.append(f"Judge accuracy {r['judge acc']:.3f} vs {gn['judge acc']:.3f}; Fréchet distance "
                            f"{r['Fréchet dist.']:.2f} vs {gn['Fréchet dist.']:.2f}, so the {better} completions are "
                            "closer to real images in our classifier's feature space.")
    findings.append("The known patch is kept exactly in every completion." if all(exact.values())
                    else "The known patch was NOT kept exactly in: " + ", ".join(v for v, ok in exact.items() if not ok))
    run.add_text("Findings", " ".join(findings))

    keys = {"border L1": "border_l1", "border PSNR dB": "border_psnr_db", "border SSIM": "border_ssim",
            "diversity": "diversity", "judge acc": "judge_acc", "Fréchet dist.": "frechet"}
    headline = {short: {name: by_name[name][long] for name in (*models, "mean image", "real") if long in by_name[name]}
                for long, short in keys.items()}
    headline = {k: v for k, v in headline.items() if v}
    headline["patch_kept_exactly"] = all(exact.values())
    headline["collapsed"] = {v: bool(f) for v, f in collapse.items() if v == "cgan"}
    return {"headline": headline, "table": rows, "collapse": collapse, "patch_exact": exact,
            "history": histories}
