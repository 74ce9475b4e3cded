"""Inference of compressed LeNets on CPU: dense float32 vs sparse (CSR) and int8 kernels.

The compressed models are what the `compress` study's deep-compression pipeline stores: its
default per-layer densities with k-means-shared weights (weight values do not change the
speed, so random weights pruned to those densities are used; pass `--packed FILE` to time a
model from a packed file instead). Each model runs on batches of 1 and of 256 MNIST-sized
inputs (a) as the plain dense float32 PyTorch model (the baseline), (b) with every Linear
layer's weight as a CSR sparse matrix (`torch.sparse.mm`), and (c) with PyTorch's dynamic
int8 quantisation of the Linear layers. Loading is timed too: our packed file (Huffman
decoding) vs `torch.load` of the dense state dict. Prints each path's time, its speed-up over
dense (below 1 means slower), and checks that the outputs agree with the dense model's.

    python benchmarks/compress_inference.py [--repeats 50] [--packed FILE] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import io
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from dlslab.compress.layers import bake
from dlslab.compress.packed import load_packed, pack_model
from dlslab.compress.prune import prune_magnitude
from dlslab.compress.share import share_weights
from dlslab.models import build_model
from dlslab.runner import plan_study
from common import machine, matmul_peak_gflops, write_json


class SparseLinear(nn.Module):
    """y = x W^T + b with W stored as CSR."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight.detach().to_sparse_csr()
        self.bias = linear.bias.detach() if linear.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sparse.mm(self.weight, x.T).T  # (B, out)
        return y + self.bias if self.bias is not None else y


def sparse_model(model: nn.Module) -> nn.Module:
    out = copy.deepcopy(model)
    for name, m in list(out.named_modules()):
        if isinstance(m, nn.Linear):
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, child, SparseLinear(m))
    return out


def int8_model(model: nn.Module) -> nn.Module | None:
    if not torch.backends.quantized.supported_engines or torch.backends.quantized.engine == "none":
        return None
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


def compressed(name: str) -> nn.Module:
    cfg = plan_study("compress", "full").cfg  # the study's defaults
    torch.manual_seed(0)
    model = build_model(name)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    density, bits = getattr(cfg, f"{name}_density"), getattr(cfg, f"{name}_bits")
    prune_magnitude(model, {n: 1 - d for n, d in zip(layers, density)})
    share_weights(model, dict(zip(layers, bits)), cfg.bias_bits)
    return bake(model).eval()


@torch.no_grad()
def seconds(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    model(x)  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="forward passes per timing (best of 3)")
    parser.add_argument("--packed", help="time this packed file's model instead of the default ones")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    result: dict = {"machine": machine(), "peak_gflops": round(matmul_peak_gflops(), 1),
                    "models": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.packed:
            models = {Path(args.packed).stem: load_packed(args.packed)[0]}
        else:
            models = {name: compressed(name) for name in ("lenet300", "lenet5")}
        for name, model in models.items():
            path = Path(tmp) / f"{name}.dlz"
            pack_model(model, path, name=name)
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            t0 = time.perf_counter()
            load_packed(path)
            t_packed = time.perf_counter() - t0
            t0 = time.perf_counter()
            torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
            t_dense_load = time.perf_counter() - t0
            paths = {"dense float32": model, "sparse CSR": sparse_model(model), "int8 dynamic": int8_model(model)}
            entry = {"load_packed_s": t_packed, "load_dense_s": t_dense_load,
                     "packed_bytes": path.stat().st_size, "dense_bytes": len(buf.getvalue()), "paths": {}}
            for batch in (1, 256):
                x = torch.randn(batch, 1, 28, 28)
                with torch.no_grad():
                    reference = model(x)
                base = seconds(model, x, args.repeats)
                for label, m in paths.items():
                    if m is None:
                        continue
                    t = base if m is model else seconds(m, x, args.repeats)
                    with torch.no_grad():
                        out = m(x)
                    check = {"max_abs_diff": float((out - reference).abs().max()),
                             "argmax_agreement": float((out.argmax(1) == reference.argmax(1)).float().mean())}
                    entry["paths"][f"{label} @ batch {batch}"] = {"seconds": t, "speedup": base / t} | check
                    rows.append((name, batch, label, t, base / t, check["max_abs_diff"]))
            result["models"][name] = entry
    sparse_ok = all(v["max_abs_diff"] < 1e-3 for e in result["models"].values()
                    for k, v in e["paths"].items() if k.startswith("sparse"))
    result["accuracy_check"] = "sparse outputs match dense to 1e-3" if sparse_ok else "SPARSE OUTPUTS DIFFER"
    write_json(args.json, result)
    print(f"machine: {result['machine']}; peak {result['peak_gflops']} GFLOP/s (1024^2 float32 matmul)")
    for name, e in result["models"].items():
        print(f"{name}: load packed {1e3 * e['load_packed_s']:.1f} ms ({e['packed_bytes']:,} B) vs dense "
              f"torch.load {1e3 * e['load_dense_s']:.1f} ms ({e['dense_bytes']:,} B)")
    print(f"accuracy check: {result['accuracy_check']}")
    print(f"\n{'model':<9} {'batch':>5}  {'path':<14} {'ms/forward':>10} {'vs dense':>9} {'max |diff|':>10}")
    for name, batch, label, t, ratio, diff in rows:
        print(f"{name:<9} {batch:>5}  {label:<14} {1e3 * t:>10.3f} {ratio:>8.2f}x {diff:>10.2e}")


if __name__ == "__main__":
    main()
