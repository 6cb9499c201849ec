"""Study and search-space YAML, validated into typed, frozen dataclasses.

Everything a user writes goes through here once.  A bad file fails with one line that names the file, the
key (as a dotted path) and the value, e.g.::

    studies/quick.yaml: distillation.steps: expected an integer, got 'ten'

Past this module no code sees a dict from YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from latencysolver.config.knobs import KNOB, KNOB_NAMES, is_number
from latencysolver.errors import ConfigError, shown
from latencysolver.files import not_a_file

# --------------------------------------------------------------------------------------------------------------
# Search space: one entry per knob, each either fixed, a numeric range, or a list of choices.
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixed:
    """A knob held at one value (``prune_ratio: 0.25`` in the YAML)."""

    value: Any


@dataclass(frozen=True)
class FloatRange:
    """A real range ``{low, high[, step | log]}``, both ends included."""

    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    """An integer range ``{low, high[, step | log]}``, both ends included."""

    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class Choices:
    """A knob picked among ``{choices: [...]}``."""

    values: tuple[Any, ...]


Knob = Fixed | FloatRange | IntRange | Choices


@dataclass(frozen=True)
class SearchSpace:
    """The knobs as searched by one study: one field per entry of ``knobs.KNOBS``, in its order.

    A knob not written in the file stays fixed at the table's default.  ``architecture: cnn`` trials leave the
    transformer-only knobs (``knobs.TRANSFORMER_KNOBS``) out.  tests/test_knobs.py checks the fields against
    the table.
    """

    architecture: Knob = Fixed(KNOB["architecture"].yaml_default)
    prune_ratio: Knob = Fixed(KNOB["prune_ratio"].yaml_default)
    prune_kind: Knob = Fixed(KNOB["prune_kind"].yaml_default)
    quant_dtype: Knob = Fixed(KNOB["quant_dtype"].yaml_default)
    skip_prob: Knob = Fixed(KNOB["skip_prob"].yaml_default)
    skip_mode: Knob = Fixed(KNOB["skip_mode"].yaml_default)
    rank: Knob = Fixed(KNOB["rank"].yaml_default)
    temperature: Knob = Fixed(KNOB["temperature"].yaml_default)
    alpha: Knob = Fixed(KNOB["alpha"].yaml_default)
    hidden_weight: Knob = Fixed(KNOB["hidden_weight"].yaml_default)
    attention_weight: Knob = Fixed(KNOB["attention_weight"].yaml_default)
    max_tokens: Knob = Fixed(KNOB["max_tokens"].yaml_default)
    recovery_steps: Knob = Fixed(KNOB["recovery_steps"].yaml_default)

    def values_of(self, name: str) -> tuple[Any, ...]:
        """What a knob's entry names: its fixed value, its choices, or a range's bounds."""
        knob = getattr(self, name)
        if isinstance(knob, Fixed):
            return (knob.value,)
        return knob.values if isinstance(knob, Choices) else (knob.low, knob.high)

    def to_dict(self) -> dict[str, Any]:
        """The space as YAML would write it, knob by knob; ``parse_search_space`` reads it back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            knob = getattr(self, f.name)
            if isinstance(knob, Fixed):
                out[f.name] = knob.value
            elif isinstance(knob, Choices):
                out[f.name] = {"choices": list(knob.values)}
            else:  # only the keys a user would write, so the dict parses back to the same knob
                spec = {"low": knob.low, "high": knob.high}
                if knob.log:
                    spec["log"] = True
                elif knob.step is not None and not (isinstance(knob, IntRange) and knob.step == 1):
                    spec["step"] = knob.step
                out[f.name] = spec
        return out


_is_number = is_number  # config.study imports it from here


def _fail(source: str, key: str, message: str, value: Any) -> ConfigError:
    """``source: key: message``, with the three kept as the error's fields."""
    return ConfigError(f"{source}: {key}: {message}", file=source, key=key, value=value)


