"""The ``data:`` block of a study: where the rows are, which columns hold them, the class names, and the
teacher-labelled rows built from them for distillation (``data.augment``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from latencysolver.config.training import (
    AUGMENT_KINDS,
    _check_non_negative,
    _check_positive,
    _check_seed,
    check_some_of,
)
from latencysolver.errors import FieldError, shown


@dataclass(frozen=True)
class ColumnsConfig:
    """``data.columns``: which columns hold a row's text, its second text (null: single-text data) and its label.
    The defaults are BoolQ's (whose hub copy calls the label ``answer``, also accepted)."""

    text: str = "question"
    text_pair: str | None = "passage"
    label: str = "label"

    def __post_init__(self) -> None:
        for name in ("text", "text_pair", "label"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise FieldError(name, f"{name} must name a column, but got {shown(value)}", value)
        if len({self.text, self.text_pair, self.label} - {None}) < (3 if self.text_pair is not None else 2):
            raise FieldError("label", "text, text_pair and label must be different columns", self.label)


@dataclass(frozen=True)
class DataConfig:
    """The study file's ``data:`` block: where the rows come from, their columns and classes, the augmented rows."""

    source: str = "google/boolq"  # a hub dataset name or a local folder of jsonl/parquet files
    max_length: int = 256
    limit_train: int | None = None
    limit_validation: int | None = None
    limit_test: int | None = None
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    # the class names, in class order; a file's label is one of them or an index into them.  null: no/yes for
    # true/false labels, 0..K-1 for integers, the sorted names found in train for strings
    labels: tuple[str, ...] | None = None
    # Teacher-labelled rows built from each train row (latencysolver/data/augment.py), this many per row, for the
    # distillation of every student (per-trial, elastic, CNN, retrained); never evaluated on.  0 = off.  The
    # teacher labels them once, cached and shared with workers like the teacher.
    augment: int = 0
    # which generators take turns (null: every one that applies to the data; ``repair`` needs text pairs)
    augment_kinds: tuple[str, ...] | None = None
    augment_seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "max_length", "limit_train", "limit_validation", "limit_test")
        _check_non_negative(self, "augment")
        _check_seed(self, "augment_seed")
        check_some_of(self, "augment_kinds", AUGMENT_KINDS)
        if self.labels is not None and (len(set(self.labels)) != len(self.labels) or len(self.labels) < 2):
            names = shown(list(self.labels))
            raise FieldError("labels", f"labels must be at least two different names, but got {names}", self.labels)
        blank = [name for name in self.labels or () if not name.strip()]
        if blank:
            raise FieldError("labels", f"each label must be a name, but got {shown(blank[0])}", blank[0])
