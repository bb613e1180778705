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
            f"unknown config key {prefix}{unknown[0]!r}; expected one of {sorted(fields)}"
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


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` updated with the overrides that are not None (unset CLI flags stay out)."""
    return {**base, **{k: v for k, v in overrides.items() if v is not None}}


def to_dict(config) -> dict[str, Any]:
    """A dataclass config as a plain dict (tuples become lists), for JSON/TOML records."""
    return dataclasses.asdict(config)
