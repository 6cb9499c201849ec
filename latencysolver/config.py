"""Study and search-space YAML, validated into typed, frozen dataclasses.

Everything a user writes goes through here once.  A bad file fails with one line that names the file, the
key (as a dotted path) and the value, e.g.::

    studies/quick.yaml: distillation.steps: expected an integer, got 'ten'

Past this module no code sees a dict from YAML.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from latencysolver.errors import ConfigError
from latencysolver.recipe import ARCHITECTURES, PRUNE_KINDS, QUANT_DTYPES, SKIP_MODES

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


# --------------------------------------------------------------------------------------------------------------
# Study config
# --------------------------------------------------------------------------------------------------------------

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_STORAGE = "sqlite:///latencysolver.db"


@dataclass(frozen=True)
class DataConfig:
    source: str = "google/boolq"  # a hub dataset name or a local folder of jsonl/parquet files
    max_length: int = 256
    limit_train: int | None = None
    limit_validation: int | None = None
    limit_test: int | None = None

    def __post_init__(self) -> None:
        _check_positive(self, "max_length", "limit_train", "limit_validation", "limit_test")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer budget for one training run (teacher fine-tune or one trial's distillation)."""

    epochs: float = 1.0  # fractional epochs are fine; ``steps`` wins when set
    steps: int | None = None
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "steps", "batch_size", "learning_rate")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), but got {self.warmup_ratio!r}")


@dataclass(frozen=True)
class LatencyConfig:
    """The latency protocol's settings (see ``latencysolver/latency.py``) and which figure is the objective."""

    threads: int = 2
    rows: int = 32  # fixed, seeded sample of real validation rows
    warmup: int = 1  # untimed passes over the sample before timing
    repeats: int = 3  # timed passes over the sample
    seed: int = 0
    # The second objective: the paired speed-up over the fp32 teacher (maximize; robust to noise and comparable
    # across machines) or the student's absolute p50 in milliseconds (minimize).
    objective: Literal["speedup", "latency_ms"] = "speedup"
    throughput_batch_size: int | None = None  # also measure rows/s at this batch size in each trial

    def __post_init__(self) -> None:
        _check_positive(self, "threads", "rows", "repeats", "throughput_batch_size")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, but got {self.warmup!r}")


@dataclass(frozen=True)
class CNNStudentConfig:
    """Shape of the ``architecture: cnn`` student (latencysolver/cnn.py); its vocabulary is the teacher's."""

    embed_dim: int = 128
    channels: int = 128  # per kernel size
    kernel_sizes: tuple[int, ...] = (3, 5)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _check_positive(self, "embed_dim", "channels")
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive integers, but got {list(self.kernel_sizes)!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), but got {self.dropout!r}")


@dataclass(frozen=True)
class ConstraintsConfig:
    """Trials outside these bounds are infeasible: the sampler learns from it, and they are never "best".

    min_accuracy: validation accuracy a trial must reach; by default (null) it must *beat* the majority-class
                  rate of the validation split, measured from the data, so a degenerate model is infeasible.
    max_latency_ms: the student's p50 at batch 1, in milliseconds; null = no bound.
    """

    min_accuracy: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise ValueError(f"min_accuracy must be in [0, 1], but got {self.min_accuracy!r}")
        _check_positive(self, "max_latency_ms")


@dataclass(frozen=True)
class EarlyStopConfig:
    """Stop a hopeless trial early.  Optuna's pruners do not support two objectives, so the objective itself
    checks once: after ``after`` of the distillation steps, accuracy on the first ``rows`` validation rows; at
    or below the accuracy floor (``constraints.min_accuracy``, else the majority rate) the trial stops, and is
    recorded with its partial results as infeasible.  ``after: null`` turns it off."""

    after: float | None = 0.5
    rows: int = 128

    def __post_init__(self) -> None:
        if self.after is not None and not 0 < self.after < 1:
            raise ValueError(f"after must be in (0, 1) or null, but got {self.after!r}")
        _check_positive(self, "rows")


@dataclass(frozen=True)
class WorkersConfig:
    """Crash recovery for workers sharing the storage (Optuna heartbeats + RetryHeartbeatStaleTrialCallback)."""

    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a RUNNING trial without a heartbeat this long is failed, and retried
    max_retry: int = 2  # retries of a trial whose worker died, with the same parameters

    def __post_init__(self) -> None:
        _check_positive(self, "heartbeat_interval", "grace_period")
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"grace_period must be > heartbeat_interval, but got {self.grace_period!r} <= "
                             f"{self.heartbeat_interval!r}")
        if self.max_retry < 0:
            raise ValueError(f"max_retry must be >= 0, but got {self.max_retry!r}")


@dataclass(frozen=True)
class SamplerConfig:
    name: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int | None = 0
    # TPE: trials sampled at random before its model takes over (null: Optuna's default, 10).  A small budget
    # wants fewer, or most of it is random search.
    startup_trials: int | None = None

    def __post_init__(self) -> None:
        _check_positive(self, "startup_trials")


