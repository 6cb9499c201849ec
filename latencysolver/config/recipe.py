"""The compression recipe of one trial: every knob of ``config.knobs.KNOBS`` as one frozen, typed value.

A ``Recipe`` is what a trial's parameters mean.  It is built in exactly one place from an Optuna trial
(``latencysolver.search.suggest.suggest_recipe``) and from there on travels as plain data: compression passes,
distillation and export read it, none of them sees Optuna.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from latencysolver.config.knobs import KNOB, KNOBS

# Static types for the categorical knobs; tests/test_knobs.py checks they list the knob table's choices.
QuantDtype = Literal["fp32", "bf16", "fp16", "int8", "ort-fp32", "ort-int8"]
SkipMode = Literal["deterministic", "stochastic"]
PruneKind = Literal["unstructured", "structured"]
StudentArchitecture = Literal["transformer", "cnn"]


@dataclass(frozen=True)
class Recipe:
    """How one student is made from the teacher: one value per knob, plus the seed.

    What each knob means, which values it takes, its default and when it is inactive is declared once, in
    ``config.knobs.KNOBS`` (the docs' knob table is generated from it); ``__post_init__`` applies that
    table's checks.  A CNN recipe keeps the transformer-only knobs at their defaults.  ``rank`` is None when off.

    seed: the trial number; seeds LayerDrop, the stochastic layer choice and the distillation data order.
    """

    # The field order is that of stored recipes (``to_dict``); the defaults come from the knob table.
    prune_ratio: float = KNOB["prune_ratio"].default
    quant_dtype: QuantDtype = KNOB["quant_dtype"].default
    skip_prob: float = KNOB["skip_prob"].default
    skip_mode: SkipMode = KNOB["skip_mode"].default
    rank: int | float | None = KNOB["rank"].default
    temperature: float = KNOB["temperature"].default
    alpha: float = KNOB["alpha"].default
    seed: int = 0
    prune_kind: PruneKind = KNOB["prune_kind"].default
    architecture: StudentArchitecture = KNOB["architecture"].default
    hidden_weight: float = KNOB["hidden_weight"].default
    max_tokens: int | None = KNOB["max_tokens"].default  # None: the study's data.max_length
    recovery_steps: int = KNOB["recovery_steps"].default  # trial_mode elastic only
    attention_weight: float = KNOB["attention_weight"].default

    def __post_init__(self) -> None:
        for spec in KNOBS:  # one rule per knob, the same the search-space parser applies
            value = getattr(self, spec.name)
            if not spec.accepts(value):
                raise ValueError(f"{spec.name} must be {spec.recipe_wanted}, but got {value!r}")

    @property
    def backend(self) -> str:
        return "onnxruntime" if self.quant_dtype.startswith("ort-") else "torch"

    @property
    def dtype(self) -> str:
        """The precision without the backend: fp32, bf16, fp16 or int8."""
        return self.quant_dtype.removeprefix("ort-")

    def to_dict(self) -> dict[str, Any]:
        """Every knob by name, as a trial's record and an export's ``student.json`` store it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The recipe ``to_dict`` wrote; an unknown key is a ``ValueError``, a missing one takes its default."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown recipe keys {unknown}")
        return cls(**data)

    def describe(self) -> str:
        """A short human-readable line, e.g. for the per-trial summary; ``from_description`` reads it back."""
        distill = f"T={self.temperature:.2f} alpha={self.alpha:.2f}"
        if self.hidden_weight > 0:
            distill += f" hidden={self.hidden_weight:.2g}"
        if self.attention_weight > 0:
            distill += f" attention={self.attention_weight:.2g}"
        if self.max_tokens is not None:
            distill += f" tokens={self.max_tokens}"
        if self.recovery_steps:
            distill += f" recovery={self.recovery_steps}"
        if self.architecture == "cnn":
            return f"cnn {self.quant_dtype} {distill}"
        rank = "off" if self.rank is None else str(self.rank)
        kind = "" if self.prune_ratio == 0 else ("(str)" if self.prune_kind == "structured" else "(uns)")
        return (
            f"prune={self.prune_ratio:.2f}{kind} {self.quant_dtype} skip={self.skip_prob:.2f}({self.skip_mode[:3]}) "
            f"rank={rank} {distill}"
        )

    @classmethod
    def from_description(cls, text: str) -> Recipe:
        """The recipe ``describe`` wrote ``text`` for, its numbers to the precision written (temperature and alpha
        to 2 decimals); the seed is not written, so it is 0.  A word it does not know is a ``ValueError``."""
        values: dict[str, Any] = {}
        for word in text.split():
            key, _, value = word.partition("=")
            number, _, kind = value.partition("(")
            if not value:
                values["architecture" if key == "cnn" else "quant_dtype"] = key
            elif key in _DESCRIBED_FLOATS:
                values[_DESCRIBED_FLOATS[key]] = float(number)
                if kind:
                    short = kind.rstrip(")")
                    name, full = ("prune_kind", _PRUNE_KINDS) if key == "prune" else ("skip_mode", _SKIP_MODES)
                    if short not in full:
                        raise ValueError(f"recipe description {text!r}: unknown {name} {short!r}")
                    values[name] = full[short]
            elif key == "rank":
                values["rank"] = None if value == "off" else float(value) if "." in value else int(value)
            elif key in ("tokens", "recovery"):
                values["max_tokens" if key == "tokens" else "recovery_steps"] = int(value)
            else:
                raise ValueError(f"recipe description {text!r}: unknown word {word!r}")
        return cls(**values)


_DESCRIBED_FLOATS = {
    "prune": "prune_ratio",
    "skip": "skip_prob",
    "T": "temperature",
    "alpha": "alpha",
    "hidden": "hidden_weight",
    "attention": "attention_weight",
}
_PRUNE_KINDS = {"str": "structured", "uns": "unstructured"}
_SKIP_MODES = {mode[:3]: mode for mode in ("deterministic", "stochastic")}
