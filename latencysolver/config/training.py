"""Training budgets: one training run's optimizer settings, the elastic student's, and the knob values each trial
mode can honour (checked when a study file is read), and where training runs."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

from latencysolver.config.space import SearchSpace, _is_number
from latencysolver.errors import FieldError, shown


def _check_positive(obj: Any, *names: str) -> None:
    """``FieldError`` naming the first of ``names`` (attributes of ``obj``) that is set but not > 0."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise FieldError(name, f"{name} must be > 0, but got {shown(value)}", value)


def _check_non_negative(obj: Any, *names: str) -> None:
    """``FieldError`` naming the first of ``names`` (attributes of ``obj``) that is below 0 (or NaN)."""
    for name in names:
        value = getattr(obj, name)
        if not value >= 0:
            raise FieldError(name, f"{name} must be >= 0, but got {shown(value)}", value)


# Every seed goes to torch.manual_seed (which takes [0, 2**64)) or random.Random (any int); the sampler's goes to
# NumPy's RandomState, behind every Optuna sampler, which takes [0, 2**32).  One bound for all of them.
SEED_MAX = 2**32 - 1
INT_MAX = 2**31 - 1  # a C int: torch.set_num_threads and onnxruntime's thread counts
MAX_WAIT_S = threading.TIMEOUT_MAX  # the longest time.sleep / Event.wait (and a heartbeat's grace) Python takes


def _check_seed(obj: Any, *names: str) -> None:
    """``FieldError`` naming the first of ``names`` that is set but outside [0, SEED_MAX]."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not 0 <= value <= SEED_MAX:
            raise FieldError(name, f"{name} must be in [0, {SEED_MAX}], but got {shown(value)}", value)


def _check_at_most(obj: Any, limit: float, why: str, *names: str) -> None:
    """``FieldError`` naming the first of ``names`` that is set and above ``limit`` (``why``: whose limit)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value > limit:
            raise FieldError(name, f"{name} must be <= {limit:,.0f} ({why}), but got {shown(value)}", value)


def longest_wait_s(first: float, attempts: int) -> float:
    """The last of ``attempts`` waits that start at ``first`` seconds and double (inf past any float)."""
    if attempts < 1 or first <= 0:
        return 0.0
    exponent = math.log2(first) + attempts - 1
    return math.inf if exponent > 1023 else 2.0**exponent


def check_some_of(obj: Any, name: str, allowed: tuple[str, ...]) -> None:
    """``FieldError`` unless the list ``name`` is null or a non-empty selection from ``allowed``."""
    value = getattr(obj, name)
    if value is not None and (not value or any(v not in allowed for v in value)):
        bad = next((v for v in value if v not in allowed), list(value))
        raise FieldError(name, f"{name} must be some of {list(allowed)}, but got {shown(bad)}", list(value))


# data.augment's generators, in the order they take turns (latencysolver/data/augment.py says what each does)
AUGMENT_KINDS: tuple[str, ...] = ("window", "delete", "shuffle", "repair", "neighbour", "mask", "drop")


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
        _check_non_negative(self, "weight_decay")
        _check_seed(self, "seed")
        if not 0 <= self.warmup_ratio < 1:
            raise FieldError(
                "warmup_ratio", f"warmup_ratio must be in [0, 1), but got {shown(self.warmup_ratio)}", self.warmup_ratio
            )


DEFAULT_ELASTIC_STEPS = 600  # the elastic student's steps when ``elastic.steps`` is unset and the data is large