@dataclass(frozen=True)
class StudyConfig:
    name: str
    search_space: SearchSpace
    model: str = DEFAULT_MODEL
    data: DataConfig = field(default_factory=DataConfig)
    storage: str = DEFAULT_STORAGE
    artifacts: str | None = None  # folder of the trial artifact store; default beside a SQLite file
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    n_trials: int = 10
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3.0))
    distillation: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100, learning_rate=1e-4))
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    cnn: CNNStudentConfig = field(default_factory=CNNStudentConfig)
    # trained from scratch, the CNN wants more steps and a larger learning rate than a pre-trained student
    cnn_distillation: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3.0, learning_rate=2e-3))
    # Probe once per study what each quant_dtype setting buys here, and search only those at least as fast as
    # fp32 (latencysolver/gating.py).  false keeps them, for people who want to see them measured.
    drop_slow_settings: bool = True
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    constraints: ConstraintsConfig = field(default_factory=ConstraintsConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    config_file: str = "<memory>"  # the YAML file it came from, for messages

    def __post_init__(self) -> None:
        _check_positive(self, "n_trials")
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"name must be a non-empty string, but got {self.name!r}")


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


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a YAML mapping, checking keys and types; ``where`` is the dotted prefix."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.rstrip('.: ')}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "config_file"}
    unknown = sorted(map(str, set(raw) - names))
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown key (allowed: {', '.join(sorted(names))})")
    kwargs = {key: _convert(hints[key], value, f"{where}{key}") for key, value in raw.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a range check in __post_init__: "<name> must be ..., but got ..."
        key = str(exc).split(" ", 1)[0]
        raise ConfigError(f"{where}{key}: {exc}") from None
    except TypeError as exc:  # a missing required key
        raise ConfigError(f"{where.rstrip('.: ')}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: expected one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.")
    if origin is tuple:  # tuple[int, ...]: a YAML list
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: expected a non-empty list, got {value!r}")
        return tuple(_convert(typing.get_args(hint)[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        value = _coerce_number(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        value = _coerce_number(value)
        if not _is_number(value):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"no YAML conversion for {hint!r}")  # a programming error, not user input


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


def load_study_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read ``studies/NAME.yaml``.  ``search_space`` is a path relative to the study file (or inline mapping).

    ``overrides`` replace top-level values after validation (the CLI's ``--data``, ``--storage``, ``--trials``).
    """
    path = Path(path)
    raw = _read_yaml(path)
    where = f"{path}: "
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = dict(raw)
    if "name" not in raw:
        raw["name"] = path.stem
    space_raw = raw.pop("search_space", None)
    if space_raw is None:
        raise ConfigError(f"{path}: search_space: missing (a path to search_spaces/NAME.yaml or a mapping)")
    if isinstance(space_raw, str):
        space_path = (path.parent / space_raw).resolve()
        if not space_path.is_file():
            raise ConfigError(f"{path}: search_space: file not found: {space_raw!r} (looked at {space_path})")
        space = load_search_space(space_path)
    else:
        space = parse_search_space(space_raw, str(path), "search_space.")
    data_raw = raw.get("data")
    if isinstance(data_raw, str):  # shorthand: ``data: path/or/hub-name``
        raw["data"] = {"source": data_raw}
    config = _build(StudyConfig, {**raw, "search_space": {}}, where)
    config = dataclasses.replace(config, search_space=space, config_file=str(path))
    return apply_overrides(config, **overrides)


def config_to_dict(config: StudyConfig) -> dict[str, Any]:
    """Everything a worker on another machine needs to run this study's trials (stored in the study)."""
    raw = dataclasses.asdict(config)
    raw["search_space"] = config.search_space.to_dict()
    raw["cnn"]["kernel_sizes"] = list(config.cnn.kernel_sizes)
    return raw


def config_from_dict(raw: dict[str, Any], source: str) -> StudyConfig:
    """The inverse of ``config_to_dict``, validated like a YAML file; ``source`` names it in errors."""
    raw = dict(raw)
    config_file = raw.pop("config_file", source)
    space = parse_search_space(raw.pop("search_space", {}), source, "search_space.")
    config = _build(StudyConfig, {**raw, "search_space": {}}, f"{source}: ")
    return dataclasses.replace(config, search_space=space, config_file=config_file)


def apply_overrides(config: StudyConfig, *, data: str | None = None, storage: str | None = None,
                    n_trials: int | None = None, model: str | None = None,
                    keep_slow_settings: bool = False) -> StudyConfig:
    if data is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=data))
    if storage is not None:
        config = dataclasses.replace(config, storage=storage)
    if n_trials is not None:
        if n_trials < 1:
            raise ConfigError(f"--trials: expected a positive integer, got {n_trials!r}")
        config = dataclasses.replace(config, n_trials=n_trials)
    if model is not None:
        config = dataclasses.replace(config, model=model)
    if keep_slow_settings:
        config = dataclasses.replace(config, drop_slow_settings=False)
    return config
