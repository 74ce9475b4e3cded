"""The CIFAR recipe's parts do what they claim: the first layer whitens, lookahead pulls the
weights toward their average, the rates are per example, and a short training learns."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlslab.data.images import load_images
from dlslab.models.airbench import AirbenchNet, image_patches
from dlslab.train.augment import normalize, to_unit
from dlslab.train.cifar import CifarRecipe, Lookahead, build_model, device_tensors, param_groups, train_cifar, triangle


def _cifar(n: int) -> torch.Tensor:
    return load_images("cifar10").train_x[:n]


def test_whitening_layer_output_patches_have_identity_covariance(data_root):
    images = normalize(to_unit(_cifar(2000)))
    net = AirbenchNet(10, (8, 8, 8))
    net.init_whitening(images, eps=1e-6)
    d = 3 * 2 * 2  # the first 12 filters; the other 12 are their negations
    out = F.conv2d(images, net.whiten.weight[:d])  # (B, 12, 31, 31): one value per filter and patch
    flat = out.permute(0, 2, 3, 1).reshape(-1, d)
    cov = flat.T @ flat / len(flat)
    assert torch.allclose(cov, torch.eye(d), atol=2e-2), cov.diagonal()
    raw = image_patches(images, 2)
    assert (raw.T @ raw / len(raw) - torch.eye(d)).abs().max() > 0.5  # the input patches were far from white
    assert torch.equal(net.whiten.weight[d:], -net.whiten.weight[:d]) and not net.whiten.weight.requires_grad


def test_lookahead_moves_weights_toward_their_average():
    model = nn.Linear(3, 2)
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    opt = Lookahead(sgd, model, total_steps=100, steps_per_epoch=50, start=10, every=5)

    def step() -> None:  # a constant gradient of 1: plain SGD moves every weight by -1
        opt.zero_grad()
        model.weight.sum().add(model.bias.sum()).backward()
        opt.step()

    for _ in range(10):
        step()
    average = [t.clone() for t in opt.average]  # started at step 10
    assert torch.equal(average[0], model.weight)
    for _ in range(5):
        step()  # step 15: SGD moved 5 more, then the pull
    rho = 0.95**5 * (15 / 100) ** 3
    plain = average[0] - 5  # where SGD alone would be
    assert torch.allclose(model.weight, rho * average[0] + (1 - rho) * plain, atol=1e-5)
    assert (model.weight - average[0]).abs().max() < (plain - average[0]).abs().max()  # closer to the average
    for _ in range(35):
        step()  # step 50 ends the epoch: the network takes the average
    assert torch.equal(model.weight, opt.average[0])
    state = opt.state_dict()
    again = Lookahead(torch.optim.SGD(model.parameters(), lr=1.0), model, total_steps=100, steps_per_epoch=50, start=10)
    again.load_state_dict(state)
    assert again.steps == 50 and torch.equal(again.average[0], opt.average[0])


def test_rates_are_per_example_and_the_whitening_bias_freezes():
    cfg = CifarRecipe(widths=[8, 8, 8])
    net = AirbenchNet(10, (8, 8, 8))
    small, _ = param_groups(net, cfg, batch=256, total_steps=100)
    big, schedules = param_groups(net, cfg, batch=1024, total_steps=100)
    by_size = {len(g["params"]): g for g in big}
    weights = max(big, key=lambda g: len(g["params"]))
    bn = next(g for g in big if g is not weights and g["lr"] > weights["lr"])
    assert bn["lr"] == weights["lr"] * cfg.bias_scaler
    for g in big:  # decay per step = lr * weight_decay: the same for every group, 4x for a 4x batch
        assert abs(g["lr"] * g["weight_decay"] - big[0]["lr"] * big[0]["weight_decay"]) < 1e-12
    assert abs(big[0]["lr"] * big[0]["weight_decay"] - 4 * small[0]["lr"] * small[0]["weight_decay"]) < 1e-12
    whiten = [i for i, g in enumerate(big) if g["params"][0] is net.whiten.bias]
    assert len(whiten) == 1 and len(by_size) >= 2
    assert schedules[whiten[0]](29) > 0 and schedules[whiten[0]](30) == 0.0  # frozen after 30% of the steps
    assert triangle(0, 100, 0.23) == 0.2 and triangle(23, 100, 0.23) == 1.0 and abs(triangle(100, 100, 0.23) - 0.07) < 1e-9


def test_short_training_learns_well_above_chance(data_root):
    data = load_images("cifar10")
    train, test = device_tensors(data, torch.device("cpu"))
    x, y = train[0][:2000], train[1][:2000]
    cfg = CifarRecipe(widths=[16, 32, 32], epochs=8, min_steps=0, batch_size=250, eval_size=500, test_size=1000)
    torch.manual_seed(0)
    model = build_model(cfg, 10, torch.device("cpu"), whiten=x)
    out = train_cifar(cfg, model, (x, y), test, policy="flip-crop", seed=0, run=None, name="smoke", num_classes=10,
                      verbose=False)
    assert out.steps == 8 * 8 and len(out.history.series("test_acc")) == 8
    assert out.test_acc > 0.35, out.test_acc  # chance is 0.1


def test_no_per_epoch_scoring_trains_the_same_network(data_root):
    """eval_size=0 skips the per-epoch curve (studies that plot none) and changes nothing else."""
    train, test = device_tensors(load_images("cifar10"), torch.device("cpu"))
    x, y = train[0][:500], train[1][:500]
    results = []
    for eval_size in (200, 0):
        cfg = CifarRecipe(widths=[8, 16, 16], epochs=3, min_steps=0, batch_size=100, eval_size=eval_size,
                          test_size=300, tta=1)
        torch.manual_seed(0)
        model = build_model(cfg, 10, torch.device("cpu"), whiten=x)
        out = train_cifar(cfg, model, (x, y), test, policy="flip-crop", seed=0, run=None, name="curve",
                          num_classes=10, verbose=False)
        results.append((len(out.history.series("test_acc")), out.test_acc, out.history.series("train_loss")))
    assert results[0][0] == 3 and results[1][0] == 0 and len(results[0][2]) == 3
    assert results[0][1:] == results[1][1:]  # the same accuracy and losses to the last bit


def test_float32_whitening_is_exact_under_bf16_autocast_and_eps_caps_the_gain(data_root):
    images = _cifar(500)
    exact = {}
    for float32 in (False, True):
        torch.manual_seed(0)
        cfg = CifarRecipe(widths=[8, 8, 8], whiten_float32=float32)
        net = build_model(cfg, 10, torch.device("cpu"), whiten=images)
        x = normalize(to_unit(images[:64])).contiguous(memory_format=torch.channels_last)
        reference = F.conv2d(x, net.whiten.weight, net.whiten.bias)  # float32, no autocast
        seen = []
        net.whiten.register_forward_hook(lambda m, i, o: seen.append(o))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net(x)
        exact[float32] = (seen[0].float() - reference).abs().max().item()
    assert exact[True] < 1e-4 < exact[False]  # bf16 rounding is amplified by the faint directions' gain
    gains = [build_model(CifarRecipe(widths=[8, 8, 8], whiten_eps=eps), 10, torch.device("cpu"), whiten=images)
             .whiten.weight.flatten(1).norm(dim=1).max().item() for eps in (5e-4, 5e-3)]
    assert gains[1] < gains[0] / 2  # a larger eps lowers the largest filter gain
