"""A reference classifier per image dataset, trained once and cached, and the metrics that
use it: accuracy on generated/completed images, confidence/entropy, and the Fréchet
distance between feature distributions in *our* classifier's feature space."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

from dlslab import atomic
from dlslab.data.images import load_images
from dlslab.data.locate import cache_dir
from dlslab.metrics.image import nearest_neighbours
from dlslab.models.judge import JudgeCNN
from dlslab.runs import safe_torch_load
from dlslab.train.engine import classifier_eval, fit, predict


def reference_classifier(dataset: str, device: torch.device | str = "cpu", *, data_dir: str | Path | None = None,
                         epochs: int = 1, seed: int = 0) -> JudgeCNN:
    """A JudgeCNN trained on `dataset` (mnist | fashion-mnist | cifar10), inputs in [0, 1].
    Cached in the user cache, so every study and run shares one judge per dataset."""
    data = load_images(dataset, data_dir)
    c, h, _ = data.shape
    key = hashlib.sha256(f"{dataset}:{epochs}:{seed}:v2".encode()).hexdigest()[:12]
    path = cache_dir() / "judges" / f"{dataset}-{key}.pt"
    model = JudgeCNN(c, h).to(device)
    # studies run side by side (`run all --jobs`) train a missing judge once: the second waits
    with atomic.exclusive(path.with_suffix(".lock"), f"another run is training the {dataset} judge; waiting for it"):
        if path.exists():
            model.load_state_dict(safe_torch_load(path, map_location=device))
            return model.eval()
        torch.manual_seed(seed)
        x = data.train_x.to(device).float() / 255
        y = data.train_y.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        fit(model, (x, y), lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb), optimizer=opt,
            epochs=epochs, batch_size=256, seed=seed, verbose=False)
        model.eval()
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        atomic.write_with(path, lambda f: torch.save(state, f))
    return model


def judge_accuracy(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of `images` (floats in [0, 1]) the judge assigns to `labels`."""
    return classifier_eval(images, labels, prefix="")(judge)["acc"]


def confidence_entropy(judge: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """Mean max-softmax confidence and mean predictive entropy (nats) of the judge."""
    p = predict(judge, images).float().softmax(1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(1)
    return p.max(1).values.mean().item(), entropy.mean().item()


def judge_features(judge: JudgeCNN, images: torch.Tensor) -> np.ndarray:
    return predict(judge, images, fn=lambda m, xb: m.embed(xb)).double().cpu().numpy()


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets."""
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    eye = np.eye(feats_a.shape[1]) * 1e-6  # dead ReLU features make the covariances singular
    cov_a, cov_b = np.cov(feats_a, rowvar=False) + eye, np.cov(feats_b, rowvar=False) + eye
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def realism_rows(judge: JudgeCNN, samples: dict[str, torch.Tensor], test_x: torch.Tensor,
                 train_x: torch.Tensor) -> list[dict]:
    """How real each set of generated images looks, next to held-out real ones (the first row):
    the judge's confidence and entropy, the mean distance to the nearest training image (a
    memorisation check), and the Fréchet distance to test images in the judge's feature space
    (for the real row: between two disjoint sets of real images, the floor)."""
    n = min(len(s) for s in samples.values())
    real = test_x[:n]
    real_feats = judge_features(judge, real)
    other = test_x[n:2 * n] if len(test_x) >= 2 * n else train_x[-n:]
    rows = []
    for name, images in {"real test images": real, **samples}.items():
        conf, ent = confidence_entropy(judge, images)
        compared = other if name == "real test images" else images
        rows.append({"images": name, "n": len(images), "judge_confidence": conf, "judge_entropy_nats": ent,
                     "nn_train_distance": nearest_neighbours(images, train_x)[0].mean().item(),
                     "frechet_judge": frechet_distance(judge_features(judge, compared), real_feats)})
    return rows
