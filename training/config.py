"""Typed run configs: frozen dataclasses, filled from defaults < a YAML/TOML file < flags.

A config file mirrors the dataclass tree (``model:``, ``train:`` sections). Unknown keys
are errors that name the file and the key, because a typo that silently falls back to a
default wastes a training run.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


def load_file(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: use a .yaml, .toml or .json config file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot parse: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested dict, checking names and coercing scalars."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid: {sorted(names)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for k, v in data.items():
        default = _field_default(fields[k])
        if dataclasses.is_dataclass(default) and isinstance(v, dict):
            # a section given in part keeps the field's own defaults for the rest (a
            # default_factory may differ from the nested class's defaults)
            v = merge(dataclasses.asdict(default), v)  # type: ignore[arg-type]
        kwargs[k] = _coerce(hints[k], v, f"{where}.{k}")
    return cls(**kwargs)


# Settings older run folders recorded that later versions dropped (dotted keys), each
# with the only value the code still behaves as, or None where nothing read the value.
REMOVED_KEYS: dict[str, Any] = {
    "report": None, "bucket": None, "model.dec_layers": 1, "losses.generation": True,
    "losses.rank_negatives_pairs": True,
}


def from_saved(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """``from_dict`` for a config a run recorded, minus ``REMOVED_KEYS``. A run recorded
    with another value of a removed setting was another model, so it is refused rather
    than loaded as this one."""
    return from_dict(cls, _without_removed(data, "", where), where)


def _without_removed(data: dict[str, Any], prefix: str, where: str) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        key = prefix + k
        if key in REMOVED_KEYS:
            kept = REMOVED_KEYS[key]
            if kept is not None and v != kept:
                raise ConfigError(f"{where}: {key}={v!r} is no longer supported; this "
                                  f"version always runs {key}={kept!r}")
            continue
        out[k] = _without_removed(v, key + ".", where) if isinstance(v, dict) else v
    return out


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where) if len(args) == 1 else value
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (tuple, list):
        seq = value if isinstance(value, list | tuple) else [value]
        inner = typing.get_args(tp)
        item_tp = inner[0] if inner else Any
        return tuple(_coerce(item_tp, v, where) for v in seq)
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in {"1", "true", "yes", "on"}:
                    return True
                if value.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: cannot read {value!r} as {tp.__name__}") from e
    return value


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: values of ``override`` win; nested mappings merge key by key."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.d_model=128"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{pair}' must look like section.key=value")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def build(
    cls: type[T],
    file: Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    presets: dict[str, dict[str, Any]] | None = None,
) -> T:
    """defaults < preset < file < explicit flags (None = not given) < ``--set`` overrides.

    The preset is named by the ``preset`` key (from any layer; else the class's default)
    and looked up in ``presets``; the config records its name."""
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    data = merge(load_file(file) if file else {}, parse_overrides_flat(given))
    data = merge(data, parse_overrides(overrides or []))
    name = data.get("preset", _preset_default(cls))
    if name is not None and presets is not None:
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
        data = merge(presets[name], data)
    return from_dict(cls, data, str(file) if file else "config")


def _preset_default(cls: type) -> str | None:
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "preset":
            return _field_default(f)
    return None


def flat_keys(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config mapping as dotted keys (``{"model.d_model": 64}``); tuples read as
    lists, so a config as a dataclass gives and as its JSON reads compare equal."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def parse_overrides_flat(flags: dict[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1e-3}`` -> ``{"train": {"lr": 1e-3}}``."""
    out: dict[str, Any] = {}
    for key, value in flags.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out
