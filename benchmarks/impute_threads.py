"""Imputation speed on a small table: one thread (what `gan-impute` and `dlslab impute` use for
tables of at most 128 columns) vs the default thread pools, in one process.

On scikit-learn's breast cancer table (569 x 30) at 20% missing: (a) GAIN training through
`train_gain` and (b) scikit-learn's IterativeImputer, each timed with torch / BLAS limited to
one thread (`few_threads`, `threadpool_limits(1)`) and with the default pools. The imputed
values must agree (up to float noise), so the speed-up costs nothing. Prints each time, the
ratio and a short table.

    python benchmarks/impute_threads.py [--steps 1000] [--json out.json]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from threadpoolctl import threadpool_info

from dlslab.data.uci import load_table
from dlslab.impute.classical import classical_impute
from dlslab.impute.gain import gain_impute, train_gain
from dlslab.impute.masks import mcar_mask
from dlslab.impute.threads import few_threads
from dlslab.metrics.image import rmse_missing
from common import machine, timed, write_json


def gain_rmse(x: np.ndarray, m: np.ndarray, steps: int) -> float:
    xt, mt = torch.from_numpy(np.where(m > 0, x, 0.0)).float(), torch.from_numpy(m).float()
    model, _ = train_gain(xt, mt, iterations=steps, log_every=steps)
    return rmse_missing(gain_impute(model, xt, mt).double(), torch.from_numpy(x), torch.from_numpy(m))


def iterative_default(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """IterativeImputer with the default BLAS pool (classical_impute limits it to one thread)."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    out = IterativeImputer(max_iter=10, random_state=0, keep_empty_features=True).fit_transform(
        np.where(m > 0, x, np.nan))
    return np.where(m > 0, x, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="GAIN training steps")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    table = load_table("breast")
    x = table.x
    m = mcar_mask(x.shape, 0.2, torch.Generator().manual_seed(0)).numpy().astype(np.float64)
    blas = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)
    result: dict = {"machine": f"{machine()}, {blas} BLAS threads",
                    "table": table.title, "steps": args.steps}

    t_default, r_default = timed(gain_rmse, x, m, args.steps)
    with few_threads(x.shape[1]):
        t_one, r_one = timed(gain_rmse, x, m, args.steps)
    result["gain"] = {"default_s": t_default, "one_thread_s": t_one, "ratio": t_default / t_one,
                      "rmse_default": r_default, "rmse_one_thread": r_one}

    it_default, out_default = timed(iterative_default, x, m)
    it_one, out_one = timed(classical_impute, "iterative", x, m)  # BLAS limited to one thread inside
    result["iterative"] = {"default_s": it_default, "one_thread_s": it_one, "ratio": it_default / it_one,
                           "max_abs_diff": float(np.abs(out_default - out_one).max()),
                           "agree": bool(np.allclose(out_default, out_one, atol=1e-6))}

    write_json(args.json, result)
    print(f"machine: {result['machine']}; {result['table']}, 20% missing")
    print(f"{'what':<28}{'default s':>11}{'1 thread s':>12}{'ratio':>8}")
    for name, r in (("GAIN, " + str(args.steps) + " steps", result["gain"]), ("IterativeImputer", result["iterative"])):
        print(f"{name:<28}{r['default_s']:>11.2f}{r['one_thread_s']:>12.2f}{r['ratio']:>7.2f}x")
    print(f"GAIN RMSE default {r_default:.4f} vs one thread {r_one:.4f}; "
          f"IterativeImputer max |difference| {result['iterative']['max_abs_diff']:.2g}")


if __name__ == "__main__":
    main()
