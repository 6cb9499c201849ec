"""Study and search-space YAML, validated into typed, frozen dataclasses.

Everything a user writes goes through here once.  A bad file fails with one line that names the file, the
key (as a dotted path) and the value, e.g.::

    studies/quick.yaml: distillation.steps: expected an integer, got 'ten'

Past this module no code sees a dict from YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from latencysolver.config.convert import build, located
from latencysolver.config.data import DataConfig
from latencysolver.config.space import (
    SearchSpace,
    _is_number,
    _read_yaml,
    load_search_space,
    parse_search_space,
)
from latencysolver.config.training import (
    DEVICE_SPEC,
    INT_MAX,
    MAX_WAIT_S,
    DeviceConfig,
    ElasticConfig,
    TrainConfig,
    _check_at_most,
    _check_non_negative,
    _check_positive,
    _check_seed,
    check_latency_device,
    check_trial_mode,
    longest_wait_s,
)
from latencysolver.errors import ConfigError, FieldError, shown
from latencysolver.files import not_a_file

# --------------------------------------------------------------------------------------------------------------
# Study config
# --------------------------------------------------------------------------------------------------------------


DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
STORAGE_ENV = "LATENCYSOLVER_STORAGE"  # the default --storage; how `run --workers` hands workers the URL
DEFAULT_STORAGE = "sqlite:///latencysolver.db"


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
    # A measurement is unstable when its pair-ratio CV or the teacher's drift from the study's baseline p50 passes
    # these bounds (null: not checked); it is then taken again, at most ``remeasure_attempts`` more times, after
    # ``remeasure_wait_s`` seconds (doubling).  Defaults from benchmarks/latency_stability.py; see
    # latencysolver/latency/stability.py.
    max_speedup_cv: float | None = 0.10
    max_reference_drift: float | None = 0.5
    remeasure_attempts: int = 2
    remeasure_wait_s: float = 5.0
    # where latency is timed: the CPU (the deployment target) or a CUDA device (then torch float students only)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or self.device == "auto" or not DEVICE_SPEC.match(self.device):
            raise FieldError("device", f"device must be cpu, cuda or cuda:N, but got {shown(self.device)}", self.device)
        _check_positive(self, "threads", "rows", "repeats", "throughput_batch_size")
        _check_positive(self, "max_speedup_cv", "max_reference_drift")
        _check_non_negative(self, "warmup", "remeasure_attempts", "remeasure_wait_s")
        _check_at_most(self, INT_MAX, "a C int, what torch.set_num_threads takes", "threads")
        _check_seed(self, "seed")
        longest = longest_wait_s(self.remeasure_wait_s, self.remeasure_attempts)
        if longest > MAX_WAIT_S:
            raise FieldError(
                "remeasure_wait_s",
                f"remeasure_wait_s must keep the last of {self.remeasure_attempts} doubling waits within "
                f"{MAX_WAIT_S:,.0f} s (what time.sleep takes), but got {shown(self.remeasure_wait_s)} "
                f"(last wait {longest:g} s)",
                self.remeasure_wait_s,
            )


@dataclass(frozen=True)
class CNNStudentConfig:
    """Shape of the ``architecture: cnn`` student (latencysolver/cnn.py); its vocabulary is the teacher's."""

    embed_dim: int = 128
    channels: int = 128  # per kernel size
    kernel_sizes: tuple[int, ...] = (3, 5)
    dropout: float = 0.1
    # the question and the passage pooled apart and compared (product, difference, a similarity map) before the head
    pair_aware: bool = False
    # weight of the representation loss: the CNN's pooled features, through a Linear to the teacher's width, pulled
    # towards the teacher's pooled representation of each train row (1 - cosine); 0 = off
    representation_weight: float = 0.0
    # teacher-labelled pairs built from each train row (passage windows, sentence deletion and shuffling:
    # latencysolver/data/augment.py), this many per row, for distillation only; 0 = off.  On by default: the one
    # addition that moved the CNN off the majority class in benchmarks/cnn.py.  The teacher labels them once per
    # study whose space has the CNN (its cost: benchmarks/README.md), cached
    augment: int = 4

    def __post_init__(self) -> None:
        _check_positive(self, "embed_dim", "channels")
        _check_non_negative(self, "augment", "representation_weight")
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise FieldError(
                "kernel_sizes",
                f"kernel_sizes must be odd positive integers, but got {shown(list(self.kernel_sizes))}",
                list(self.kernel_sizes),
            )
        if not 0 <= self.dropout < 1:
            raise FieldError("dropout", f"dropout must be in [0, 1), but got {shown(self.dropout)}", self.dropout)


