"""The compression recipe of one trial: the five knobs as one frozen, typed value.

A ``Recipe`` is what a trial's parameters mean.  It is built in exactly one place from an Optuna trial
(``latencysolver.objective.suggest_recipe``) and from there on travels as plain data: compression passes,
distillation and export read it, none of them sees Optuna.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

QuantDtype = Literal["fp32", "bf16", "fp16", "int8"]
SkipMode = Literal["deterministic", "stochastic"]

QUANT_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
SKIP_MODES: tuple[str, ...] = ("deterministic", "stochastic")


@dataclass(frozen=True)
class Recipe:
    """How one student is made from the teacher.

    prune_ratio:  fraction of each encoder Linear's weights zeroed by magnitude (0 = off).
    quant_dtype:  fp32 (off), bf16, fp16, or int8 (dynamic, weights int8 per channel, activations at run time).
    skip_prob:    at inference ``round((1 - p) * L)`` encoder layers are kept.
    skip_mode:    "deterministic": a fixed evenly spaced rule picks them and the rest are removed before
                  distilling; "stochastic": LayerDrop at rate p while distilling, then a seeded random choice.
    rank:         truncated-SVD rank of every encoder Linear where that saves FLOPs; None = off.
    temperature:  distillation temperature T of the soft targets.
    alpha:        weight of the soft (teacher) loss; 1 - alpha weighs the hard-label loss.
    seed:         seeds LayerDrop, the stochastic layer choice and the distillation data order.
    """

    prune_ratio: float = 0.0
    quant_dtype: QuantDtype = "fp32"
    skip_prob: float = 0.0
    skip_mode: SkipMode = "deterministic"
    rank: int | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prune_ratio < 1.0:
            raise ValueError(f"prune_ratio must be in [0, 1), but got {self.prune_ratio!r}")
        if self.quant_dtype not in QUANT_DTYPES:
            raise ValueError(f"quant_dtype must be one of {QUANT_DTYPES}, but got {self.quant_dtype!r}")
        if not 0.0 <= self.skip_prob < 1.0:
            raise ValueError(f"skip_prob must be in [0, 1), but got {self.skip_prob!r}")
        if self.skip_mode not in SKIP_MODES:
            raise ValueError(f"skip_mode must be one of {SKIP_MODES}, but got {self.skip_mode!r}")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"rank must be a positive integer or None (off), but got {self.rank!r}")
        if not self.temperature > 0.0:
            raise ValueError(f"temperature must be > 0, but got {self.temperature!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], but got {self.alpha!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown recipe keys {unknown}")
        return cls(**data)

    def describe(self) -> str:
        """A short human-readable line, e.g. for the per-trial summary."""
        rank = "off" if self.rank is None else str(self.rank)
        return (
            f"prune={self.prune_ratio:.2f} {self.quant_dtype} skip={self.skip_prob:.2f}({self.skip_mode[:3]}) "
            f"rank={rank} T={self.temperature:.2f} alpha={self.alpha:.2f}"
        )
