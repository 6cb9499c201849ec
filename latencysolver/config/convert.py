"""YAML mappings into typed, frozen dataclasses: keys and types checked against the dataclass's annotations.

``build(cls, raw, file)`` is the one converter every config dataclass goes through, so every bad value fails the
same way: one line naming the file, the dotted key and the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from latencysolver.config.space import _coerce_number, _is_number
from latencysolver.errors import ConfigError, FieldError, shown


def _at(file: str, key: str) -> str:
    """The message prefix "FILE: KEY" ("FILE" where no key applies)."""
    return f"{file}: {key}" if key else file


def build(cls: type, raw: Any, file: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a YAML mapping, checking keys and types.

    ``file`` names the source in messages and in the ``ConfigError``; ``prefix`` is the dotted path of ``raw``
    within it ("" at the top, "distillation." below), so each error's ``key`` is the full dotted path.
    """
    key = prefix.rstrip(".") or None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{_at(file, prefix.rstrip('.'))}: expected a mapping, got {shown(raw)}", file=file, key=key, value=raw
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "config_file"}
    unknown = sorted(map(str, set(raw) - names))
    if unknown:
        raise ConfigError(
            f"{file}: {prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(names))})",
            file=file,
            key=f"{prefix}{unknown[0]}",
        )
    kwargs = {name: _convert(hints[name], value, file, f"{prefix}{name}") for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except FieldError as exc:  # a range check in __post_init__: "<name> must be ..., but got ..."
        raise located(exc, file, prefix) from None
    except TypeError as exc:  # a missing required key
        raise ConfigError(f"{_at(file, prefix.rstrip('.'))}: {exc}", file=file, key=key) from None


def located(exc: FieldError, file: str, prefix: str = "") -> ConfigError:
    """A dataclass check's ``FieldError`` as a ``ConfigError`` of ``file``: "FILE: PREFIX.KEY: message"."""
    return ConfigError(f"{file}: {prefix}{exc.key}: {exc}", file=file, key=f"{prefix}{exc.key}", value=exc.value)


def _convert(hint: Any, value: Any, file: str, key: str) -> Any:
    """``value`` as type ``hint``; ``key`` is its dotted path in ``file`` (``cnn.kernel_sizes[1]``)."""
    where = f"{file}: {key}"
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(
                f"{where}: expected one of {list(typing.get_args(hint))}, got {shown(value)}",
                file=file,
                key=key,
                value=value,
            )
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value, file, f"{key}.")
    if origin is tuple:  # tuple[int, ...]: a YAML list
        if not isinstance(value, list) or not value:
            raise ConfigError(
                f"{where}: expected a non-empty list, got {shown(value)}", file=file, key=key, value=value
            )
        return tuple(_convert(typing.get_args(hint)[0], v, file, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {shown(value)}", file=file, key=key, value=value)
        return value
    if hint is int:
        value = _coerce_number(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {shown(value)}", file=file, key=key, value=value)
        return value
    if hint is float:
        value = _coerce_number(value)
        if not _is_number(value):
            raise ConfigError(f"{where}: expected a number, got {shown(value)}", file=file, key=key, value=value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            # YAML 1.1 reads an unquoted no/yes, off/on, false/true as a boolean: a class named "no" must be quoted
            hint_text = " (YAML reads an unquoted no/yes, off/on, false/true as a boolean: quote it)"
            also = hint_text if isinstance(value, bool) else ""
            raise ConfigError(f"{where}: expected a string, got {shown(value)}{also}", file=file, key=key, value=value)
        return value
    raise TypeError(f"no YAML conversion for {hint!r}")  # a programming error, not user input
