"""What every study promises (docs/architecture.md, "How to write a study"): one test over
the study table, as the model registry has one test over every model."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest
from study_runs import run_smoke

from dlslab import cli, config
from dlslab.catalog import STUDIES
from dlslab.errors import ConfigError

STUDIES_DIR = Path(__file__).resolve().parents[2] / "src" / "dlslab" / "studies"
NAMES = list(STUDIES)


def _leaves(tree: object, path: str = ""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    else:
        yield path, tree


@pytest.mark.parametrize("name", NAMES)
def test_headline_is_nested_numbers_and_the_run_answers(name, data_root) -> None:
    metrics = run_smoke(name).metrics
    head = metrics["headline"]
    assert isinstance(head, dict) and head
    for path, value in _leaves(head):
        assert value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)), (path, value)
    for key in _flat_keys(head):
        assert "." not in key, f"{name}: flat dotted key {key!r} in the headline; nest it"
    assert isinstance(metrics.get("answer"), str) and len(metrics["answer"]) > 20, f"{name} records no answer"


def _flat_keys(tree: dict) -> list[str]:
    keys = []
    for k, v in tree.items():
        keys.append(k)
        if isinstance(v, dict):
            keys.extend(_flat_keys(v))
    return keys


@pytest.mark.parametrize("name", NAMES)
def test_study_is_a_recipe(name) -> None:
    module = STUDIES[name].load()
    source = (STUDIES_DIR / f"{STUDIES[name].module}.py").read_text()
    assert len(source.splitlines()) <= 360, f"{name}: {len(source.splitlines())} lines; move library code down"
    assert ".step(" not in source, f"{name} steps an optimizer itself; training loops live in train/"
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in imports:
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        assert not any(n.startswith("dlslab.studies") for n in names), f"{name} imports another study"
    assert callable(getattr(module, "check", None)), f"{name} has no check(cfg)"
    for preset in module.PRESETS:
        module.check(config.resolve(module.Config, module.PRESETS, preset))


SIGNED = {"seed", "corpus_seed"}  # fields where a negative number is meaningful (plus any *_db level)


@pytest.mark.parametrize("name", NAMES)
def test_every_numeric_field_refuses_a_negative_value(name) -> None:
    """`--set train_size=-5` or `lr=-1` must fail at plan time with the field's name, not train
    at chance or end in a torch traceback."""
    module = STUDIES[name].load()
    hints = typing.get_type_hints(module.Config)
    base = config.resolve(module.Config, module.PRESETS, "smoke")
    numeric = [f.name for f in dataclasses.fields(module.Config)
               if hints[f.name] in (int, float) and f.name not in SIGNED and not f.name.endswith("_db")]
    assert numeric
    for key in numeric:
        with pytest.raises(ConfigError, match=key):
            module.check(dataclasses.replace(base, **{key: hints[key](-1)}))


@pytest.mark.parametrize("name", NAMES)
def test_choice_fields_are_typed_as_choices(name) -> None:
    """A field whose comment lists its choices must be a Literal, so a typo fails at plan time.
    (Patterns such as layer-embeddings' ACTIVATION-DEPTH network names are checked by check().)"""
    cls = STUDIES[name].load().Config
    patterns = {"layer-embeddings": {"networks"}}.get(name, set())
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
        if inner is str and f.name not in patterns and f.name in {"policies", "strategies", "models", "losses", "methods", "archs",
                                        "networks", "tables", "datasets", "dataset", "optimizers"}:
            pytest.fail(f"{name}.{f.name} is a plain str; make it a Literal of its choices")


def test_run_all_refuses_a_bad_value_before_anything_trains(monkeypatch, tmp_path, capsys) -> None:
    module = STUDIES["gan-impute"].load()
    bad = next(f.name for f in dataclasses.fields(module.Config)
               if typing.get_type_hints(module.Config)[f.name] is int and f.name != "seed")
    monkeypatch.setitem(module.PRESETS, "smoke", {**module.PRESETS["smoke"], bad: -5})
    assert cli.main(["run", "all", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert bad in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing may run before every config is checked"
