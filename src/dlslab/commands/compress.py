"""`dlslab compress`: compress a trained model into a packed file, inspect one, or unpack it.

    dlslab compress pack CHECKPOINT -o MODEL.dlz [--model NAME] [--sparsity 0.9] [--bits 5]
    dlslab compress info MODEL.dlz [--data mnist]
    dlslab compress unpack MODEL.dlz -o STATE.pt

`pack` works after training, without the training data: magnitude pruning, then k-means
weight sharing (`--bits`) or uniform quantisation (`--int 8|4`), then the packed format.
It prints the file's size and ratio, and how far the compressed model's outputs are from
the original's (as an SNR in dB, on test images with `--data`, else on the model's example
input), so any registered model, classifier or not, can be judged. With `--data` it also
prints both models' test accuracy. Retraining (which recovers most of the loss, see
`dlslab run compress`) needs the model's own loss and data, so it is left to the study.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlslab.errors import DataError, UsageError


def read_checkpoint(path: Path, model: str | None, kwargs: str | None) -> tuple[str, dict[str, Any], dict]:
    """(model name, its arguments, state dict) from a checkpoint: a plain state dict, a
    training checkpoint (`{"model": state_dict, ...}`) or a study's model file
    (`{"model": name, "kwargs": ..., "state_dict": ...}`)."""
    from dlslab.runs import safe_torch_load

    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    data = safe_torch_load(path)
    extra = json.loads(kwargs) if kwargs else {}
    if isinstance(data, dict) and isinstance(data.get("model"), str) and isinstance(data.get("state_dict"), dict):
        return model or data["model"], {**data.get("kwargs", {}), **extra}, data["state_dict"]
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise DataError(f"{path}: not a state dict or a dlslab checkpoint")
    if not model:
        raise UsageError(f"{path} holds weights only: name the model with --model (see the registry in "
                         "dlslab.models, e.g. lenet300, lenet5)")
    return model, extra, data


def output_snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    """10 log10(|reference|^2 / |reference - other|^2); inf when they are equal."""
    noise = (reference - other).double().pow(2).sum().item()
    signal = reference.double().pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)


def _probe(name: str, data: str | None, data_dir: str | None, mean: float, std: float
           ) -> tuple[Any, torch.Tensor | None]:
    """Inputs to compare models on, and labels when they come from a dataset."""
    from dlslab.models import all_models

    if data is None:
        example = all_models()[name].example()
        return example, None
    from dlslab.data.images import load_images

    d = load_images(data, data_dir)
    return (d.test_x.float() / 255 - mean) / std, d.test_y


@torch.no_grad()
def _outputs(model: nn.Module, inputs: Any) -> torch.Tensor:
    from dlslab.train.engine import predict

    model.eval()
    if isinstance(inputs, torch.Tensor) and len(inputs) > 256:
        return predict(model, inputs, 1000)
    out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    return out[0] if isinstance(out, tuple) else out


def cmd_pack(args: argparse.Namespace) -> int:
    from dlslab.compress.layers import bake, bias_layers, weight_layers
    from dlslab.compress.packed import pack_model
    from dlslab.compress.prune import prune_magnitude
    from dlslab.compress.quant import quantise_ptq
    from dlslab.compress.share import share_weights
    from dlslab.models import all_models, build_model

    name, kwargs, state = read_checkpoint(Path(args.checkpoint), args.model, args.kwargs)
    if name not in all_models():
        raise UsageError(f"unknown model {name!r}; valid: {', '.join(sorted(all_models()))}")
    try:
        original = build_model(name, **kwargs)
        original.load_state_dict(state)
    except (TypeError, RuntimeError) as exc:
        raise DataError(f"{args.checkpoint}: the weights do not fit {name} {kwargs or ''} "
                        f"({str(exc).splitlines()[0]}); pass the model's arguments with --kwargs") from None
    if not weight_layers(original):
        raise UsageError(f"{name} has no Linear or convolution layers to compress")
    model = build_model(name, **kwargs)
    model.load_state_dict(state)
    if args.sparsity:
        prune_magnitude(model, args.sparsity, scope=args.scope)
    if args.int:
        quantise_ptq(model, args.int)
    elif args.bits:
        share_weights(model, dict.fromkeys(weight_layers(model), args.bits),
                      args.bias_bits if bias_layers(model) else None)
    bake(model)
    report = pack_model(model, args.output, name=name, kwargs=kwargs, entropy=args.entropy,
                        meta={"source": Path(args.checkpoint).name, "sparsity": args.sparsity,
                              "bits": None if args.int else args.bits, "int": args.int})
    print(f"{args.output}: {report.file_bytes:,} bytes; float32 {report.dense_bytes:,} bytes; "
          f"ratio {report.ratio:.1f}x ({100 * (1 - 1 / report.ratio):.1f}% smaller)")
    inputs, labels = _probe(name, args.data, args.data_dir, args.mean, args.std)
    before, after = _outputs(original, inputs), _outputs(model, inputs)
    print(f"output SNR of the compressed model vs the original: {output_snr_db(before, after):.1f} dB")
    if labels is not None:
        acc = lambda out: (out.argmax(1) == labels).float().mean().item()  # noqa: E731
        print(f"test accuracy: original {acc(before):.4f}, compressed {acc(after):.4f}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from dlslab.compress.packed import dense_bytes, load_packed, read_packed

    state, header = read_packed(args.file)
    size = Path(args.file).stat().st_size
    dense = dense_bytes(state)
    print(f"{args.file}: model {header.get('model')}{' ' + json.dumps(header['kwargs']) if header.get('kwargs') else ''}; "
          f"{size:,} bytes, "
          f"ratio {dense / size:.1f}x vs float32 ({dense:,} bytes)")
    if header.get("structure"):
        print(f"structure: {header['structure']}")
    print(f"{'tensor':<40} {'shape':<14} {'layout':<7} {'density':>8} {'values':>7} {'bytes':>9}")
    for rec in header["tensors"]:
        t = state[rec["name"]]
        values = rec.get("codebook", {}).get("size", "raw")
        density = (t != 0).float().mean().item() if t.numel() else 0.0
        print(f"{rec['name']:<40} {'x'.join(map(str, rec['shape'])):<14} {rec['layout']:<7} "
              f"{density:>8.2%} {values!s:>7} {sum(rec['streams']):>9,}")
    if args.data:
        model, _ = load_packed(args.file)
        inputs, labels = _probe(header["model"], args.data, args.data_dir, args.mean, args.std)
        out = _outputs(model, inputs)
        print(f"test accuracy on {args.data}: {(out.argmax(1) == labels).float().mean().item():.4f}")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from dlslab import atomic
    from dlslab.compress.packed import read_packed

    state, header = read_packed(args.file)
    out = {"model": header.get("model"), "kwargs": header.get("kwargs", {}),
           "structure": header.get("structure", {}), "state_dict": state}
    atomic.write_with(Path(args.output), lambda f: torch.save(out, f))
    print(f"{args.output}: {len(state)} tensors of {header.get('model')} (load with safe_torch_load)")
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="image dataset to measure accuracy on (mnist, fashion-mnist, cifar10)")
    p.add_argument("--data-dir", help="look for datasets here first")
    p.add_argument("--mean", type=float, default=0.0, help="inputs are (pixels/255 - mean) / std (default 0)")
    p.add_argument("--std", type=float, default=1.0, help="see --mean (default 1; MNIST studies use 0.3081)")


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("compress", help="compress a trained model into a packed file; inspect or unpack one")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("pack", help="prune, share or quantise, and write a packed file")
    q.add_argument("checkpoint", help="a state dict or a dlslab checkpoint (.pt)")
    q.add_argument("-o", "--output", required=True, help="the packed file to write (.dlz)")
    q.add_argument("--model", help="registered model name (needed when the checkpoint holds weights only)")
    q.add_argument("--kwargs", help='the model\'s arguments as JSON, e.g. \'{"hidden": [300, 100]}\'')
    q.add_argument("--sparsity", type=float, default=0.0, help="fraction of weights to prune (default 0)")
    q.add_argument("--scope", choices=("layer", "global"), default="layer", help="per-layer or global threshold")
    q.add_argument("--bits", type=int, default=5, help="k-means weight sharing bits (0 = none; default 5)")
    q.add_argument("--bias-bits", type=int, default=8, help="k-means bits for biases (default 8)")
    q.add_argument("--int", type=int, choices=(8, 4), help="uniform int8/int4 quantisation instead of k-means")
    q.add_argument("--entropy", choices=("huffman", "fixed"), default="huffman", help="code streams (default huffman)")
    _data_args(q)
    q.set_defaults(func=cmd_pack)

    q = sub.add_parser("info", help="what a packed file holds, tensor by tensor")
    q.add_argument("file")
    _data_args(q)
    q.set_defaults(func=cmd_info)

    q = sub.add_parser("unpack", help="write a packed file's weights as a plain checkpoint")
    q.add_argument("file")
    q.add_argument("-o", "--output", required=True, help="the .pt file to write")
    q.set_defaults(func=cmd_unpack)
