"""2-D maps of embeddings for plots: PCA, and t-SNE (openTSNE, FFT-accelerated gradients)."""

from __future__ import annotations

import numpy as np
import torch


def tsne(z: torch.Tensor, *, perplexity: float, seed: int) -> torch.Tensor:
    """2-D openTSNE map (FFT-accelerated gradients), on the top 50 principal components."""
    from openTSNE import TSNE

    x = z.double() - z.double().mean(0)
    if x.shape[1] > 50:
        x = x @ torch.linalg.svd(x, full_matrices=False).Vh[:50].T
    threads = max(1, torch.get_num_threads()) if len(x) >= 5000 else 1  # small maps: threads cost more than they save
    model = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), random_state=seed,
                 n_jobs=threads, verbose=False)
    return torch.from_numpy(np.asarray(model.fit(x.cpu().numpy()), dtype=np.float32))


def pca(z: torch.Tensor, dims: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(points projected on the top `dims` principal axes, explained-variance ratio of every axis)."""
    zc = z.double() - z.double().mean(0)
    cov = zc.T @ zc / max(len(z) - 1, 1)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    ratio = values / values.sum().clamp_min(1e-30)
    return (zc @ vectors[:, :dims]).float().cpu(), ratio.float().cpu()
