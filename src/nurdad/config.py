"""Configuration: frozen dataclasses per stage, loaded from TOML plus flag overrides.

Unknown keys and values of the wrong type are rejected with a `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from nurdad.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], section: str = "") -> T:
    """Build dataclass `cls` from `values`, rejecting unknown keys and checking types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    prefix = f"{section}." if section else ""
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; expected one of {sorted(fields)}"
        )
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section or cls.__name__}: {exc}") from None


def _coerce(hint, value, name: str):
    """Check `value` against the annotation `hint`; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, name)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config section {name!r}: expected a table, got {value!r}")
        return from_dict(hint, value, name)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config field {name!r}: expected a table of name = value, got {value!r}")
        _, inner = typing.get_args(hint)
        return {str(k): _coerce(inner, v, f"{name}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config field {name!r}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(hint) or (Any,)
        items = [_coerce(inner, v, name) for v in value] if inner is not Any else list(value)
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
    ):
        raise ConfigError(f"config field {name!r}: expected {hint.__name__}, got {value!r}")
    return value


def load_toml(path: str | Path | None) -> dict[str, Any]:
    """Read a TOML config file into a dict (empty if `path` is None)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def nest_flags(flat: dict[str, Any]) -> dict[str, Any]:
    """{'simulation.pt_min_gev': 500} -> {'simulation': {'pt_min_gev': 500}}; None (unset flags) dropped."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        *parents, leaf = key.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied, recursing into nested tables."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def to_dict(config) -> dict[str, Any]:
    """A dataclass config as a plain dict (tuples become lists), for JSON/TOML records."""
    return dataclasses.asdict(config)