def _first_unknown(raw: dict, allowed: set[str] | tuple[str, ...]) -> tuple[str, Any] | None:
    """The first key (sorted as text: YAML keys may be numbers) that is not allowed, with its value."""
    unknown = sorted((str(k), k) for k in raw if k not in allowed)
    return (unknown[0][0], raw[unknown[0][1]]) if unknown else None


def _parse_knob(name: str, raw: Any, source: str, key_prefix: str = "") -> Knob:
    """One knob's YAML entry: a fixed value, ``{choices: [...]}`` or a range, each checked against the table."""
    spec = KNOB[name]
    kind, wanted, ok = spec.kind, spec.yaml_wanted, spec.accepts_yaml
    key = f"{key_prefix}{name}"
    if not isinstance(raw, dict):
        raw = _coerce_number(raw)
        if not ok(raw):
            raise _fail(source, key, f"expected {wanted}, got {shown(raw)}", raw)
        return Fixed(raw)
    if "choices" in raw:
        extra = _first_unknown(raw, {"choices"})
        if extra:
            raise _fail(source, f"{key}.{extra[0]}", "unknown key next to 'choices' (allowed: choices)", extra[1])
        values = raw["choices"]
        if not isinstance(values, list):
            raise _fail(source, f"{key}.choices", f"expected a list, got {shown(values)}", values)
        if not values:
            raise _fail(source, f"{key}.choices", "empty list, a knob needs at least one choice", values)
        values = [_coerce_number(v) for v in values]
        for v in values:
            if not ok(v):
                raise _fail(source, f"{key}.choices", f"expected each choice to be {wanted}, got {shown(v)}", v)
        if len(set(map(repr, values))) != len(values):
            raise _fail(source, f"{key}.choices", f"duplicate choices in {shown(values)}", values)
        return Choices(tuple(values))
    if kind == "categorical":
        raise _fail(source, key, f"expected {wanted} or {{choices: [...]}}, got {shown(raw)}", raw)
    unknown = _first_unknown(raw, {"low", "high", "step", "log"})
    if unknown:
        raise _fail(source, f"{key}.{unknown[0]}", "unknown key (allowed: choices, low, high, step, log)", unknown[1])
    for bound in ("low", "high"):
        if bound not in raw:
            raise _fail(source, key, f"a range needs 'low' and 'high', '{bound}' is missing", raw)
    low, high = _coerce_number(raw["low"]), _coerce_number(raw["high"])
    for bound, v in (("low", low), ("high", high)):
        if not ok(v) or not is_number(v):  # a range is numeric even where a choice may be "off"
            raise _fail(source, f"{key}.{bound}", f"expected a number for a range bound ({wanted}), got {shown(v)}", v)
    if low > high:
        raise _fail(source, key, f"empty range, low <= high must hold, but got (low={low}, high={high})", (low, high))
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _fail(source, f"{key}.log", f"expected true or false, got {shown(log)}", log)
    step = _coerce_number(raw.get("step"))
    if step is not None and not (is_number(step) and step > 0):
        raise _fail(source, f"{key}.step", f"expected a number > 0, got {shown(step)}", step)
    if log and step is not None:
        raise _fail(source, key, f"'step' and 'log: true' cannot be combined, got step={step}", step)
    if log and low <= 0:
        raise _fail(source, f"{key}.low", f"a log range needs low > 0, got {shown(low)}", low)
    if kind == "rank":  # integer bounds: absolute ranks; fractional bounds: fractions of full rank
        if isinstance(low, int) != isinstance(high, int):
            raise _fail(
                source,
                key,
                "a rank range is either absolute (integers) or fractions in (0, 1), "
                f"not both, but got (low={low}, high={high})",
                (low, high),
            )
        kind = "int" if isinstance(low, int) else "float"
    if kind == "int":
        if step is not None and not isinstance(step, int):
            raise _fail(source, f"{key}.step", f"expected an integer, got {shown(step)}", step)
        return IntRange(int(low), int(high), int(step or 1), log)
    return FloatRange(float(low), float(high), None if step is None else float(step), log)


