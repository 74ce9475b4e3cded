"""Typed study configs: presets, strict `key=value` overrides, YAML round-trip.

A study's config is a dataclass whose every field has a type, a default and a comment
(`name: type = default  # what it is`). The comment is the field's help text. Values come
from three places, applied in order: the dataclass defaults, a named preset (a dict of
Python values), and `--set key=value` strings from the command line. Unknown keys and values
of the wrong type are `ConfigError`s that list what is valid; nothing is coerced silently.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
import types
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from dlslab.errors import ConfigError, did_you_mean


@dataclasses.dataclass
class StudyConfig:
    """Fields every study shares. Study configs subclass this."""

    seed: int = 0  # seed for weights, data splits, shuffling and augmentation


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null", "~"}


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) < len(get_args(tp)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return False, tp


def parse_value(key: str, text: str, tp: Any) -> Any:
    """Parse the command-line string `text` as a value of type `tp`."""
    optional, inner = _is_optional(tp)
    if optional:
        return None if text.strip().lower() in _NONE else parse_value(key, text, inner)
    origin = get_origin(tp)
    if origin is Literal:
        for choice in get_args(tp):
            if str(choice) == text.strip():
                return choice
        raise ConfigError(
            f"{key}={text!r}: not a valid choice; valid values: {', '.join(map(str, get_args(tp)))}"
        )
    if origin in (list, tuple):
        args = get_args(tp)
        item = args[0] if args else str
        text = text.strip()
        if text.startswith("[") and text.endswith("]"):  # YAML's flow style, as in a run's config.yaml
            text = text[1:-1].strip()
        parts = [p.strip() for p in text.split(",")] if text else []
        values = [parse_value(key, p, item) for p in parts]
        return values if origin is list else tuple(values)
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key}={text!r}: expected a boolean (true/false)")
    if tp is int:
        try:
            return int(text.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected a number") from None
    if tp is str:
        return text
    raise ConfigError(f"{key}: fields of type {_type_name(tp)} cannot be set from the command line")


def check_value(key: str, value: Any, tp: Any) -> Any:
    """Check that an already-parsed value (from a preset or YAML) has type `tp`."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: None is not allowed; expected {_type_name(tp)}")
    if optional:
        return check_value(key, value, inner)
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(
            f"{key}={value!r}: not a valid choice; valid values: {', '.join(map(str, get_args(tp)))}"
        )
    if origin in (list, tuple):
        if isinstance(value, str):  # "a,b" from YAML written by hand
            return parse_value(key, value, tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r}: expected a list")
        args = get_args(tp)
        item = args[0] if args else Any
        checked = [v if item is Any else check_value(key, v, item) for v in value]
        return checked if origin is list else tuple(checked)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (bool, int, float, str):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{key}={value!r}: expected {_type_name(tp)}, got {type(value).__name__}")
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_help(cls: type) -> dict[str, str]:
    """Each field's trailing `# comment` in the class source (and its base classes)."""
    help_text: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        pending: str | None = None
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NL or tok.type == tokenize.NEWLINE:
                pending = None
            elif tok.type == tokenize.NAME and tok.start[1] == 4 and pending is None:
                pending = tok.string
            elif tok.type == tokenize.COMMENT and pending is not None:
                help_text[pending] = tok.string.lstrip("# ").strip()
    return help_text


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) for every field, for `--help`-style listings."""
    docs = field_help(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, _type_name(_hints(cls)[f.name]), default, docs.get(f.name, "")))
    return rows


def apply_overrides(cfg: Any, overrides: Mapping[str, Any], *, source: str = "--set") -> Any:
    """A copy of `cfg` with `overrides` applied. String values are parsed by field type;
    other values are type-checked. Unknown keys raise ConfigError listing the valid ones."""
    hints = _hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    changes = {}
    for key, value in overrides.items():
        if key not in hints or key not in names:
            raise ConfigError(
                f"unknown config key {key!r}{did_you_mean(key, names)} ({source}) for "
                f"{type(cfg).__module__.rsplit('.', 1)[-1]}; valid keys: {', '.join(names)}"
            )
        tp = hints[key]
        if isinstance(value, str) and tp is not str and not _accepts_str(tp):
            changes[key] = parse_value(key, value, tp)
        else:
            changes[key] = check_value(key, value, tp)
    return dataclasses.replace(cfg, **changes)


def _accepts_str(tp: Any) -> bool:
    optional, inner = _is_optional(tp)
    if get_origin(inner) is Literal:
        return all(isinstance(a, str) for a in get_args(inner)) and not optional
    return inner is str and not optional


def parse_set_args(items: list[str]) -> dict[str, str]:
    """`["a=1", "b=x,y"]` -> {"a": "1", "b": "x,y"}; a missing `=` is a ConfigError."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip()] = value
    return out


