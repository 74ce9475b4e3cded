"""The config parser: typed --set overrides, presets, YAML round-trip, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlslab import config
from dlslab.errors import ConfigError


@dataclass
class Example(config.StudyConfig):
    epochs: int = 3  # passes over the data
    lr: float = 0.1  # learning rate
    amp: bool = False  # mixed precision
    name: str = "x"  # a label
    optimizer: Literal["sgd", "adam"] = "sgd"  # which optimizer
    widths: list[int] = field(default_factory=lambda: [8, 4])  # hidden widths
    factors: list[str] = field(default_factory=list)  # swept factors
    limit: int | None = None  # optional cap


PRESETS = {"smoke": {"epochs": 1, "widths": [2]}, "quick": {}, "full": {"epochs": 30}}


def test_overrides_parse_every_type() -> None:
    cfg = config.resolve(Example, PRESETS, "smoke", config.parse_set_args(
        ["lr=1e-3", "amp=true", "name=abc", "optimizer=adam", "widths=16,8,4", "factors=optimizer,lr",
         "limit=none", "seed=7"]))
    assert cfg.epochs == 1 and cfg.lr == 1e-3 and cfg.amp is True and cfg.name == "abc"
    assert cfg.optimizer == "adam" and cfg.widths == [16, 8, 4] and cfg.factors == ["optimizer", "lr"]
    assert cfg.limit is None and cfg.seed == 7
    assert config.apply_overrides(cfg, {"limit": "5"}).limit == 5
    assert config.apply_overrides(cfg, {"widths": ""}).widths == []
    # a list may also be written as YAML writes it in a run's config.yaml
    assert config.apply_overrides(cfg, {"widths": "[32, 16]", "factors": "[lr]"}).widths == [32, 16]
    assert config.apply_overrides(cfg, {"factors": "[lr]"}).factors == ["lr"]
    assert config.apply_overrides(cfg, {"widths": "[]"}).widths == []


@pytest.mark.parametrize("item, message", [
    ("epochs=1.5", "expected an integer"),
    ("lr=fast", "expected a number"),
    ("amp=maybe", "expected a boolean"),
    ("optimizer=rmsprop", "valid values: sgd, adam"),
    ("widths=8,x", "expected an integer"),
    ("nope=1", "valid keys: seed, epochs, lr"),
])
def test_bad_values_are_clear_errors(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.resolve(Example, PRESETS, "quick", config.parse_set_args([item]))


def test_bad_preset_and_malformed_set() -> None:
    with pytest.raises(ConfigError, match="valid presets: smoke, quick, full"):
        config.resolve(Example, PRESETS, "huge")
    with pytest.raises(ConfigError, match="expected key=value"):
        config.parse_set_args(["epochs"])
    with pytest.raises(ConfigError, match="expected int"):
        config.apply_overrides(Example(), {"epochs": True})  # a preset typo: bool is not int


def test_yaml_round_trip(tmp_path) -> None:
    cfg = config.resolve(Example, PRESETS, "smoke", {"optimizer": "adam", "widths": "3,2"})
    path = tmp_path / "config.yaml"
    path.write_text(config.dump_yaml("example", "smoke", cfg))
    data = config.load_yaml(path)
    assert data["study"] == "example" and data["preset"] == "smoke"
    assert config.apply_overrides(Example(), data["config"]) == cfg


def test_yaml_must_be_a_run_config(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected keys 'study' and 'config'"):
        config.load_yaml(bad)
    bad.write_text("study: x\nconfig: {a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        config.load_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("content, message", [
    (b"study: x\nconfig: {}\n# \xff\xfe\n", r"not a text file \(not UTF-8"),
    (b"study: [1, 2]\nconfig: {}\n", r"study must be a study name, not \[1, 2\]"),
    (b"study: x\npreset: 3\nconfig: {}\n", "preset must be a preset name or null, not 3"),
    (b"study: x\nconfig: {}\nextra: 1\n", "unknown key.* extra; a run config has study, preset and config"),
    (b"study: x\nconfig: {a: 2024-13-45}\n", "not valid YAML"),
    (b"study: x\nconfig: " + b"[" * 5000 + b"\n", "not valid YAML"),
    (b"study: x\nconfig: {}\n#" + b" " * (2 << 20) + b"\n", "too large for a run config"),
    (b"42\n", "expected keys 'study' and 'config'"),
])
def test_bad_config_files_are_config_errors_naming_the_file(tmp_path, content, message) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{path}: .*{message}"):
        config.load_yaml(path)
    with pytest.raises(ConfigError, match="is a folder"):
        config.load_yaml(tmp_path)


def test_field_help_comes_from_comments() -> None:
    docs = config.field_help(Example)
    assert docs["lr"] == "learning rate" and docs["seed"].startswith("seed for weights")
    rows = {name: (tp, default) for name, tp, default, _ in config.describe(Example)}
    assert rows["optimizer"] == ("one of 'sgd', 'adam'", "sgd")


@given(st.dictionaries(st.sampled_from(["epochs", "lr", "amp", "name", "optimizer", "widths", "limit", "bogus"]),
                       st.text(max_size=20), max_size=4))
def test_any_text_gives_a_config_or_a_config_error(overrides: dict[str, str]) -> None:
    try:
        cfg = config.apply_overrides(Example(), overrides)
    except ConfigError:
        return
    assert isinstance(cfg.epochs, int) and isinstance(cfg.lr, float) and cfg.optimizer in ("sgd", "adam")
    assert all(isinstance(w, int) for w in cfg.widths)


def test_require_names_the_first_value_out_of_range() -> None:
    @dataclass
    class C:
        epochs: int = 3
        lr: float = 0.1
        holdout: float = 0.2
        drop: list[float] = field(default_factory=lambda: [0.0, 0.5])

    rules = {"at_least_1": ("epochs",), "positive": ("lr",), "fractions": ("holdout",), "probabilities": ("drop",)}
    config.require(C(), **rules)  # all in range
    for bad, text in [({"epochs": 0}, "epochs=0: must be at least 1"), ({"lr": 0.0}, "lr=0.0: must be > 0"),
                      ({"holdout": 1.5}, "holdout=1.5: must be in (0, 1]"),
                      ({"drop": [0.1, 1.2]}, "drop=[0.1, 1.2]: must be in [0, 1]")]:
        with pytest.raises(ConfigError, match=text.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            config.require(C(**bad), **rules)