@dataclass(frozen=True)
class ElasticConfig:
    """The elastic student of ``trial_mode: elastic`` (latencysolver/models/elastic.py), trained once per teacher,
    data and these settings, then cached.  Each step distills the teacher's cached logits into the full network,
    the smallest one the search space can ask for, and ``random_subnetworks`` random ones between (the sandwich
    rule), their losses summed.  For the first ``width_first`` of the steps the random ones keep every layer
    (progressive shrinking: width, then depth).  ``steps`` unset: ``epochs`` passes over the train rows (the
    augmented ones included), at most ``DEFAULT_ELASTIC_STEPS`` (``steps_for``)."""

    steps: int | None = None
    epochs: float = 10.0  # used when ``steps`` is unset
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    random_subnetworks: int = 2
    width_first: float = 0.3
    importance: Literal["magnitude", "gradient"] = "gradient"  # how heads and neurons are ranked before training
    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        _check_positive(self, "steps", "epochs", "batch_size", "learning_rate", "temperature")
        for name, low, high in (("width_first", 0.0, 1.0), ("alpha", 0.0, 1.0), ("warmup_ratio", 0.0, 0.99)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise FieldError(name, f"{name} must be in [{low}, {high}], but got {shown(value)}", value)
        _check_non_negative(self, "random_subnetworks", "weight_decay")
        _check_seed(self, "seed")

    def steps_for(self, rows: int) -> int:
        """The steps of a training over ``rows`` train rows: ``steps`` when set, else ``epochs`` passes over them,
        at most ``DEFAULT_ELASTIC_STEPS`` (a small data set is not trained for as long as a large one)."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(min(float(DEFAULT_ELASTIC_STEPS), self.epochs * rows / self.batch_size)))

    def training(self, rows: int) -> TrainConfig:
        """The budget of the elastic student's training loop over ``rows`` train rows, as a ``TrainConfig``."""
        return TrainConfig(
            steps=self.steps_for(rows),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )


DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")  # training.device; latency.device has no auto


@dataclass(frozen=True)
class DeviceConfig:
    """``training:`` where the teacher fine-tune, its logits, distillation and the elastic student run
    (latencysolver/devices.py); latency is timed on ``latency.device`` instead."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N; auto = CUDA when torch sees a GPU
    bf16: bool = True  # bf16 autocast of the forward passes on a CUDA device that supports it

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not DEVICE_SPEC.match(self.device):
            raise FieldError(
                "device", f"device must be auto, cpu, cuda or cuda:N, but got {shown(self.device)}", self.device
            )


CUDA_QUANT_DTYPES = ("fp32", "fp16", "bf16")  # what runs on a CUDA device: torch casts, not int8 or onnxruntime


def check_latency_device(device: str, space: SearchSpace) -> None:
    """Timed on CUDA, a student must run there: int8 (dynamic quantization) and onnxruntime (CPU provider) do not."""
    if device == "cpu":
        return
    off = [v for v in space.values_of("quant_dtype") if v not in CUDA_QUANT_DTYPES]
    if off:
        raise FieldError(
            "search_space.quant_dtype",
            f"quant_dtype {off[0]} does not run on latency.device {device} (int8 and onnxruntime are CPU backends): "
            f"search {' / '.join(CUDA_QUANT_DTYPES)}, or time on latency.device: cpu",
            off[0],
        )


def check_trial_mode(mode: str, space: SearchSpace) -> None:
    """The knob values a trial mode cannot honour, refused with the key to change."""

    if mode == "per-trial":
        if set(space.values_of("recovery_steps")) != {0}:  # {low: 0, high: 0} is 0 too
            raise FieldError(
                "search_space.recovery_steps",
                "recovery_steps is the recovery distillation of trial_mode: elastic; a per-trial study distills every "
                "student for distillation.steps (remove the knob, or set trial_mode: elastic)",
                space.values_of("recovery_steps"),
            )
        return
    rules = (
        ("architecture", "cnn", None, "an elastic student is the teacher's own encoder: no cnn trials"),
        (
            "prune_kind",
            "unstructured",
            "prune_ratio",
            "an elastic trial keeps a prefix of whole heads and neurons: set prune_kind: structured",
        ),
        (
            "skip_mode",
            "stochastic",
            "skip_prob",
            "an elastic trial keeps the layers of the deterministic rule: set skip_mode: deterministic",
        ),
    )
    for name, value, gate, why in rules:
        if value in space.values_of(name) and (gate is None or _can_be_positive(space, gate)):
            raise FieldError(
                f"search_space.{name}", f"{name} {value} cannot be searched in trial_mode elastic: {why}", value
            )


def _can_be_positive(space: SearchSpace, name: str) -> bool:
    return any(_is_number(v) and v > 0 for v in space.values_of(name))