def resolve(cls: type, presets: Mapping[str, Mapping[str, Any]], preset: str | None,
            overrides: Mapping[str, Any] | None = None) -> Any:
    """Defaults, then the named preset, then command-line overrides."""
    cfg = cls()
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r}{did_you_mean(preset, list(presets))}; "
                              f"valid presets: {', '.join(presets)}")
        cfg = apply_overrides(cfg, presets[preset], source=f"preset {preset}")
    return apply_overrides(cfg, overrides or {})


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of the config (tuples as lists), for YAML and hashing."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def dump_yaml(study: str, preset: str | None, cfg: Any) -> str:
    return yaml.safe_dump({"study": study, "preset": preset, "config": to_dict(cfg)}, sort_keys=False)


MAX_CONFIG_BYTES = 1 << 20  # a run's config.yaml is a few kilobytes


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a run's `config.yaml` (safe loader: no Python objects): a mapping with `study`
    (a study name), `config` (a mapping of fields) and optionally `preset` (a name or null).
    Anything else (not UTF-8, too large, a folder, another shape) is a ConfigError."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder; give the config.yaml file inside a run folder")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a run config (at most "
                              f"{MAX_CONFIG_BYTES:,})")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (not UTF-8: byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # one line: the problem and where it is
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML ({exc.problem or exc.context}{where})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    except (ValueError, OverflowError, RecursionError, AttributeError, TypeError) as exc:  # e.g. 2024-13-45
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict) or "study" not in data or not isinstance(data.get("config"), dict):
        raise ConfigError(f"{path}: expected keys 'study' and 'config' (a run folder's config.yaml)")
    unknown = [str(k) for k in data if k not in ("study", "preset", "config")]
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)[:200]}; a run config has "
                          "study, preset and config")
    if not isinstance(data["study"], str):
        raise ConfigError(f"{path}: study must be a study name, not {data['study']!r:.80}")
    if data.get("preset") is not None and not isinstance(data["preset"], str):
        raise ConfigError(f"{path}: preset must be a preset name or null, not {data['preset']!r:.80}")
    return data


def require(cfg: Any, *, at_least_1: tuple[str, ...] = (), non_negative: tuple[str, ...] = (),
            positive: tuple[str, ...] = (), fractions: tuple[str, ...] = (),
            probabilities: tuple[str, ...] = ()) -> None:
    """Range checks for a study's `check(cfg)`: each named field must be at least 1 (counts,
    sizes), at least 0, above 0 (rates, scales), a fraction in (0, 1] or a probability in
    [0, 1]. A list field is checked item by item. The first bad value is a `ConfigError` that
    names the key, the value and the range."""
    rules = [(at_least_1, lambda v: v >= 1, "must be at least 1"),
             (non_negative, lambda v: v >= 0, "must be >= 0"),
             (positive, lambda v: v > 0, "must be > 0"),
             (fractions, lambda v: 0 < v <= 1, "must be in (0, 1]"),
             (probabilities, lambda v: 0 <= v <= 1, "must be in [0, 1]")]
    for names, ok, rule in rules:
        for name in names:
            value = getattr(cfg, name)
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if item is not None and not ok(item):
                    raise ConfigError(f"{name}={value}: {rule}")
