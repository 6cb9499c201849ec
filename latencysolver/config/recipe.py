"""The compression recipe of one trial: the five knobs as one frozen, typed value.

A ``Recipe`` is what a trial's parameters mean.  It is built in exactly one place from an Optuna trial
(``latencysolver.search.suggest.suggest_recipe``) and from there on travels as plain data: compression passes,
distillation and export read it, none of them sees Optuna.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

QuantDtype = Literal["fp32", "bf16", "fp16", "int8", "ort-fp32", "ort-int8"]
SkipMode = Literal["deterministic", "stochastic"]
PruneKind = Literal["unstructured", "structured"]
Architecture = Literal["transformer", "cnn"]

# The quantization knob also picks the backend: plain names run in torch, ``ort-*`` in onnxruntime.
QUANT_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "ort-fp32", "ort-int8")
SKIP_MODES: tuple[str, ...] = ("deterministic", "stochastic")
PRUNE_KINDS: tuple[str, ...] = ("unstructured", "structured")
ARCHITECTURES: tuple[str, ...] = ("transformer", "cnn")
# Knobs that only mean something for the teacher-derived transformer; a CNN trial leaves them out.
TRANSFORMER_KNOBS: tuple[str, ...] = ("prune_ratio", "prune_kind", "skip_prob", "skip_mode", "rank", "hidden_weight")


@dataclass(frozen=True)
class Recipe:
    """How one student is made from the teacher.

    architecture: "transformer" (the teacher, compressed) or "cnn" (embeddings + 1-D convolutions, trained from
                  scratch by distillation; the transformer-only knobs below keep their defaults).
    prune_ratio:  0 = off.  unstructured: fraction of each encoder Linear's weights zeroed by magnitude;
                  structured: fraction of each layer's attention heads and of its FFN neurons removed.
    prune_kind:   "unstructured" or "structured".
    quant_dtype:  fp32 (off), bf16, fp16, or int8 (dynamic, weights int8 per channel, activations at run time)
                  in torch; ort-fp32 or ort-int8 (dynamic, per channel) in onnxruntime.
    skip_prob:    at inference ``round((1 - p) * L)`` encoder layers are kept.
    skip_mode:    "deterministic": a fixed evenly spaced rule picks them and the rest are removed before
                  distilling; "stochastic": LayerDrop at rate p while distilling, then a seeded random choice.
    rank:         truncated-SVD rank of every encoder Linear where that saves FLOPs; an integer is an absolute
                  rank, a float in (0, 1) a fraction of each layer's full rank min(in, out); None = off.
    temperature:  distillation temperature T of the soft targets.
    alpha:        weight of the soft (teacher) loss; 1 - alpha weighs the hard-label loss.
    hidden_weight: weight of the hidden-state loss (``distill.hidden_state_loss``): each kept layer's output
                  against the teacher's at the end of the block it replaces; 0 = off (logits only).
    seed:         seeds LayerDrop, the stochastic layer choice and the distillation data order.
    """

    prune_ratio: float = 0.0
    quant_dtype: QuantDtype = "fp32"
    skip_prob: float = 0.0
    skip_mode: SkipMode = "deterministic"
    rank: int | float | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    seed: int = 0
    prune_kind: PruneKind = "unstructured"
    architecture: Architecture = "transformer"
    hidden_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, but got {self.architecture!r}")
        if self.prune_kind not in PRUNE_KINDS:
            raise ValueError(f"prune_kind must be one of {PRUNE_KINDS}, but got {self.prune_kind!r}")
        if not 0.0 <= self.prune_ratio < 1.0:
            raise ValueError(f"prune_ratio must be in [0, 1), but got {self.prune_ratio!r}")
        if self.quant_dtype not in QUANT_DTYPES:
            raise ValueError(f"quant_dtype must be one of {QUANT_DTYPES}, but got {self.quant_dtype!r}")
        if not 0.0 <= self.skip_prob < 1.0:
            raise ValueError(f"skip_prob must be in [0, 1), but got {self.skip_prob!r}")
        if self.skip_mode not in SKIP_MODES:
            raise ValueError(f"skip_mode must be one of {SKIP_MODES}, but got {self.skip_mode!r}")
        if self.rank is not None and not _valid_rank(self.rank):
            raise ValueError(f"rank must be a positive integer, a fraction in (0, 1), or None (off), "
                             f"but got {self.rank!r}")
        if not self.temperature > 0.0:
            raise ValueError(f"temperature must be > 0, but got {self.temperature!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], but got {self.alpha!r}")
        if not self.hidden_weight >= 0.0:
            raise ValueError(f"hidden_weight must be >= 0, but got {self.hidden_weight!r}")

    @property
    def backend(self) -> str:
        return "onnxruntime" if self.quant_dtype.startswith("ort-") else "torch"

    @property
    def dtype(self) -> str:
        """The precision without the backend: fp32, bf16, fp16 or int8."""
        return self.quant_dtype.removeprefix("ort-")

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
        distill = f"T={self.temperature:.2f} alpha={self.alpha:.2f}"
        if self.hidden_weight > 0:
            distill += f" hidden={self.hidden_weight:.2g}"
        if self.architecture == "cnn":
            return f"cnn {self.quant_dtype} {distill}"
        rank = "off" if self.rank is None else str(self.rank)
        kind = "" if self.prune_ratio == 0 else ("(str)" if self.prune_kind == "structured" else "(uns)")
        return (
            f"prune={self.prune_ratio:.2f}{kind} {self.quant_dtype} skip={self.skip_prob:.2f}({self.skip_mode[:3]}) "
            f"rank={rank} {distill}"
        )


def _valid_rank(rank: Any) -> bool:
    if isinstance(rank, bool):
        return False
    if isinstance(rank, int):
        return rank >= 1
    return isinstance(rank, float) and 0.0 < rank < 1.0
