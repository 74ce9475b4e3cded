"""The Python API: `dlslab.run`, `dlslab.load_run`, and a cheap `import dlslab`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dlslab
import toy_cli
from dlslab.catalog import STUDIES
from dlslab.errors import ConfigError, UsageError


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlslab.studies.toy", toy_cli.toy_study)
    monkeypatch.setitem(STUDIES, "toy", toy_cli.StudyInfo(99, "toy", "toy", "toy"))


def test_run_returns_the_headline_and_load_run_reads_it_back(toy, tmp_path) -> None:
    result = dlslab.run("toy", preset="smoke", set={"lr": 0.2}, out=tmp_path)
    metrics = json.loads((result.dir / "metrics.json").read_text())
    assert result.status == "finished" and result.headline == metrics["headline"]
    assert result.config["lr"] == 0.2 and result.report.is_file()
    assert result.answer.startswith("The network reaches")
    again = dlslab.load_run(result.dir)
    assert again.headline == result.headline and again.study == "toy"
    assert dlslab.run("toy", preset="smoke", set={"lr": 0.2}, out=tmp_path).status == "reused"


def test_bad_input_raises_the_cli_errors(toy, tmp_path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        dlslab.run("toy", preset="smoke", set={"epoch": 2}, out=tmp_path)
    with pytest.raises(UsageError, match="unknown study"):
        dlslab.run("nosuch", out=tmp_path)
    with pytest.raises(UsageError, match="not a finished run folder"):
        dlslab.load_run(tmp_path)


def test_import_dlslab_does_not_import_torch() -> None:
    code = "import sys, dlslab; dlslab.__version__; print('torch' in sys.modules, sorted(dir(dlslab)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False") and "load_run" in out


def test_new_api_names_are_listed_and_stay_lazy() -> None:
    code = ("import sys, dlslab, dlslab.compress; dlslab.compress.__doc__; "
            "print('torch' in sys.modules, sorted(dir(dlslab)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False")
    for name in ("Denoiser", "SpeakerEncoder", "Imputer", "compress"):
        assert f"'{name}'" in out


def test_denoiser_from_a_smoke_run_raises_snr_at_another_rate() -> None:
    import numpy as np

    from dlslab.audio.io import read_audio, resample
    from dlslab.audio.metrics import snr_db
    from study_runs import run_smoke

    run_dir = run_smoke("denoise").dir
    noisy, rate = read_audio(run_dir / "audio" / "test-0000-noisy.wav")
    clean, _ = read_audio(run_dir / "audio" / "test-0000-clean.wav")
    den = dlslab.Denoiser.from_run(run_dir)
    out = den.denoise(resample(noisy, rate, 22050), 22050)  # any rate: resampled to the model's and back
    assert out.dtype == np.float32 and len(out) == len(resample(noisy, rate, 22050))
    back = resample(out, 22050, rate)[: len(clean)]
    assert snr_db(clean, back) > snr_db(clean, noisy) + 1.0


def test_speaker_encoder_from_a_smoke_run_embeds_and_verifies(tmp_path) -> None:
    import numpy as np

    from study_runs import run_smoke

    enc = dlslab.SpeakerEncoder.from_run(run_smoke("siamese").dir)
    t = np.arange(16000) / 16000
    a = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    e = enc.embed(a, 16000)
    assert e.ndim == 1 and abs(np.linalg.norm(e) - 1) < 1e-5
    same = enc.verify((a, 16000), (a, 16000))
    assert abs(same.score - 1) < 1e-5 and same.same and -1 <= same.threshold <= 1


def test_imputer_has_fit_transform() -> None:
    import numpy as np

    x = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 6.0], [np.nan, 8.0]])
    imp = dlslab.Imputer(method="mean")
    filled = imp.fit_transform(x)
    assert filled[1, 1] == pytest.approx(16 / 3) and filled[3, 0] == pytest.approx(2.0) and imp.method_ == "mean"


def test_load_packed_from_a_compress_smoke_run() -> None:
    import torch

    from study_runs import run_smoke

    run_dir = run_smoke("compress").dir
    model, header = dlslab.compress.load_packed(next((run_dir / "packed").glob("lenet300-*.dlz")))
    assert header["model"] == "lenet300"
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
