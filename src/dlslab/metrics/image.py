"""Image and imputation metrics restricted to a region: the generated border of an
outpainted image, or the missing entries of an imputed table.

Images are float tensors (B, C, H, W) in [0, 1]; a region mask is 1 where the metric
counts, broadcastable to the images. Every metric averages over images (per-image values
first, then the mean), so a batch of easy images cannot hide a few hard ones.
"""

from __future__ import annotations

import torch


def _region_mean(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per-image mean of `values` (B, C, H, W) over `region`: (B,)."""
    region = region.expand_as(values).to(values.dtype)
    counts = region.flatten(1).sum(1)
    if (counts == 0).any():
        raise ValueError("the region mask selects no pixels for some image")
    return (values * region).flatten(1).sum(1) / counts


def region_l1(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor) -> float:
    """Mean absolute error over `region`, averaged over images."""
    return _region_mean((pred - target).abs(), region).mean().item()


def region_mse(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor) -> float:
    """Mean squared error over `region`, averaged over images."""
    return _region_mean((pred - target) ** 2, region).mean().item()


def region_psnr(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor,
                data_range: float = 1.0, max_db: float = 100.0) -> float:
    """PSNR (dB) of each image over `region`, averaged over images; a perfect image counts
    as `max_db` so one exact copy does not make the mean infinite."""
    mse = _region_mean((pred - target) ** 2, region)
    psnr = 10 * torch.log10(data_range ** 2 / mse.clamp_min(1e-12))
    return psnr.clamp_max(max_db).mean().item()


def region_ssim(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor,
                window_size: int = 7) -> float:
    """Mean SSIM over `region`: kornia's local SSIM map (Gaussian window), averaged over the
    region's pixels in each image, then over images."""
    from kornia.metrics import ssim

    ssim_map = ssim(pred.float(), target.float(), window_size, max_val=1.0, padding="same")  # (B, C, H, W)
    return _region_mean(ssim_map, region).mean().item()


def sample_diversity(samples: torch.Tensor, region: torch.Tensor) -> float:
    """Mean pairwise L1 distance over `region` between K samples drawn for the same input.

    `samples` is (K, B, C, H, W): K noise draws for each of B inputs. 0 means the generator
    ignores its noise (every draw is the same image)."""
    k = samples.shape[0]
    if k < 2:
        raise ValueError("diversity needs at least two samples per input")
    total = samples.new_zeros(())
    for i in range(k):
        for j in range(i + 1, k):
            total = total + _region_mean((samples[i] - samples[j]).abs(), region).mean()
    return (total / (k * (k - 1) / 2)).item()


def rmse_missing(imputed: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor) -> float:
    """RMSE over the missing entries only (`observed` == 0), as in the GAIN paper; entries
    that were observed do not count, whatever the imputer wrote there."""
    missing = observed == 0
    n = int(missing.sum())
    if n == 0:
        raise ValueError("no entry is missing: RMSE on missing entries is undefined")
    return torch.sqrt(((imputed - truth)[missing].double() ** 2).sum() / n).item()


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 256
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Euclidean pixel distance, index) of each query image's nearest reference image: (N,), (N,)."""
    ref = reference.flatten(1)
    found = [torch.cdist(q.flatten(1), ref).min(1) for q in queries.split(chunk)]
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


BCE_CLAMP = 1e-3  # probabilities are clamped to [eps, 1 - eps] so hard 0/1 predictions get a finite BCE


def binary_scores(pred: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """Per-pixel MSE and BCE (nats) of predicted pixels (probabilities or 0/1) against real binary ones."""
    p = pred.clamp(BCE_CLAMP, 1 - BCE_CLAMP)
    return {"mse": torch.nn.functional.mse_loss(pred, real).item(),
            "bce": torch.nn.functional.binary_cross_entropy(p, real).item()}
