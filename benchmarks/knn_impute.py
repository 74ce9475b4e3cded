"""k-NN imputation speed: `dlslab.impute.knn.knn_impute` (distances as matrix products) vs
scikit-learn's `KNNImputer` (the same rule, neighbours found column by column), in one process.

On MNIST training images (a seeded subset, 784 pixels in [0, 1]) with a share of the pixels
missing at random (or, with `--block`, one missing square per image), both impute the same
holes with 5 neighbours; the imputed values must agree (a tie in distance may pick another
neighbour, so the share of entries that differ is printed too). Prints each time, the ratio and the RMSE of each on the missing pixels.

    python benchmarks/knn_impute.py [--images 4000] [--rate 0.5 | --block 14] [--json out.json]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from dlslab.data.images import load_images
from dlslab.impute.knn import knn_impute
from dlslab.impute.masks import block_mask, mcar_mask
from common import machine, timed, write_json


def sklearn_knn(x: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    from sklearn.impute import KNNImputer

    out = KNNImputer(n_neighbors=k, keep_empty_features=True).fit_transform(np.where(m > 0, x, np.nan))
    return np.where(m > 0, x, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="MNIST training images")
    parser.add_argument("--rate", type=float, default=0.5, help="fraction of pixels missing at random")
    parser.add_argument("--block", type=int, default=0, help="one missing square of this side per image instead")
    parser.add_argument("--neighbors", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    data = load_images("mnist", os.environ.get("DLSLAB_DATA"))
    idx = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))[: args.images]
    x = (data.train_x[idx].flatten(1).double() / 255).numpy()
    g = torch.Generator().manual_seed(0)
    m = (block_mask(len(x), 28, args.block, g) if args.block else mcar_mask(x.shape, args.rate, g)).numpy()
    what = f"one {args.block} x {args.block} square" if args.block else f"{args.rate:.0%}"

    t_ours, ours = timed(knn_impute, x, m, args.neighbors)
    t_sk, ref = timed(sklearn_knn, x, m, args.neighbors)
    holes = m == 0
    rmse = {name: float(np.sqrt(((out - x)[holes] ** 2).mean())) for name, out in (("ours", ours), ("sklearn", ref))}
    differ = float((np.abs(ours - ref)[holes] > 1e-9).mean())
    result = {"machine": machine(), "images": args.images, "missing": what, "neighbors": args.neighbors,
              "ours_s": t_ours, "sklearn_s": t_sk, "ratio": t_sk / t_ours, "rmse": rmse,
              "share_of_holes_that_differ": differ}
    write_json(args.json, result)
    print(f"machine: {result['machine']}; {args.images} MNIST images x 784 pixels, {what} missing, "
          f"k = {args.neighbors}")
    print(f"knn_impute {t_ours:.2f} s, scikit-learn KNNImputer {t_sk:.2f} s: {t_sk / t_ours:.1f}x")
    print(f"RMSE on the missing pixels: ours {rmse['ours']:.5f}, scikit-learn {rmse['sklearn']:.5f}; "
          f"{differ:.3%} of the missing pixels differ (ties in distance)")


if __name__ == "__main__":
    main()
