"""Training an outpainter (`models.gan.Outpainter`): reconstruction only, or as a conditional
GAN (Context Encoders, pix2pix), through `train.engine.fit`, so runs checkpoint and resume.

The generator sees the centre patch (`box`) and noise, optionally the class label, and draws
the whole image; only the border (`border`: 1 where the generator draws) counts in the loss.
The cGAN's step updates the discriminator once, then the generator once; after every
generator step the model's averaged generator (`Outpainter(ema_decay=...)`) moves toward it.
With `keep_best`, the epoch whose evaluation has the lowest `val_border_l1` is kept. With `bf16` the
forward passes run under bf16 autocast (weights, optimizer state and the backward's
accumulation stay float32), which makes a CPU step 1.3-3x faster where the CPU has bf16 units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dlslab.models.gan import OutpaintGenerator, Outpainter
from dlslab.runs import Run
from dlslab.train.engine import History, fit, predict


@dataclass(frozen=True)
class OutpaintSpec:
    """The losses and optimizers of one training (field names as in the outpaint study's config)."""

    use_label: bool = False  # condition on the class label
    noise_dim: int = 16  # noise vector size
    regularizer: str = "spectral"  # spectral (built into D), r1 (gradient penalty) or none
    r1_weight: float = 1.0  # gamma of the R1 penalty (gamma/2 * |grad D(real)|^2)
    rec_loss: str = "l1"  # l1 or l2 on the border
    rec_weight: float = 10.0  # weight of the reconstruction term
    adv_weight: float = 1.0  # weight of the adversarial term (cgan only)
    lr_g: float = 1e-3  # generator's Adam learning rate (betas 0.5, 0.999 as in DCGAN)
    lr_d: float = 2e-4  # discriminator's Adam learning rate
    epochs: int = 15  # passes over the training images
    batch_size: int = 64  # images per step
    bf16: bool = False  # forward passes under bf16 autocast (CPU and CUDA); weights stay float32
    seed: int = 0  # data order


def crop(x: torch.Tensor, box: tuple[int, int]) -> torch.Tensor:
    """The centre patch rows and columns box[0]:box[1] of images (..., H, W)."""
    a, b = box
    return x[..., a:b, a:b]


def border_loss(fake: torch.Tensor, real: torch.Tensor, border: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean L1 or squared error over the border pixels."""
    err = (fake - real).abs() if kind == "l1" else (fake - real) ** 2
    return (err * border).sum() / (border.sum() * real.shape[0] * real.shape[1])


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on `device` when `enabled` (a fresh context each time it is entered)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def cgan_step(model: Outpainter, spec: OutpaintSpec, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
              border: torch.Tensor, box: tuple[int, int]) -> Callable:
    """The cGAN's training step on a batch (uint8 images, labels)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    gen, disc = model.generator, model.discriminator

    def step(model: Outpainter, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0].float() / 255
        y = batch[1] if spec.use_label else None
        z = torch.randn(len(x), spec.noise_dim, device=x.device)
        real_in = x.requires_grad_(spec.regularizer == "r1")
        with autocast(x.device, spec.bf16):
            fake = gen(crop(x, box), z, y)
            d_real, d_fake = disc(real_in, y), disc(fake.detach(), y)
            d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        stats = {}
        if spec.regularizer == "r1":
            (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            d_loss = d_loss + spec.r1_weight / 2 * r1
            stats["r1"] = r1.detach()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        with autocast(x.device, spec.bf16):
            d_gen = disc(fake, y)
            g_adv = bce(d_gen, torch.ones_like(d_gen))
        rec = border_loss(fake.float(), x.detach(), border, spec.rec_loss)
        opt_g.zero_grad(set_to_none=True)
        (spec.adv_weight * g_adv + spec.rec_weight * rec).backward()
        opt_g.step()
        model.update_average()
        return {"d_loss": d_loss.detach(), "g_adv": g_adv.detach(), "rec": rec.detach(),
                "d_real_acc": (d_real.detach() > 0).float().mean(), "d_fake_acc": (d_fake.detach() < 0).float().mean(),
                **stats}

    return step


def recon_step(model: Outpainter, spec: OutpaintSpec, opt_g: torch.optim.Optimizer, border: torch.Tensor,
               box: tuple[int, int]) -> Callable:
    """The reconstruction-only training step (the generator alone, on the border loss)."""
    gen = model.generator

    def step(model: Outpainter, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch[0].float() / 255
        z = torch.randn(len(x), spec.noise_dim, device=x.device)
        with autocast(x.device, spec.bf16):
            fake = gen(crop(x, box), z, batch[1] if spec.use_label else None)
        loss = border_loss(fake.float(), x, border, spec.rec_loss)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        model.update_average()
        return {"loss": loss.detach()}

    return step


def train_outpainter(model: Outpainter, variant: str, spec: OutpaintSpec, train_x: torch.Tensor,
                     train_y: torch.Tensor, border: torch.Tensor, box: tuple[int, int], *,
                     evaluate: Callable[[nn.Module], dict[str, float]] | None = None, keep_best: bool = False,
                     run: Run | None = None) -> History:
    """Train `model` as `variant` ("recon": the generator alone on the border loss; "cgan": with
    its discriminator) on uint8 images `train_x`, resumable under the variant's name. With
    `keep_best` (and `evaluate`), the model ends at its epoch with the lowest `val_border_l1`."""
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=spec.lr_g, betas=(0.5, 0.999))
    common = {"epochs": spec.epochs, "batch_size": spec.batch_size, "evaluate": evaluate, "seed": spec.seed,
              "run": run, "name": variant, "drop_last": True}
    if keep_best:
        common |= {"monitor": "val_border_l1", "mode": "min", "restore_best": True}
    if variant == "recon":
        return fit(model, (train_x, train_y), step=recon_step(model, spec, opt_g, border, box),
                   optimizer={"G": opt_g}, **common)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=spec.lr_d, betas=(0.5, 0.999))
    return fit(model, (train_x, train_y), step=cgan_step(model, spec, opt_g, opt_d, border, box),
               optimizer={"G": opt_g, "D": opt_d}, **common)


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
        return net(crop(xb, box), zb, yb)

    return predict(gen, packed, batch_size, fn=fn)
