"""Outpainting training pieces: the border loss counts only the border, the crop is the centre."""

from __future__ import annotations

import torch

from dlslab.models.gan import centre_box, centre_mask
from dlslab.train.outpaint import border_loss, crop


def test_border_loss_ignores_the_centre_and_crop_takes_it():
    size, patch = 8, 4
    box, border = centre_box(size, patch), 1 - centre_mask(size, patch)
    real = torch.zeros(2, 1, size, size)
    fake = real.clone()
    a, b = box
    fake[..., a:b, a:b] = 5.0  # wrong only inside the known patch
    assert border_loss(fake, real, border, "l1").item() == 0.0
    assert torch.equal(crop(fake, box), torch.full((2, 1, patch, patch), 5.0))
    fake[..., 0, 0] = 1.0  # one wrong border pixel per image
    n_border = border.sum().item()
    assert abs(border_loss(fake, real, border, "l1").item() - 1 / n_border) < 1e-6
    assert abs(border_loss(2 * fake, real, border, "l2").item() - 4 / n_border) < 1e-6


def test_bf16_training_keeps_float32_weights_and_learns():
    from dlslab.models.gan import Outpainter
    from dlslab.train.outpaint import OutpaintSpec, train_outpainter

    size, patch = 12, 6
    box, border = centre_box(size, patch), 1 - centre_mask(size, patch)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, size, size, generator=g) * 255).to(torch.uint8)
    y = torch.zeros(64, dtype=torch.long)
    for variant in ("recon", "cgan"):
        torch.manual_seed(0)
        model = Outpainter(1, size, patch, 4, 4, 0, False, True)
        before = [p.detach().clone() for p in model.generator.parameters()]
        spec = OutpaintSpec(noise_dim=4, epochs=2, batch_size=16, bf16=True)
        hist = train_outpainter(model, variant, spec, x, y, border, box)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(torch.isfinite(torch.tensor(v)) for v in hist.epochs[-1].values())
        assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))


def tiny_data(size: int = 12, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, size, size, generator=g) * 255).to(torch.uint8), torch.zeros(n, dtype=torch.long)


def test_the_averaged_generator_follows_training_and_resumes_from_its_checkpoint(tmp_path):
    from dlslab.models.gan import Outpainter
    from dlslab.runs import Run
    from dlslab.train.outpaint import OutpaintSpec, train_outpainter

    size, patch = 12, 6
    box, border = centre_box(size, patch), 1 - centre_mask(size, patch)
    x, y = tiny_data(size)
    spec = OutpaintSpec(noise_dim=4, epochs=2, batch_size=16)
    torch.manual_seed(0)
    model = Outpainter(1, size, patch, 4, 4, ema_decay=0.5)
    start = [p.detach().clone() for p in model.final_generator().parameters()]
    run = Run(tmp_path / "run", "t", None, quiet=True)
    train_outpainter(model, "cgan", spec, x, y, border, box, run=run)
    final = model.final_generator()
    assert final is not model.generator and int(model.generator_ema.n_averaged) == 2 * len(x) // 16
    averaged, trained = list(final.parameters()), list(model.generator.parameters())
    assert any(not torch.equal(a, s) for a, s in zip(averaged, start))  # it moved
    assert any(not torch.equal(a, t) for a, t in zip(averaged, trained))  # but is not the last step's weights
    # a fresh model given the same run name comes back with the same average (it is in the checkpoint)
    again = Outpainter(1, size, patch, 4, 4, ema_decay=0.5)
    train_outpainter(again, "cgan", spec, x, y, border, box, run=run)
    assert all(torch.equal(a, b) for a, b in zip(averaged, again.final_generator().parameters()))
    assert Outpainter(1, size, patch, 4, 4).final_generator() is not None


def test_keep_best_ends_at_the_epoch_with_the_lowest_validation_l1():
    from dlslab.models.gan import Outpainter
    from dlslab.train.outpaint import OutpaintSpec, train_outpainter

    size, patch = 12, 6
    box, border = centre_box(size, patch), 1 - centre_mask(size, patch)
    x, y = tiny_data(size)
    scores, snapshots = iter([0.3, 0.1, 0.2]), []

    def evaluate(model):  # a scripted validation curve: the second epoch is best
        snapshots.append([p.detach().clone() for p in model.generator.parameters()])
        return {"val_border_l1": next(scores)}

    torch.manual_seed(0)
    model = Outpainter(1, size, patch, 4, 4)
    hist = train_outpainter(model, "recon", OutpaintSpec(noise_dim=4, epochs=3, batch_size=16), x, y, border, box,
                            evaluate=evaluate, keep_best=True)
    assert hist.best_epoch == 2
    kept = list(model.generator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(kept, snapshots[1]))
    assert any(not torch.equal(a, b) for a, b in zip(kept, snapshots[2]))