@dataclass(frozen=True)
class ConstraintsConfig:
    """Trials outside these bounds are infeasible: the sampler learns from it, and they are never "best".

    min_accuracy: validation accuracy a trial must reach; by default (null) it must *beat* the majority-class
                  rate of the validation split, measured from the data, so a degenerate model is infeasible.
    max_latency_ms: the student's p50 at batch 1, in milliseconds; null = no bound.
    """

    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    # the paired speed-up over the fp32 teacher a trial must reach; measured before any training, so a trial below
    # it is recorded infeasible without being trained.  null = no bound.
    min_speedup: float | None = None

    def __post_init__(self) -> None:
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise FieldError(
                "min_accuracy", f"min_accuracy must be in [0, 1], but got {shown(self.min_accuracy)}", self.min_accuracy
            )
        _check_positive(self, "max_latency_ms", "min_speedup")


# what a rung records on its check rows (all three), and ranks on (one): search/rungs.py
RungMetric = Literal["accuracy", "auc", "log_likelihood"]


@dataclass(frozen=True)
class EarlyStopConfig:
    """Stop hopeless trials early (per-trial mode).  Optuna's pruners refuse two objectives, so the objective
    itself looks at the accuracy on the first ``rows`` validation rows during distillation:

    - the floor check: at ``after`` of the steps, at or below the accuracy floor (``constraints.min_accuracy``,
      else the majority rate) the trial stops.  ``after: null`` turns it off.
    - rungs (asynchronous successive halving on non-dominated rank, after MO-ASHA): at each fraction in
      ``rungs``, the trial's (check accuracy, speed-up) is ranked by Pareto dominance among every trial that has
      reached the same rung; outside the best ``1/reduction_factor`` it stops.  A trial on the rung's front never
      stops, nor does any trial before ``min_trials`` have reached the rung.  ``rung_stop: false`` records the
      rung accuracies without stopping anything (to measure first how well they predict the final accuracy).
      ``rung_metric`` is what a rung ranks on the check rows: ``accuracy``, or a continuous signal a student
      still answering the majority class already has: ``auc`` (how well its scores rank the rows) or
      ``log_likelihood`` (the mean log-probability of the true answer).  Every rung records all three; the
      default, ``auc``, predicted the final accuracy best at 1/9 and 1/3 of the steps on the BoolQ study.

    A stopped trial is recorded with its partial results as infeasible (``early_stopped``)."""

    after: float | None = 0.5
    rows: int = 128
    rungs: tuple[float, ...] | None = None  # fractions of the distillation steps, increasing; null: no rungs
    reduction_factor: int = 3
    min_trials: int = 6
    rung_stop: bool = True
    rung_metric: RungMetric = "auc"  # measured: benchmarks/README.md

    def __post_init__(self) -> None:
        if self.after is not None and not 0 < self.after < 1:
            raise FieldError("after", f"after must be in (0, 1) or null, but got {shown(self.after)}", self.after)
        _check_positive(self, "rows", "min_trials")
        if self.rungs is not None:
            bad = [r for r in self.rungs if not 0 < r < 1]
            if bad:
                raise FieldError("rungs", f"each rung must be in (0, 1), but got {shown(bad[0])}", self.rungs)
            if list(self.rungs) != sorted(set(self.rungs)):
                raise FieldError("rungs", f"rungs must increase, but got {list(self.rungs)}", self.rungs)
        if self.reduction_factor < 2:
            raise FieldError(
                "reduction_factor",
                f"reduction_factor must be >= 2, but got {shown(self.reduction_factor)}",
                self.reduction_factor,
            )


