"""The knob table: every searched knob declared once.

A knob's name, kind, valid values, default, the architecture it applies to and when it is inactive live here and
nowhere else.  The search-space parser (``config.space``), the ``Recipe`` checks and defaults, the conditional
parameters of ``search.suggest``, the report's knob order (``results.figures``), the low-rank pass's rank rule
and the docs' knob table are all read off ``KNOBS``, so adding a knob is one ``KnobSpec`` here plus its pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

KnobKind = Literal["float", "int", "categorical", "rank"]

# The quantization knob also picks the backend: plain names run in torch, ``ort-*`` in onnxruntime.
QUANT_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "ort-fp32", "ort-int8")
# What a user gets without any search: the teacher as is in onnxruntime, torch int8, and onnxruntime int8
# (Optimum's recipe).  Every study runs them first (``usual_recipes``).
USUAL_RECIPES: tuple[str, ...] = ("ort-fp32", "int8", "ort-int8")
SKIP_MODES: tuple[str, ...] = ("deterministic", "stochastic")
PRUNE_KINDS: tuple[str, ...] = ("unstructured", "structured")
STUDENT_ARCHITECTURES: tuple[str, ...] = ("transformer", "cnn")
RANK_OFF = "off"  # how a search space writes ``rank: None``
FULL_LENGTH = "full"  # how a search space writes ``max_tokens: None``: the study's data.max_length
MIN_TOKENS = 16  # room for the specials, a question and some passage
RANK_RULE = "a positive integer or a fraction in (0, 1)"


def is_number(value: Any) -> bool:
    """A finite int or float; ``bool`` is not a number here (YAML's ``yes`` must not pass as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def valid_rank(rank: Any) -> bool:
    """The one rank rule: an int >= 1 is an absolute rank, a float in (0, 1) a fraction of each layer's full rank.

    1.0 is refused: a full-rank factorization never saves FLOPs, so it could only ever be a no-op or a typo.
    """
    if isinstance(rank, bool):
        return False
    if isinstance(rank, int):
        return rank >= 1
    return isinstance(rank, float) and 0.0 < rank < 1.0


def _in(low: float, high: float, closed_high: bool) -> Callable[[Any], bool]:
    if closed_high:
        return lambda v: is_number(v) and low <= v <= high
    return lambda v: is_number(v) and low <= v < high


@dataclass(frozen=True)
class KnobSpec:
    """One knob.  ``valid`` tests a ``Recipe`` value; ``wanted`` says the same in words for error messages.

    ``applies_to`` is "transformer" for knobs a CNN student has no use for, "both" otherwise.  ``inactive_if``
    is the knob's own condition on the values chosen before it (architecture aside); ``inactive_when`` adds the
    architecture rule.  ``off`` is the word a search space writes for a ``None`` value (``rank: off``).
    """

    name: str
    kind: KnobKind
    default: Any
    valid: Callable[[Any], bool]
    wanted: str
    description: str
    choices: tuple[str, ...] = ()
    applies_to: Literal["transformer", "both"] = "both"
    inactive_if: Callable[[Mapping[str, Any]], bool] | None = None
    inactive_note: str = ""  # the same condition in words, for the docs' knob table
    off: str | None = None

    def applies(self, architecture: Any) -> bool:
        """Whether the knob means anything for a student of this ``architecture``."""
        return self.applies_to == "both" or architecture != "cnn"

    def inactive_when(self, values: Mapping[str, Any]) -> bool:
        """Whether this knob cannot matter given the ``values`` of the knobs before it: then it is not sampled."""
        if not self.applies(values.get("architecture")):
            return True
        return self.inactive_if is not None and self.inactive_if(values)

    def accepts(self, value: Any) -> bool:
        """A valid ``Recipe`` value (``None`` for an ``off`` knob)."""
        return (value is None and self.off is not None) or self.valid(value)

    def accepts_yaml(self, value: Any) -> bool:
        """A valid search-space value (the ``off`` word instead of ``None``)."""
        return (self.off is not None and value == self.off) or self.valid(value)

    def from_yaml(self, value: Any) -> Any:
        """A search-space value as the ``Recipe`` holds it (the ``off`` word becomes ``None``)."""
        return None if self.off is not None and value == self.off else value

    def to_yaml(self, value: Any) -> Any:
        """A ``Recipe`` value as a search space writes it (``None`` becomes the ``off`` word)."""
        return self.off if value is None and self.off is not None else value

    @property
    def yaml_wanted(self) -> str:
        return f"'{self.off}', {self.wanted}" if self.off is not None else self.wanted

    @property
    def recipe_wanted(self) -> str:
        return f"{self.wanted}, or None (off)" if self.off is not None else self.wanted

    @property
    def yaml_default(self) -> Any:
        return self.to_yaml(self.default)


def _categorical(name: str, choices: tuple[str, ...], default: str, description: str, **kw: Any) -> KnobSpec:
    return KnobSpec(
        name,
        "categorical",
        default,
        lambda v: isinstance(v, str) and v in choices,
        f"one of {list(choices)}",
        description,
        choices=choices,
        **kw,
    )


# In the order they are sampled (architecture first: the others depend on it), which is also the report's order.
KNOBS: tuple[KnobSpec, ...] = (
    _categorical(
        "architecture",
        STUDENT_ARCHITECTURES,
        "transformer",
        "transformer: the teacher, compressed by the knobs below; cnn: embeddings + 1-D convolutions + a linear "
        "head (the original LatencySolver student), trained from scratch by distillation. A `cnn` trial does not "
        "sample the transformer-only knobs: Optuna conditional parameters",
    ),
    KnobSpec(
        "prune_ratio",
        "float",
        0.0,
        _in(0, 1, False),
        "a number in [0, 1)",
        "with `prune_kind: unstructured`, the fraction of each encoder Linear's weights zeroed by L1 magnitude "
        "(masks stay on while distilling); with `structured`, the fraction of each layer's attention heads and "
        "of its FFN neurons removed (least important by weight norm), so the Linears really shrink; 0 = off",
        applies_to="transformer",
    ),
    _categorical(
        "prune_kind",
        PRUNE_KINDS,
        "unstructured",
        "which meaning `prune_ratio` has",
        applies_to="transformer",
        inactive_if=lambda v: v.get("prune_ratio") == 0,
        inactive_note="`prune_ratio` is 0",
    ),
    _categorical(
        "quant_dtype",
        QUANT_DTYPES,
        "fp32",
        "precision and backend, after distillation: plain names run in torch (int8 = dynamic, per-channel int8 "
        "weights); `ort-*` export the student to ONNX and run it in onnxruntime (int8 = dynamic, per-channel; "
        "per-tensor int8 collapses small BoolQ students to the majority class). Accuracy and latency are "
        "measured on the backend that is exported",
    ),
    KnobSpec(
        "skip_prob",
        "float",
        0.0,
        _in(0, 1, False),
        "a number in [0, 1)",
        "at inference `round((1-p)·L)` encoder layers are kept (ALBERT: fewer repetitions of its shared layer)",
        applies_to="transformer",
    ),
    _categorical(
        "skip_mode",
        SKIP_MODES,
        "deterministic",
        "deterministic: a fixed rule keeps layers `i·L//k` (0,2,4 of 6) and the others are removed before "
        "distilling; stochastic: LayerDrop at rate p while distilling (the original recipe), then a seeded "
        "random choice of layers",
        applies_to="transformer",
        inactive_if=lambda v: v.get("skip_prob") == 0,
        inactive_note="`skip_prob` is 0",
    ),
    KnobSpec(
        "rank",
        "rank",
        None,
        valid_rank,
        RANK_RULE,
        "truncated-SVD `W ≈ B·A` of each encoder Linear; an integer is the rank, a fraction is that share of "
        "each layer's full rank `min(in, out)`; a layer is factorized only where `r·(in+out) < in·out`, i.e. "
        "where it saves FLOPs",
        applies_to="transformer",
        off=RANK_OFF,
    ),
    KnobSpec(
        "temperature",
        "float",
        2.0,
        lambda v: is_number(v) and v > 0,
        "a number > 0",
        "distillation temperature T: `α·T²·KL(p_T^teacher ‖ p_T^student) + (1-α)·CE`",
    ),
    KnobSpec("alpha", "float", 0.5, _in(0, 1, True), "a number in [0, 1]", "weight of the soft targets"),
    KnobSpec(
        "hidden_weight",
        "float",
        0.0,
        lambda v: is_number(v) and v >= 0,
        "a number >= 0",
        "weight of a hidden-state loss added to the above (TinyBERT-style, `latencysolver/training/distillation.py`): "
        "each kept layer's output is pulled, by masked MSE, towards the teacher's output at the end of the block "
        "of layers it replaces (layers 0, 3 of 6 → the teacher's layers 2 and 5; under LayerDrop only the final "
        "outputs). The teacher runs forward once per step for it, without gradients; 0 = off",
        applies_to="transformer",
    ),
    KnobSpec(
        "attention_weight",
        "float",
        0.0,
        lambda v: is_number(v) and v >= 0,
        "a number >= 0",
        "weight of a self-attention relation loss (MiniLMv2, `latencysolver/training/relations.py`): each kept "
        "layer's query-query, key-key and value-value relations (softmax of A·Aᵀ per relation head, tokens × "
        "tokens, so pruned widths need no projection) are pulled by KL towards those of the teacher layer the "
        "hidden-state term maps it to (under LayerDrop the last layers only). Shares the teacher's forward pass "
        "with `hidden_weight`; 0 = off",
        applies_to="transformer",
    ),
    KnobSpec(
        "max_tokens",
        "int",
        None,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= MIN_TOKENS,
        f"an integer >= {MIN_TOKENS}",
        "the student reads at most this many tokens: the question whole, the passage cut (BoolQ passages run to "
        "the study's `data.max_length`). Training, evaluation, the latency rows, the export, `predict` and `load` "
        "alike; the teacher it is paired against keeps the full length. `full` = `data.max_length`",
        off=FULL_LENGTH,
    ),
    KnobSpec(
        "recovery_steps",
        "int",
        0,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "an integer >= 0",
        "`trial_mode: elastic` only: distillation steps that recover the sliced sub-network (with `temperature`, "
        "`alpha` and `hidden_weight`) before it is measured; 0 = the slice as the elastic student trained it",
        applies_to="transformer",
    ),
)
KNOB: dict[str, KnobSpec] = {spec.name: spec for spec in KNOBS}
KNOB_NAMES: tuple[str, ...] = tuple(KNOB)
TRANSFORMER_KNOBS: tuple[str, ...] = tuple(spec.name for spec in KNOBS if spec.applies_to == "transformer")


def _values_text(spec: KnobSpec) -> str:
    if spec.kind == "categorical":
        return ", ".join(spec.choices)
    return spec.yaml_wanted


def _when_text(spec: KnobSpec) -> str:
    when = ["a `cnn` trial"] if spec.applies_to == "transformer" else []
    if spec.inactive_note:
        when.append(spec.inactive_note)
    return "; ".join(when) if when else "—"


def knob_table_markdown() -> str:
    """The knob table of docs/guides/own-model-and-data.md, generated so it cannot drift from ``KNOBS``
    (tests/test_knobs.py checks it)."""
    rows = ["| knob | values | default | not sampled when | what it does |", "| --- | --- | --- | --- | --- |"]
    for spec in KNOBS:
        default = spec.yaml_default
        rows.append(f"| `{spec.name}` | {_values_text(spec)} | `{default}` | {_when_text(spec)} | {spec.description} |")
    return "\n".join(rows) + "\n"
