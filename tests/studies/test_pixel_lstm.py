"""`dlslab run pixel-lstm --preset smoke`: a finished run whose numbers say the LSTM learned."""

from __future__ import annotations

import json
import math
from pathlib import Path

from dlslab import cli


def test_pixel_lstm_smoke_run(data_root, tmp_path, capsys) -> None:
    code = cli.main(["run", "pixel-lstm", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and out[-1].startswith("run: ")
    run_dir = Path(out[-1][5:])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    head = metrics["headline"]
    uniform = 784 * math.log(2)  # nats per image of a model that knows nothing
    assert head["test_nll_nats"] < 0.8 * uniform
    assert head["lower_nll_nats"] < head["test_nll_nats"]
    assert metrics["val_nll"][-1] < metrics["val_nll"][0]
    assert head["judge_acc.real"] > 0.9
    rows = {r["completion"]: r for r in metrics["completions"]}
    # the written half is closer to the real one than a blank lower half
    assert rows["lstm (mean)"]["mse"] < rows["blank (zeros)"]["mse"]
    for name in ("completions.png", "samples.png", "nll.png", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