@dataclass(frozen=True)
class WorkersConfig:
    """Crash recovery for workers sharing the storage (Optuna heartbeats + RetryHeartbeatStaleTrialCallback)."""

    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a RUNNING trial without a heartbeat this long is failed, and retried
    max_retry: int = 2  # retries of a trial whose worker died, with the same parameters

    def __post_init__(self) -> None:
        _check_positive(self, "heartbeat_interval", "grace_period")
        _check_at_most(self, MAX_WAIT_S, "the longest wait Python's threads take", "heartbeat_interval", "grace_period")
        if self.grace_period <= self.heartbeat_interval:
            raise FieldError(
                "grace_period",
                f"grace_period must be > heartbeat_interval, but got "
                f"{shown(self.grace_period)} <= {shown(self.heartbeat_interval)}",
                self.grace_period,
            )
        _check_non_negative(self, "max_retry")


@dataclass(frozen=True)
class SamplerConfig:
    """The ``sampler:`` block: Optuna's sampler (TPE, NSGA-II or random) and its seed."""

    name: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int | None = 0
    # TPE: trials sampled at random before its model takes over (null: Optuna's default, 10).  A small budget
    # wants fewer, or most of it is random search.
    startup_trials: int | None = None

    def __post_init__(self) -> None:
        _check_positive(self, "startup_trials")
        _check_seed(self, "seed")


