"""`dlslab compress pack/info/unpack`: packing a compress run's best pipeline with its input
normalisation, the accuracy check and its warning, and one-line exit-2 errors."""

from __future__ import annotations

import json

import pytest
import torch

import dlslab
from dlslab.cli import main
from dlslab.compress.pipeline import MNIST_MEAN, MNIST_STD
from study_runs import run_smoke


@pytest.fixture(scope="module")
def run_dir():
    return run_smoke("compress").dir


@pytest.mark.parametrize("net", ["lenet300", "lenet5"])
def test_from_run_packs_the_best_pipeline_losslessly_with_its_normalisation(run_dir, tmp_path, capsys, net) -> None:
    out = tmp_path / f"{net}.dlz"
    assert main(["compress", "pack", "--from-run", str(run_dir), "--net", net, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    rows = json.loads((run_dir / "metrics.json").read_text())["results"][net]
    chosen = next(r for r in rows if f"best {net} pipeline: {r['model']} (" in said)
    assert chosen["kind"] == "pipeline"
    model, header = dlslab.compress.load_packed(out)
    assert dlslab.compress.input_normalisation(header) == (MNIST_MEAN, MNIST_STD)
    source, _ = dlslab.compress.load_packed(run_dir / chosen["file"])
    for (k, a), (k2, b) in zip(model.state_dict().items(), source.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_check_warns_when_accuracy_falls_beyond_the_tolerance(run_dir, tmp_path, capsys, data_root) -> None:
    ckpt = run_dir / "checkpoints" / "lenet300-baseline.done.pt"
    args = ["compress", "pack", str(ckpt), "--model", "lenet300", "-o", str(tmp_path / "x.dlz"), "--check", "mnist",
            "--mean", str(MNIST_MEAN), "--std", str(MNIST_STD)]
    assert main(args + ["--sparsity", "0.95", "--bits", "1"]) == 0
    out, err = capsys.readouterr()
    assert "test accuracy on mnist: original" in out
    assert "dlslab: warning: compression costs" in err and "more than --tolerance 1" in err
    assert main(args + ["--bits", "8"]) == 0  # 8-bit sharing alone costs (almost) nothing
    assert "warning" not in capsys.readouterr().err
    assert main(["compress", "info", str(tmp_path / "x.dlz")]) == 0
    assert f"input: (pixels/255 - {MNIST_MEAN:g}) / {MNIST_STD:g}" in capsys.readouterr().out


def test_bad_input_is_exit_2_with_one_line(run_dir, tmp_path, capsys, one_line_error) -> None:
    ckpt = str(run_dir / "checkpoints" / "lenet300-baseline.done.pt")
    out = str(tmp_path / "x.dlz")
    cases = [
        (["pack", ckpt, "--model", "lenet300", "-o", out, "--kwargs", "notjson"], "--kwargs 'notjson': not valid JSON"),
        (["pack", ckpt, "--model", "lenet300", "-o", out, "--kwargs", "[1]"], "a JSON object of the model's arguments"),
        (["pack", str(tmp_path / "none.pt"), "--model", "lenet300", "-o", out], "no such checkpoint file"),
        (["pack", ckpt, "--model", "lenet300", "-o", str(tmp_path / "no" / "x.dlz")], "create it first"),
        (["pack", ckpt, "--model", "lenet300", "-o", out, "--sparsity", "1.5"], "--sparsity 1.5"),
        (["pack", str(run_dir / "checkpoints" / "lenet300-prune2.done.pt"), "--model", "lenet5", "-o", out],
         "use --from-run RUN --net NET"),
        (["pack", "--from-run", str(run_dir), "-o", out], "needs --net"),
        (["pack", "--from-run", str(tmp_path), "--net", "lenet5", "-o", out], "not a finished run folder"),
        (["pack", "-o", out], "give a CHECKPOINT"),
        (["info", ckpt], "packed"),
    ]
    for args, needle in cases:
        assert main(["compress", *args]) == 2, args
        one_line_error(needle)


def test_a_malformed_normalisation_is_a_clear_error(tmp_path, capsys, one_line_error) -> None:
    from dlslab.compress.packed import NORMALISATION_KEY, pack_model
    from dlslab.models import build_model

    pack_model(build_model("lenet300"), tmp_path / "bad.dlz", name="lenet300",
               meta={NORMALISATION_KEY: {"mean": 0.1, "std": -1}})
    assert main(["compress", "info", str(tmp_path / "bad.dlz")]) == 2
    one_line_error(f"meta.{NORMALISATION_KEY} must be")
