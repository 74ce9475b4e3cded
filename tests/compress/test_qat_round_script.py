"""scripts/compress_qat_round.py: the choice over validation splits and its cache."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compress_qat_round.py"
SMALL = ["--set", "train_subset=3000", "--set", "test_subset=1000", "--set", "epochs=2",
         "--set", "prune_rounds=2", "--set", "prune_epochs=1", "--set", "lenet5_qat_round=2"]  # full: round 5 of 5
# "round 2 + int3 QAT 1 epochs, biases float32, distill 0.9: 23,139 bytes, 46.1x, validation 28.20%, test 29.20% [...]"
RESULT = re.compile(r"round (\d) \+ int([\d/]+) QAT (\d+) epochs, biases (\w+), distill ([\d.]+): ([\d,]+) bytes, "
                    r"([\d.]+)x, validation ([\d.]+)%, test ([\d.]+)%")
BASELINE = re.compile(r"baseline: validation ([\d.]+)%")


def run_script(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--net", "lenet300", *SMALL, *args],
                          check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_choice_follows_the_rule_over_splits_and_the_cache_repeats_every_figure(data_root, tmp_path):
    common = ["--rounds", "2", "--bits", "3", "4", "--distill", "0", "0.9", "--qat-epochs", "1", "--splits", "0", "1",
              "--cache", str(tmp_path / "cache")]
    first = run_script(*common, "--min-reduction", "50")
    results = RESULT.findall(first)
    baselines = [float(b) for b in BASELINE.findall(first)]
    assert len(results) == 8 and len(baselines) == 2  # 2 splits x 2 bit widths x 2 distillation weights
    assert "[lenet300-baseline] epoch" in first  # trained here

    # the rule, recomputed from the per-split lines: lowest mean change among files >= 50%
    # smaller, then the fewest bytes
    scores: dict[tuple, list[float]] = {}
    for i, (_, bits, epochs, _, alpha, nbytes, ratio, val, _) in enumerate(results):
        assert float(ratio) >= 2  # every candidate is eligible at 50%
        change, size = float(val) - baselines[i // 4], int(nbytes.replace(",", ""))
        key = (bits, epochs, float(alpha))
        scores[key] = [a + b for a, b in zip(scores.get(key, [0, 0]), (change, size))]
    best = min(scores, key=lambda k: tuple(scores[k]))
    chosen = re.search(r"chosen: round 2, int(\d), biases float32, (\d+) QAT epochs, distill ([\d.]+)", first)
    assert chosen and (chosen[1], chosen[2], float(chosen[3])) == best

    # a second call reuses the splits' baselines and pruning rounds: the same files, to the byte
    again = run_script(*common, "--min-reduction", "99.9")
    assert "[lenet300-baseline] epoch" not in again and "[lenet300-prune1] epoch" not in again
    assert RESULT.findall(again) == results
    assert "no candidate is 99.9% smaller on every split" in again
    assert len(list((tmp_path / "cache").iterdir())) == 4  # per split: the baseline, the pruning rounds


def test_an_unknown_setting_is_a_one_line_error_before_any_data_loads(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--set", "prune_round=8"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "prune_round" in proc.stderr and "prune_rounds" in proc.stderr  # names the key and the valid ones
    assert "Traceback" not in proc.stderr


def test_per_layer_widths_and_shared_biases_are_settings_of_the_script(data_root, tmp_path):
    """`--bits 3,2,2` trains LeNet-300-100's fc1 at 3 bits and the rest ternary; `--bias-bits 4`
    shares the biases: both appear in the result lines, and shared biases make a smaller file."""
    out = run_script("--rounds", "2", "--bits", "2", "3,2,2", "--bias-bits", "0", "4", "--distill", "0",
                     "--qat-epochs", "1", "--splits", "0", "--min-reduction", "50", "--show-tensors")
    results = {(bits, bias): int(nbytes.replace(",", "")) for _, bits, _, bias, _, nbytes, *_ in RESULT.findall(out)}
    assert set(results) == {("2", "float32"), ("2", "4"), ("3/2/2", "float32"), ("3/2/2", "4")}
    for bits in ("2", "3/2/2"):
        assert results[(bits, "4")] < results[(bits, "float32")]
    assert "fc1.bias" in out and "bits/index" in out  # --show-tensors: bytes per tensor