@dataclass(frozen=True)
class StudyConfig:
    """A whole study file, resolved: each block is a field; ``load_study_config`` reads and checks it."""

    name: str
    search_space: SearchSpace
    model: str = DEFAULT_MODEL
    data: DataConfig = field(default_factory=DataConfig)
    storage: str = DEFAULT_STORAGE
    artifacts: str | None = None  # folder of the trial artifact store; default beside a SQLite file
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    n_trials: int = 10
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3.0))
    training: DeviceConfig = field(default_factory=DeviceConfig)  # where training runs (auto: a GPU when present)
    distillation: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100, learning_rate=1e-4))
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    cnn: CNNStudentConfig = field(default_factory=CNNStudentConfig)
    # trained from scratch, the CNN wants more steps and a larger learning rate than a pre-trained student
    cnn_distillation: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3.0, learning_rate=2e-3))
    # Probe once per study what each quant_dtype setting buys here, and search only those at least as fast as
    # fp32 (latencysolver/gating.py).  false keeps them, for people who want to see them measured.
    drop_slow_settings: bool = True
    # The study's first trials are the usual recipes, so its front always holds them: the teacher as is, untrained,
    # in each of ``USUAL_RECIPES`` the hardware probe keeps (an evaluation and a latency measurement each; they
    # count towards n_trials).  Timed on CUDA there are none: they are CPU backends.
    usual_recipes: bool = True
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    constraints: ConstraintsConfig = field(default_factory=ConstraintsConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    # per-trial: each trial compresses and distills its own student; elastic: each trial slices one elastic student
    # trained once (``elastic``), then optionally recovers for ``recovery_steps`` (a knob)
    trial_mode: Literal["per-trial", "elastic"] = "per-trial"
    elastic: ElasticConfig = field(default_factory=ElasticConfig)
    config_file: str = "<memory>"  # the YAML file it came from, for messages

    def __post_init__(self) -> None:
        _check_positive(self, "n_trials")
        if not self.name or not isinstance(self.name, str):
            raise FieldError("name", f"name must be a non-empty string, but got {shown(self.name)}", self.name)
        values = self.search_space.values_of("max_tokens")  # a student cannot read more than the rows hold
        longer = [v for v in values if _is_number(v) and v > self.data.max_length]
        if longer:
            raise FieldError(
                "search_space.max_tokens",
                f"max_tokens {longer[0]} is above data.max_length {self.data.max_length}: the rows are cut there; "
                "use full (or a smaller number)",
                longer[0],
            )
        check_trial_mode(self.trial_mode, self.search_space)
        check_latency_device(self.latency.device, self.search_space)
        if self.trial_mode == "elastic" and self.early_stop.rungs:
            raise FieldError(
                "early_stop.rungs",
                "rungs stop a per-trial distillation part-way; an elastic trial only recovers for recovery_steps "
                "(remove early_stop.rungs, or set trial_mode: per-trial)",
                list(self.early_stop.rungs),
            )


def load_study_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read ``studies/NAME.yaml``.  ``search_space`` is a path relative to the study file (or inline mapping).

    ``overrides`` replace top-level values after validation (the CLI's ``--data``, ``--storage``, ``--trials``).
    """
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level, got {type(raw).__name__}", file=str(path), value=raw
        )
    raw = dict(raw)
    if "name" not in raw:
        raw["name"] = path.stem
    space_raw = raw.pop("search_space", None)
    if space_raw is None:
        raise ConfigError(
            f"{path}: search_space: missing (a path to search_spaces/NAME.yaml or a mapping)",
            file=str(path),
            key="search_space",
        )
    if isinstance(space_raw, str):
        space_path = (path.parent / space_raw).resolve()
        kind = not_a_file(space_path)
        if kind:
            raise ConfigError(
                f"{path}: search_space: {shown(space_raw)} is {kind}, not a YAML file (looked at {space_path})",
                file=str(path),
                key="search_space",
                value=space_raw,
            )
        if not space_path.is_file():
            raise ConfigError(
                f"{path}: search_space: file not found: {shown(space_raw)} (looked at {space_path})",
                file=str(path),
                key="search_space",
                value=space_raw,
            )
        space = load_search_space(space_path)
    else:
        space = parse_search_space(space_raw, str(path), "search_space.")
    data_raw = raw.get("data")
    if isinstance(data_raw, str):  # shorthand: ``data: path/or/hub-name``
        raw["data"] = {"source": data_raw}
    elif isinstance(data_raw, dict):
        raw["data"] = _single_text_unless_paired(data_raw)
    config = build(StudyConfig, {**raw, "search_space": {}}, str(path))
    return apply_overrides(_with_space(config, space, str(path), str(path)), **overrides)


def _single_text_unless_paired(data: dict[str, Any]) -> dict[str, Any]:
    """``data.columns`` naming ``text`` but not ``text_pair`` is single-text data: BoolQ's ``passage`` is the pair
    of BoolQ's ``question`` only, so it is the default only where ``text`` is too.  (A stored config names both.)"""
    columns = data.get("columns")
    if isinstance(columns, dict) and "text" in columns and "text_pair" not in columns:
        return {**data, "columns": {**columns, "text_pair": None}}
    return data


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
    config = build(StudyConfig, {**raw, "search_space": {}}, source)
    return _with_space(config, space, source, config_file)


def _with_space(config: StudyConfig, space: SearchSpace, source: str, config_file: str) -> StudyConfig:
    """``config`` with its search space, whose checks against the rest of the study (max_tokens, trial_mode,
    latency.device) name ``source`` like any other field's."""
    try:
        return dataclasses.replace(config, search_space=space, config_file=config_file)
    except FieldError as exc:
        raise located(exc, source) from None


def apply_overrides(
    config: StudyConfig,
    *,
    data: str | None = None,
    storage: str | None = None,
    n_trials: int | None = None,
    model: str | None = None,
    keep_slow_settings: bool = False,
) -> StudyConfig:
    if data is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=data))
    if storage is not None:
        config = dataclasses.replace(config, storage=storage)
    if n_trials is not None:
        if n_trials < 1:
            raise ConfigError(
                f"--trials: expected a positive integer, got {shown(n_trials)}", key="--trials", value=n_trials
            )
        config = dataclasses.replace(config, n_trials=n_trials)
    if model is not None:
        config = dataclasses.replace(config, model=model)
    if keep_slow_settings:
        config = dataclasses.replace(config, drop_slow_settings=False)
    return config
