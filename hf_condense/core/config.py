"""Typed configs: dataclass fields with help and bounds, parsed from plain data with every error collected.

Each layer owns its recipe sections (`DatasetConfig` in data, `ModelConfig` in models, a method's config beside its
method, ...); this module only knows how to build any of them from YAML data, one line per problem naming the dotted
path, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import field
from typing import Any, Literal

import yaml


class RecipeError(ValueError):
    """A recipe that cannot run; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid recipe:\n  - " + "\n  - ".join(self.errors))


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    min: float | None = None,
    gt: float | None = None,
    max: float | None = None,
    default_factory: Any = dataclasses.MISSING,
    affects_result: bool = True,
    compute: str | None = None,
    later_stages: bool = False,
    added: bool = False,
) -> Any:
    """A dataclass field with a help text and numeric bounds that the parser enforces. `affects_result=False` declares
    a setting that changes how a result is computed but not the result beyond float round-off (threads, compilation,
    micro-batching): a stored stage's hash leaves it out (`neutral_fields`); a folder resumes under another value.
    `compute="name"` declares an execution setting (how the arithmetic runs, not which method): a recipe spells it
    `compute.name`, apart from the method's own knobs (`compute_fields`). `later_stages=True` declares a setting
    that only shapes the stages after the first (a PDD transition's): stage 1's hash reads it at its default, so a
    run's first stage is shared by recipes that differ only there (`later_stage_fields`). `added=True` declares a
    setting added after stages were stored: a stage hash leaves it out at its default, so those folders resume
    (`added_fields`)."""
    meta = {
        "help": help,
        "min": min,
        "gt": gt,
        "max": max,
        "affects_result": affects_result,
        "compute": compute,
        "later_stages": later_stages,
        "added": added,
    }
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def neutral_fields(cls: type) -> set[str]:
    """The fields of dataclass `cls` declared `affects_result=False`."""
    return {f.name for f in dataclasses.fields(cls) if not f.metadata.get("affects_result", True)}


def later_stage_fields(cls: type) -> dict[str, Any]:
    """The fields of dataclass `cls` declared `later_stages=True`, with their defaults."""
    return {f.name: default_of(f) for f in dataclasses.fields(cls) if f.metadata.get("later_stages")}


def added_fields(cls: type) -> dict[str, Any]:
    """The fields of dataclass `cls` declared `added=True`, with their defaults."""
    return {f.name: default_of(f) for f in dataclasses.fields(cls) if f.metadata.get("added")}


def default_of(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (made by its default_factory when it has one)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def compute_fields(cls: type) -> dict[str, str]:
    """The fields of dataclass `cls` declared execution settings: field name -> its key in a recipe's `compute:`."""
    return {f.name: f.metadata["compute"] for f in dataclasses.fields(cls) if f.metadata.get("compute")}


# ----------------------------------------------------------------------------------------------------------------
# Parsing


def suggest(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check_bounds(value: Any, meta: dict, path: str, errors: list[str]) -> None:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if meta.get("min") is not None and v < meta["min"]:
            errors.append(f"{path}: {v!r} is too small; must be >= {meta['min']}")
        if meta.get("gt") is not None and v <= meta["gt"]:
            errors.append(f"{path}: {v!r} is too small; must be > {meta['gt']}")
        if meta.get("max") is not None and v > meta["max"]:
            errors.append(f"{path}: {v!r} is too large; must be <= {meta['max']}")


def _convert(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, path, errors)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(arg, value, path, trial)
            if not trial:
                return out
        errors.append(f"{path}: expected {describe(tp)}, got {value!r}")
        return None
    if origin is Literal:
        if value not in typing.get_args(tp):
            errors.append(
                f"{path}: {value!r} is not allowed; expected {describe(tp)}"
                + (suggest(value, typing.get_args(tp)) if isinstance(value, str) else "")
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{path}: expected {describe(tp)}, got {value!r}")
            return []
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {value!r}")
            return {}
        return dict(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-7, without a dot, as a string
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        errors.append(f"{path}: {value!r} is not a finite number")
        return None
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    if not ok:
        errors.append(f"{path}: expected {describe(tp)}, got {value!r} ({type(value).__name__})")
        return None
    return float(value) if tp is float else value


_EXPONENT_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def parse_dataclass(cls: type, data: Any, path: str, errors: list[str]) -> Any:
    """Build `cls` from a mapping, appending one line per problem to `errors`.

    A section whose concrete class depends on its data (the method section: `method.name` picks the config class)
    names it with a classmethod `config_for(data, path, errors)`; None there means the error is already recorded.
    """
    if hasattr(cls, "config_for"):
        concrete = cls.config_for(data, path, errors)
        if concrete is None:
            return cls()
        if concrete is not cls:
            return parse_dataclass(concrete, data, path, errors)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{path or 'recipe'}: expected a mapping, got {data!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in known:
            errors.append(f"{sub}: unknown key{suggest(str(key), known)}; allowed: {', '.join(known)}")
            continue
        before = len(errors)
        converted = _convert(hints[key], value, sub, errors)
        if len(errors) == before:
            _check_bounds(converted, known[key].metadata, sub, errors)
            kwargs[key] = converted
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: typing.Sequence[str]) -> dict:
    """Apply `a.b.c=value` strings to a nested dict (values parsed as YAML scalars)."""
    errors = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            errors.append(f"override {item!r}: expected key.path=value")
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                errors.append(f"override {item!r}: {part!r} is not a section")
                break
            node = node.setdefault(part, {})
        else:
            try:
                node[parts[-1]] = yaml.safe_load(raw)
            except yaml.YAMLError as e:
                errors.append(f"override {item!r}: its value is not valid YAML ({getattr(e, 'problem', e)})")
    if errors:
        raise RecipeError(errors)
    return data
