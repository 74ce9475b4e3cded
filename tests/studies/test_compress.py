"""The compress study (smoke preset) and `dlslab compress` on a trained model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from study_runs import run_smoke

from dlslab import runner
from dlslab.cli import main
from dlslab.compress.layers import weight_layers
from dlslab.compress.packed import load_packed, read_packed
from dlslab.errors import ConfigError
from dlslab.runs import safe_torch_load
from dlslab.compress.pipeline import MNIST_MEAN, MNIST_STD, error_percent, load_mnist


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    return run_smoke("compress").dir


def _table(run_dir, title_start):
    items = json.loads((run_dir / "report.json").read_text())["items"]
    return next(i for i in items if i["kind"] == "table" and i["title"].startswith(title_start))


def test_sizes_in_the_report_are_the_files_on_disk_and_ratios_follow(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    for net, dense in (("lenet300", 266_610 * 4), ("lenet5", 431_080 * 4)):
        rows = metrics["results"][net]
        assert len(rows) >= 15
        for row in rows:
            size = (smoke_run / row["file"]).stat().st_size
            assert size == row["bytes"], row["model"]
            assert abs(row["ratio"] - dense / size) < 0.01, row["model"]
        table = _table(smoke_run, {"lenet300": "LeNet-300-100: every", "lenet5": "LeNet-5: every"}[net])
        assert [r["bytes"] for r in table["rows"]] == [r["bytes"] for r in rows]


def test_deep_compression_is_large_and_its_error_is_measured_after_loading(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    head = metrics["headline"]
    cfg = runner.plan_study("compress", "smoke").cfg
    data = load_mnist(None, "cpu", train_subset=cfg.train_subset, test_subset=cfg.test_subset, seed=cfg.seed)
    for net in ("lenet300", "lenet5"):
        assert head["compression_ratio"][net] > 25
        row = next(r for r in metrics["results"][net] if r["model"].startswith("deep compression"))
        fixed = next(r for r in metrics["results"][net] if "fixed-width" in r["model"])
        assert row["bytes"] < fixed["bytes"]  # Huffman pays off
        model, header = load_packed(smoke_run / row["file"])
        assert header["model"] == net
        assert abs(error_percent(model, data) - row["test_error_%"]) < 0.01
        assert abs(head["compressed_error_pct"][net] - row["test_error_%"]) < 0.01
        # the model learned something even at smoke size (chance is 90% error)
        assert head["baseline_error_pct"][net] < 40
    kinds = {i["kind"] for i in json.loads((smoke_run / "report.json").read_text())["items"]}
    assert {"table", "image", "text"} <= kinds
    layers = _table(smoke_run, "LeNet-5: deep compression, per tensor")["rows"]
    fc1 = next(r for r in layers if r["tensor"] == "fc1.weight")
    assert fc1["layout"] == "sparse" and abs(fc1["density_%"] - 100 * cfg.lenet5_density[2]) < 0.1


def test_compress_command_packs_inspects_and_unpacks_a_trained_model(smoke_run, tmp_path, capsys):
    ckpt = smoke_run / "checkpoints" / "lenet300-baseline.done.pt"
    out = tmp_path / "m.dlz"
    args = ["compress", "pack", str(ckpt), "-o", str(out), "--model", "lenet300", "--sparsity", "0.5",
            "--bits", "6", "--data", "mnist", "--mean", str(MNIST_MEAN), "--std", str(MNIST_STD)]
    assert main(args) == 0
    text = capsys.readouterr().out
    ratio = float(re.search(r"ratio ([\d.]+)x", text).group(1))
    assert ratio > 8 and f"{out.stat().st_size:,} bytes" in text
    assert float(re.search(r"SNR .*: ([\d.]+) dB", text).group(1)) > 10
    original, compressed = map(float, re.search(r"original ([\d.]+), compressed ([\d.]+)", text).groups())
    assert compressed > original - 0.02
    assert main(["compress", "info", str(out)]) == 0
    assert "fc1.weight" in capsys.readouterr().out
    assert main(["compress", "unpack", str(out), "-o", str(tmp_path / "state.pt")]) == 0
    state, _ = read_packed(out)
    unpacked = safe_torch_load(tmp_path / "state.pt")
    assert all(torch.equal(unpacked["state_dict"][k], v) for k, v in state.items())
    bad = tmp_path / "bad.dlz"
    bad.write_bytes(out.read_bytes()[:-7])
    assert main(["compress", "info", str(bad)]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize("net", ["lenet300", "lenet5"])
def test_prune_then_qat_keeps_the_pruned_weights_at_zero_on_its_grid(smoke_run, net):
    cfg = runner.plan_study("compress", "smoke").cfg
    rows = json.loads((smoke_run / "metrics.json").read_text())["results"][net]
    r = getattr(cfg, f"{net}_qat_round")
    qat = next(row for row in rows
               if row["model"].startswith(f"prune round {r} + int{cfg.qat_bits} quantisation-aware"))
    assert (smoke_run / qat["file"]).stat().st_size == qat["bytes"]
    model, _ = load_packed(smoke_run / qat["file"])
    for (name, layer), density in zip(weight_layers(model).items(), getattr(cfg, f"{net}_density")):
        kept = (layer.weight != 0).float().mean().item()
        assert kept <= density + 0.01 or r < cfg.prune_rounds, name  # round r's sparsity, not undone by QAT
        assert kept < 0.95, name  # still sparse
        assert len(torch.unique(layer.weight)) <= 2 ** cfg.qat_bits - 1, name  # on the qat_bits grid
    # the stage trains `qat_epochs` epochs (here more than the other fine-tuning stages)
    assert cfg.qat_epochs != cfg.technique_epochs
    ckpt = smoke_run / "checkpoints"
    assert len(safe_torch_load(ckpt / f"{net}-prune{r}-qat{cfg.qat_bits}.done.pt")["history"]["epochs"]) == cfg.qat_epochs
    assert len(safe_torch_load(ckpt / f"{net}-qat4.done.pt")["history"]["epochs"]) == cfg.technique_epochs


def test_lenet5_takes_its_own_qat_widths_and_shared_biases(data_root, tmp_path):
    """`lenet5_qat_bits` (per layer) and `lenet5_qat_bias_bits` reach the study's QAT stage:
    the file it measures has ternary fc layers, a 3-bit conv1, 2**4 bias values at most."""
    overrides = {"networks": ["lenet5"], "lenet5_qat_bits": [3, 3, 2, 2], "lenet5_qat_bias_bits": 4}
    run_dir = run_smoke("compress", overrides, out=tmp_path).dir
    cfg = runner.plan_study("compress", "smoke", overrides).cfg
    r = cfg.lenet5_qat_round
    row = next(row for row in json.loads((run_dir / "metrics.json").read_text())["results"]["lenet5"]
               if row["model"] == f"prune round {r} + int3/3/2/2 quantisation-aware + 4-bit k-means biases")
    model, _ = load_packed(run_dir / row["file"])
    for (name, layer), bits in zip(weight_layers(model).items(), cfg.lenet5_qat_bits):
        assert len(torch.unique(layer.weight)) <= 2 ** bits - 1, name
        assert len(torch.unique(layer.bias)) <= 16, name
    assert len(torch.unique(model.fc1.weight)) == 3  # ternary: -s, 0, +s
    assert (run_dir / "checkpoints" / f"lenet5-prune{r}-qat3-3-2-2-b4.done.pt").exists()


def test_the_findings_say_which_network_distilled_in_its_pruning_rounds(smoke_run):
    cfg = runner.plan_study("compress", "smoke").cfg
    assert cfg.lenet300_prune_distill > 0 and cfg.lenet5_prune_distill == 0
    items = json.loads((smoke_run / "report.json").read_text())["items"]
    findings = next(i for i in items if i["kind"] == "text" and i["title"] == "Findings")["text"]
    lenet300, lenet5 = findings.split("\n\n")
    assert lenet300.startswith("LeNet-300-100") and "distillation from the uncompressed model" in lenet300
    assert lenet5.startswith("LeNet-5") and "distillation" not in lenet5


def test_the_qat_script_from_a_run_repeats_the_studys_own_file(smoke_run):
    """scripts/compress_qat_round.py --from-run trains the stage from the run's saved models,
    on the run's data, with its settings (LeNet-300-100 distils in its pruning rounds and its
    QAT stage): its file is the study's, to the byte and to the test error."""
    cfg = runner.plan_study("compress", "smoke").cfg
    r, alpha = cfg.lenet300_qat_round, cfg.lenet300_distill
    assert alpha > 0 and cfg.lenet300_prune_distill > 0
    row = next(row for row in json.loads((smoke_run / "metrics.json").read_text())["results"]["lenet300"]
               if row["model"] == f"prune round {r} + int{cfg.qat_bits} quantisation-aware + distillation")
    script = Path(__file__).resolve().parents[2] / "scripts" / "compress_qat_round.py"
    proc = subprocess.run([sys.executable, str(script), "--from-run", str(smoke_run), "--net", "lenet300",
                           "--rounds", str(r), "--distill", str(alpha), "--qat-epochs", str(cfg.qat_epochs),
                           "--bits", str(cfg.qat_bits)],
                          check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"([\d,]+) bytes, [\d.]+x, test ([\d.]+)%", proc.stdout)
    assert found, proc.stdout[-2000:]
    assert int(found[1].replace(",", "")) == row["bytes"]
    assert float(found[2]) == pytest.approx(row["test_error_%"], abs=1e-9)


@pytest.mark.parametrize("bad", [{"qat_epochs": 0}, {"lenet5_qat_round": 9}, {"qat_bits": 1}, {"qat_bits": 9},
                                 {"networks": ["lenet300", "resnet"]}, {"networks": []}, {"lr": 0.0},
                                 {"structured_keep": 1.5}, {"lenet300_density": [0.1, 0.1]}, {"train_subset": -1},
                                 {"lenet5_qat_bits": [2, 2, 2]}, {"lenet300_qat_bits": [3, 1, 3]},
                                 {"lenet5_qat_bias_bits": 17}, {"lenet300_qat_bias_bits": -1}])
def test_bad_settings_fail_when_the_run_is_planned(bad):
    with pytest.raises(ConfigError):
        runner.plan_study("compress", "smoke", bad)