def parse_search_space(raw: Any, source: str, key_prefix: str = "") -> SearchSpace:
    """``key_prefix`` is ``"search_space."`` for a space written inline in a study file."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: {key_prefix}expected a mapping of knob names, got {type(raw).__name__}",
            file=source,
            key=key_prefix.rstrip(".") or None,
            value=raw,
        )
    unknown = _first_unknown(raw, KNOB_NAMES)
    if unknown:
        raise _fail(
            source, f"{key_prefix}{unknown[0]}", f"unknown knob (known knobs: {', '.join(KNOB_NAMES)})", unknown[1]
        )
    return SearchSpace(**{name: _parse_knob(name, value, source, key_prefix) for name, value in raw.items()})


def load_search_space(path: str | Path) -> SearchSpace:
    """Read a search-space YAML file; a bad one is a ``ConfigError`` naming the file, the knob and the value."""
    return parse_search_space(_read_yaml(Path(path)), str(path))


def _coerce_number(value: Any) -> Any:
    """PyYAML reads ``5e-5`` (no dot) as a string; accept it as the number the user meant."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


MAX_YAML_VALUES = 10_000  # values in one file once its aliases are expanded (a study has a few dozen)
MAX_YAML_DEPTH = 50  # levels of nesting (a study has three)


class _Refused(yaml.YAMLError):
    """A YAML file this loader will not build: too large once expanded, too deep, recursive, a duplicate key."""

    def __init__(self, message: str, key: Any = None):
        super().__init__(message)
        self.message = message  # the ConfigError's, less the file name
        self.key = key


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses alias bombs ("billion laughs"), recursive aliases and deep nesting.

    Aliases share one node, so composing a bomb is cheap; what explodes is any code that walks or prints the
    value.  So the composed document is measured as if every alias were expanded, before anything is built.
    """

    def compose_document(self) -> Any:
        node = super().compose_document()
        _check_expanded_size(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Duplicate keys are an error (PyYAML keeps the last); a merge (``<<: *base``) may still be overridden."""
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if earlier is not None:
                raise _Refused(f"duplicate key {shown(key)} at line {line} (first at line {earlier})", key=key)
            first[key] = line
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expanded_size(root: yaml.Node) -> None:
    """Size and depth of the document with aliases expanded, computed once per node (iteratively)."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) of its expansion
    open_nodes: set[int] = set()  # the nodes whose expansion is being measured: an alias back to one is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            measured = [sizes[id(child)] for child in _children(node)]
            values = 1 + sum(m[0] for m in measured)
            depth = 1 + max((m[1] for m in measured), default=0)
            where = f"refused YAML at line {node.start_mark.line + 1}"
            if values > MAX_YAML_VALUES:
                raise _Refused(
                    f"{where}: too large: more than {MAX_YAML_VALUES:,} values once its aliases are expanded "
                    f"(nested aliases, as in a 'billion laughs' file?)"
                )
            if depth > MAX_YAML_DEPTH:
                raise _Refused(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels")
            sizes[key] = (values, depth)
        elif key in open_nodes:
            raise _Refused(
                f"refused YAML at line {node.start_mark.line + 1}: recursive alias (a value that contains itself)"
            )
        elif key not in sizes:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _read_yaml(path: Path) -> Any:
    kind = not_a_file(path)
    if kind:  # a FIFO or a device would block or never end: not read
        raise ConfigError(f"{path}: is {kind}, not a YAML file", file=str(path))
    if not path.is_file():
        raise ConfigError(f"{path}: file not found", file=str(path))
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line {number} (save the file as UTF-8)",
            file=str(path),
        ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader
    except RecursionError:  # the composer recurses once per level: thousands of '[' or '{'
        raise ConfigError(f"{path}: refused YAML: nested too deeply", file=str(path)) from None
    except _Refused as exc:
        key = None if exc.key is None else str(exc.key)
        raise ConfigError(f"{path}: {exc.message}", file=str(path), key=key) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{line}: {problem}", file=str(path)) from None
