"""Choose compress's `lenet5_qat_round` on a validation split (docs/studies/compress.md).

LeNet-5 is trained on 55,000 MNIST training images with the full preset's schedule (5,000
held out, seeded), pruned iteratively in 5 rounds; after every round a copy trains 3 epochs
int4 quantisation-aware with its pruned weights held at zero, is packed, loaded back and
measured on the validation and the test images. The rule: the largest ratio whose
validation error is not above the baseline's.

    python scripts/compress_qat_round.py     # about 10 minutes on 2 idle CPU cores
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from dlslab.compress.layers import bake, weight_layers
from dlslab.compress.packed import dense_bytes, load_packed, pack_model
from dlslab.compress.prune import prune_magnitude, sparsity_schedule
from dlslab.compress.quant import prepare_qat
from dlslab.data.images import load_images
from dlslab.models import build_model
from dlslab.studies.compress import (
    MNIST_MEAN,
    MNIST_STD,
    Config,
    Mnist,
    error_percent,
    train,
)
from dlslab.train.engine import clone_model

HELD_OUT = 5000


def main() -> None:
    cfg = Config()
    images = load_images("mnist")
    x = (images.train_x.float() / 255 - MNIST_MEAN) / MNIST_STD
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    fit_idx, val_idx = perm[HELD_OUT:], perm[:HELD_OUT]
    test = ((images.test_x.float() / 255 - MNIST_MEAN) / MNIST_STD, images.test_y)
    data = Mnist((x[fit_idx], images.train_y[fit_idx]), test)
    val = Mnist(data.train, (x[val_idx], images.train_y[val_idx]))  # error_percent reads .test
    torch.manual_seed(cfg.seed)
    base = build_model("lenet5")
    train(base, data, cfg, None, "baseline", cfg.epochs, finetune=False)
    reference = dense_bytes(base.state_dict())
    print(f"baseline: validation {error_percent(base, val):.2f}%, test {error_percent(base, data):.2f}%", flush=True)
    names = list(weight_layers(base))
    sparsity = {n: 1 - d for n, d in zip(names, cfg.lenet5_density)}
    pruned = clone_model(base)
    with tempfile.TemporaryDirectory() as tmp:
        for r, round_sparsity in enumerate(sparsity_schedule(sparsity, cfg.prune_rounds), 1):
            prune_magnitude(pruned, round_sparsity)
            train(pruned, data, cfg, None, f"prune{r}", cfg.prune_epochs)
            bake(pruned)
            m = prepare_qat(clone_model(pruned), 4, keep_zeros=True)
            train(m, data, cfg, None, f"qat{r}", cfg.technique_epochs)
            bake(m)
            report = pack_model(m, Path(tmp) / f"round{r}.dlz", name="lenet5", reference_bytes=reference)
            loaded, _ = load_packed(report.path, torch.device("cpu"))
            print(f"round {r} + int4 QAT: {report.file_bytes:,} bytes, {report.ratio:.1f}x, validation "
                  f"{error_percent(loaded, val):.2f}%, test {error_percent(loaded, data):.2f}%", flush=True)


if __name__ == "__main__":
    main()
