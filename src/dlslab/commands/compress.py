"""`dlslab compress`: compress a trained model into a packed file, inspect one, or unpack it.

    dlslab compress pack CHECKPOINT -o MODEL.dlz [--model NAME] [--sparsity 0.9] [--bits 5] [--check mnist]
    dlslab compress pack --from-run RUN --net lenet300 -o MODEL.dlz [--check mnist]
    dlslab compress info MODEL.dlz [--check mnist]
    dlslab compress unpack MODEL.dlz -o STATE.pt

`pack` works after training, without the training data: magnitude pruning, then k-means
weight sharing (`--bits`) or uniform quantisation (`--int 8|4`), then the packed format.
It prints the file's size and ratio, and how far the compressed model's outputs are from
the original's (as an SNR in dB, on test images with `--data`, else on the model's example
input), so any registered model, classifier or not, can be judged. With `--data` it also
prints both models' test accuracy, and warns when compression costs more than `--tolerance`
points. Retraining (which recovers most of the loss) needs the model's own loss and data, so
it is left to the study: `--from-run` packs the best pipeline file of a `dlslab run compress`
folder (the largest ratio within the study's tolerance). The input normalisation is stored
in the packed file, so `info --check` and `load_packed` users need not know it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from dlslab.errors import BadFileError, DataError, UsageError

NETS = ("lenet300", "lenet5")  # the networks of `dlslab run compress`


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """`--kwargs`: a JSON object of the model's arguments."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--kwargs {text!r}: not valid JSON ({exc}); give the model's arguments as a JSON "
                         """object, e.g. '{"hidden": [300, 100]}'""") from None
    if not isinstance(value, dict):
        raise UsageError(f"--kwargs {text!r}: a JSON object of the model's arguments is needed, not "
                         f"{type(value).__name__}")
    return value


def read_checkpoint(path: Path, model: str | None, kwargs: str | None) -> tuple[str, dict[str, Any], dict]:
    """(model name, its arguments, state dict) from a checkpoint: a plain state dict, a
    training checkpoint (`{"model": state_dict, ...}`) or a study's model file
    (`{"model": name, "kwargs": ..., "state_dict": ...}`)."""
    import torch

    from dlslab.runs import safe_torch_load

    extra = parse_kwargs(kwargs)
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    data = safe_torch_load(path)
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


def output_snr_db(reference: Any, other: Any) -> float:
    """10 log10(|reference|^2 / |reference - other|^2); inf when they are equal."""
    noise = (reference - other).double().pow(2).sum().item()
    signal = reference.double().pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)


def _probe(name: str, data: str | None, data_dir: str | None, mean: float, std: float) -> tuple[Any, Any]:
    """Inputs to compare models on, and labels when they come from a dataset."""
    from dlslab.models import all_models

    if data is None:
        example = all_models()[name].example()
        return example, None
    from dlslab.data.images import load_images

    d = load_images(data, data_dir)
    return (d.test_x.float() / 255 - mean) / std, d.test_y


def _outputs(model: Any, inputs: Any) -> Any:
    import torch

    from dlslab.train.engine import predict

    model.eval()
    with torch.no_grad():
        if isinstance(inputs, torch.Tensor) and len(inputs) > 256:
            return predict(model, inputs, 1000)
        out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    return out[0] if isinstance(out, tuple) else out


def _accuracy(outputs: Any, labels: Any) -> float:
    return (outputs.argmax(1) == labels).float().mean().item()


def _compare(args: argparse.Namespace, name: str, before: Any, after: Any, norm: tuple[float, float]) -> None:
    """Print how far `after` (compressed) is from `before` (uncompressed): output SNR, and with
    `--check DATASET` both test accuracies, warning when the drop exceeds `--tolerance`."""
    inputs, labels = _probe(name, args.data, args.data_dir, *norm)
    out_before, out_after = _outputs(before, inputs), _outputs(after, inputs)
    print(f"output SNR of the compressed model vs the original: {output_snr_db(out_before, out_after):.1f} dB")
    if labels is None:
        return
    acc_before, acc_after = _accuracy(out_before, labels), _accuracy(out_after, labels)
    print(f"test accuracy on {args.data}: original {acc_before:.4f}, compressed {acc_after:.4f}")
    drop = 100 * (acc_before - acc_after)
    if drop > args.tolerance:
        print(f"dlslab: warning: compression costs {drop:.1f} points of accuracy ({100 * acc_before:.1f}% -> "
              f"{100 * acc_after:.1f}%), more than --tolerance {args.tolerance:g}: prune less, keep more bits, "
              "or retrain while compressing (`dlslab run compress`, then pack with --from-run)", file=sys.stderr)


