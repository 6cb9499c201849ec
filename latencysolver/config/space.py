"""Study and search-space YAML, validated into typed, frozen dataclasses.

Everything a user writes goes through here once.  A bad file fails with one line that names the file, the
key (as a dotted path) and the value, e.g.::

    studies/quick.yaml: distillation.steps: expected an integer, got 'ten'

Past this module no code sees a dict from YAML.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from latencysolver.config.recipe import ARCHITECTURES, PRUNE_KINDS, QUANT_DTYPES, SKIP_MODES
from latencysolver.errors import ConfigError

# --------------------------------------------------------------------------------------------------------------
# Search space: one entry per knob, each either fixed, a numeric range, or a list of choices.
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class Choices:
    values: tuple[Any, ...]


Knob = Union[Fixed, FloatRange, IntRange, Choices]


@dataclass(frozen=True)
class SearchSpace:
    """The five knobs (plus their companions) as searched by one study.

    ``architecture: cnn`` trials leave the transformer-only knobs (``recipe.TRANSFORMER_KNOBS``) out.
    """

    architecture: Knob = Fixed("transformer")
    prune_ratio: Knob = Fixed(0.0)
    prune_kind: Knob = Fixed("unstructured")
    quant_dtype: Knob = Fixed("fp32")
    skip_prob: Knob = Fixed(0.0)
    skip_mode: Knob = Fixed("deterministic")
    rank: Knob = Fixed("off")
    temperature: Knob = Fixed(2.0)
    alpha: Knob = Fixed(0.5)
    hidden_weight: Knob = Fixed(0.0)

    def to_dict(self) -> dict[str, Any]:
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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_rank(v: Any) -> bool:
    if isinstance(v, int) and not isinstance(v, bool):
        return v >= 1
    return isinstance(v, float) and 0 < v < 1


# What each knob accepts: its numeric kind and a test for one value.  ``rank`` takes "off", a positive integer
# (absolute rank) or a fraction in (0, 1) of each layer's full rank.
_KNOB_RULES: dict[str, tuple[str, str, typing.Callable[[Any], bool]]] = {
    "architecture": ("categorical", f"one of {list(ARCHITECTURES)}", lambda v: v in ARCHITECTURES),
    "prune_ratio": ("float", "a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "prune_kind": ("categorical", f"one of {list(PRUNE_KINDS)}", lambda v: v in PRUNE_KINDS),
    "quant_dtype": ("categorical", f"one of {list(QUANT_DTYPES)}", lambda v: v in QUANT_DTYPES),
    "skip_prob": ("float", "a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "skip_mode": ("categorical", f"one of {list(SKIP_MODES)}", lambda v: v in SKIP_MODES),
    "rank": ("rank", "'off', a positive integer or a fraction in (0, 1)", lambda v: v == "off" or _is_rank(v)),
    "temperature": ("float", "a number > 0", lambda v: _is_number(v) and v > 0),
    "alpha": ("float", "a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "hidden_weight": ("float", "a number >= 0", lambda v: _is_number(v) and v >= 0),
}
KNOBS: tuple[str, ...] = tuple(_KNOB_RULES)


def _parse_knob(name: str, raw: Any, where: str) -> Knob:
    kind, wanted, ok = _KNOB_RULES[name]
    where = f"{where}{name}"
    if not isinstance(raw, dict):
        raw = _coerce_number(raw)
        if not ok(raw):
            raise ConfigError(f"{where}: expected {wanted}, got {raw!r}")
        return Fixed(raw)
    if "choices" in raw:
        extra = sorted(map(str, set(raw) - {"choices"}))
        if extra:
            raise ConfigError(f"{where}.{extra[0]}: unknown key next to 'choices' (allowed: choices)")
        values = raw["choices"]
        if not isinstance(values, list):
            raise ConfigError(f"{where}.choices: expected a list, got {values!r}")
        if not values:
            raise ConfigError(f"{where}.choices: empty list, a knob needs at least one choice")
        values = [_coerce_number(v) for v in values]
        for v in values:
            if not ok(v):
                raise ConfigError(f"{where}.choices: expected each choice to be {wanted}, got {v!r}")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}.choices: duplicate choices in {values!r}")
        return Choices(tuple(values))
    if kind == "categorical":
        raise ConfigError(f"{where}: expected {wanted} or {{choices: [...]}}, got {raw!r}")
    allowed = {"low", "high", "step", "log"}
    unknown = sorted(map(str, set(raw) - allowed))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: choices, low, high, step, log)")
    for key in ("low", "high"):
        if key not in raw:
            raise ConfigError(f"{where}: a range needs 'low' and 'high', '{key}' is missing")
    low, high = _coerce_number(raw["low"]), _coerce_number(raw["high"])
    for key, v in (("low", low), ("high", high)):
        if not ok(v) or not _is_number(v):  # a range is numeric even where a choice may be "off"
            raise ConfigError(f"{where}.{key}: expected a number for a range bound ({wanted}), got {v!r}")
    if low > high:
        raise ConfigError(f"{where}: empty range, low <= high must hold, but got (low={low}, high={high})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false, got {log!r}")
    step = _coerce_number(raw.get("step"))
    if step is not None and not (_is_number(step) and step > 0):
        raise ConfigError(f"{where}.step: expected a number > 0, got {step!r}")
    if log and step is not None:
        raise ConfigError(f"{where}: 'step' and 'log: true' cannot be combined, got step={step}")
    if log and low <= 0:
        raise ConfigError(f"{where}.low: a log range needs low > 0, got {low!r}")
    if kind == "rank":  # integer bounds: absolute ranks; fractional bounds: fractions of full rank
        if isinstance(low, int) != isinstance(high, int):
            raise ConfigError(f"{where}: a rank range is either absolute (integers) or fractions in (0, 1), "
                              f"not both, but got (low={low}, high={high})")
        kind = "int" if isinstance(low, int) else "float"
    if kind == "int":
        if step is not None and not isinstance(step, int):
            raise ConfigError(f"{where}.step: expected an integer, got {step!r}")
        return IntRange(int(low), int(high), int(step or 1), log)
    return FloatRange(float(low), float(high), None if step is None else float(step), log)


def parse_search_space(raw: Any, source: str, key_prefix: str = "") -> SearchSpace:
    """``key_prefix`` is ``"search_space."`` for a space written inline in a study file."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {key_prefix}expected a mapping of knob names, got {type(raw).__name__}")
    unknown = sorted(map(str, set(raw) - set(KNOBS)))
    if unknown:
        raise ConfigError(f"{source}: {key_prefix}{unknown[0]}: unknown knob (known knobs: {', '.join(KNOBS)})")
    return SearchSpace(**{name: _parse_knob(name, value, f"{source}: {key_prefix}") for name, value in raw.items()})


def load_search_space(path: str | Path) -> SearchSpace:
    return parse_search_space(_read_yaml(Path(path)), str(path))




def _check_positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, but got {value!r}")


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




def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{line}: {problem}") from None