def best_pipeline(run_dir: Path, net: str) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(the best pipeline row of a compress run's results for `net`, its baseline row, the
    study's tolerance in points): the largest ratio whose error is within the tolerance, or
    when none is, the smallest error."""
    from dlslab import config

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        study = config.load_yaml(run_dir / "config.yaml")
    except FileNotFoundError:
        raise UsageError(f"--from-run {run_dir}: not a finished run folder (no metrics.json/config.yaml); give "
                         "the folder printed as `run: PATH` by `dlslab run compress`") from None
    except ValueError as exc:
        raise BadFileError(f"{run_dir}/metrics.json: not valid JSON ({exc})") from None
    if study.get("study") != "compress":
        raise UsageError(f"--from-run {run_dir}: a run of {study.get('study')!r}, not of 'compress'")
    rows = metrics.get("results", {}).get(net)
    if not rows:
        have = ", ".join(metrics.get("results", {})) or "none"
        raise UsageError(f"--from-run {run_dir}: the run compressed no {net} (it has: {have})")
    tolerance = float(study["config"].get("loss_tolerance_pp", 0.0))
    pipelines = [r for r in rows if r.get("kind") == "pipeline"]
    within = [r for r in pipelines if r["change_pp"] <= tolerance]
    best = (max(within, key=lambda r: r["ratio"]) if within
            else min(pipelines, key=lambda r: (r["change_pp"], -r["ratio"])))
    baseline = next(r for r in rows if r["ratio"] == min(x["ratio"] for x in rows))
    return best, baseline, tolerance


def cmd_pack_run(args: argparse.Namespace) -> None:
    from dlslab.compress.packed import dense_bytes, load_packed, pack_model
    from dlslab.compress.pipeline import MNIST_MEAN, MNIST_STD

    run_dir = Path(args.from_run)
    best, baseline, tolerance = best_pipeline(run_dir, args.net)
    model, header = load_packed(run_dir / best["file"])
    original, _ = load_packed(run_dir / baseline["file"])
    print(f"{run_dir}: best {args.net} pipeline: {best['model']} ({best['ratio']}x, "
          f"{best['change_pp']:+.2f} points of test error, tolerance {tolerance:g})")
    report = pack_model(model, args.output, name=header["model"], kwargs=header["kwargs"],
                        structure=header["structure"], entropy=args.entropy,
                        reference_bytes=dense_bytes(original.state_dict()),
                        meta={**header["meta"], "source": f"{run_dir.name}/{best['file']}"},
                        normalisation=(MNIST_MEAN, MNIST_STD))
    print(f"{args.output}: {report.file_bytes:,} bytes; float32 {report.dense_bytes:,} bytes; "
          f"ratio {report.ratio:.1f}x ({100 * (1 - 1 / report.ratio):.1f}% smaller)")
    _compare(args, header["model"], original, model, (MNIST_MEAN, MNIST_STD))


def cmd_pack(args: argparse.Namespace) -> int:
    from dlslab.commands import writable_output

    if args.tolerance < 0:
        raise UsageError(f"--tolerance {args.tolerance}: must be >= 0 (points of accuracy)")
    if args.from_run:
        if args.checkpoint or not args.net:
            raise UsageError("--from-run RUN needs --net lenet300|lenet5 and no CHECKPOINT")
        writable_output(args.output)
        cmd_pack_run(args)
        return 0
    if not args.checkpoint:
        raise UsageError("give a CHECKPOINT to pack, or --from-run RUN --net lenet300|lenet5")
    if not 0 <= args.sparsity < 1:
        raise UsageError(f"--sparsity {args.sparsity}: must be a fraction in [0, 1)")
    if not 0 <= args.bits <= 16 or not 1 <= args.bias_bits <= 16:
        raise UsageError(f"--bits {args.bits} / --bias-bits {args.bias_bits}: use 0 (none) to 16 / 1 to 16")
    writable_output(args.output)
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
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{args.checkpoint}: the weights do not fit {name} {kwargs or ''}".rstrip()
                        + f" ({str(exc).splitlines()[0][:200]}); give the arguments it was built with as --kwargs "
                        "JSON, or for a `dlslab run compress` folder use --from-run RUN --net NET") from None
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
                              "bits": None if args.int else args.bits, "int": args.int},
                        normalisation=(args.mean, args.std))
    print(f"{args.output}: {report.file_bytes:,} bytes; float32 {report.dense_bytes:,} bytes; "
          f"ratio {report.ratio:.1f}x ({100 * (1 - 1 / report.ratio):.1f}% smaller)")
    _compare(args, name, original, model, (args.mean, args.std))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from dlslab.compress.packed import dense_bytes, input_normalisation, load_packed, read_packed

    state, header = read_packed(args.file)
    size = Path(args.file).stat().st_size
    dense = dense_bytes(state)
    print(f"{args.file}: model {header.get('model')}{' ' + json.dumps(header['kwargs']) if header.get('kwargs') else ''}; "
          f"{size:,} bytes, "
          f"ratio {dense / size:.1f}x vs float32 ({dense:,} bytes)")
    if header.get("structure"):
        print(f"structure: {header['structure']}")
    norm = input_normalisation(header, args.file)
    if norm:
        print(f"input: (pixels/255 - {norm[0]:g}) / {norm[1]:g}")
    print(f"{'tensor':<40} {'shape':<14} {'layout':<7} {'density':>8} {'values':>7} {'bytes':>9}")
    for rec in header["tensors"]:
        t = state[rec["name"]]
        values = rec.get("codebook", {}).get("size", "raw")
        density = (t != 0).float().mean().item() if t.numel() else 0.0
        print(f"{rec['name']:<40} {'x'.join(map(str, rec['shape'])):<14} {rec['layout']:<7} "
              f"{density:>8.2%} {values!s:>7} {sum(rec['streams']):>9,}")
    if args.data:
        model, _ = load_packed(args.file)
        inputs, labels = _probe(header["model"], args.data, args.data_dir, *(norm or (args.mean, args.std)))
        print(f"test accuracy on {args.data}: {_accuracy(_outputs(model, inputs), labels):.4f}")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from dlslab import atomic
    from dlslab.commands import writable_output
    from dlslab.compress.packed import read_packed

    writable_output(args.output)
    state, header = read_packed(args.file)
    out = {"model": header.get("model"), "kwargs": header.get("kwargs", {}),
           "structure": header.get("structure", {}), "state_dict": state}
    atomic.torch_save(Path(args.output), out)
    print(f"{args.output}: {len(state)} tensors of {header.get('model')} (load with safe_torch_load)")
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", "--data", dest="data", metavar="DATASET",
                   help="measure test accuracy before and after on this image dataset (mnist, fashion-mnist, cifar10)")
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="warn when compression costs more than this many points of accuracy (default 1)")
    p.add_argument("--data-dir", help="look for datasets here first")
    p.add_argument("--mean", type=float, default=0.0, help="inputs are (pixels/255 - mean) / std (default 0; "
                   "stored in the packed file; a file that stores its own ignores these)")
    p.add_argument("--std", type=float, default=1.0, help="see --mean (default 1; MNIST studies use 0.3081)")


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("compress", help="compress a trained model into a packed file; inspect or unpack one")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("pack", help="prune, share or quantise, and write a packed file")
    q.add_argument("checkpoint", nargs="?", help="a state dict or a dlslab checkpoint (.pt)")
    q.add_argument("--from-run", metavar="RUN", help="instead: pack the best pipeline file of a `dlslab run "
                   "compress` folder (largest ratio within the study's tolerance)")
    q.add_argument("--net", choices=NETS, help="with --from-run: which network")
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
