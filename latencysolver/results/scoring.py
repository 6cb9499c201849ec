"""A model scored against the teacher on the same rows, per split: its accuracy with a Wilson interval, and its
paired difference to the teacher (Newcombe's interval, McNemar's test: ``latencysolver.stats``).

``score`` takes predictions, so a trial (its stored ``predictions.json``), a seed repeat and a benchmark's
baseline are scored alike; ``score_model`` runs a model on named splits first.  ``markdown_table`` writes the
tables the benchmarks print and keep in ``results.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from numpy.typing import ArrayLike

from latencysolver.data.batches import EncodedSplit
from latencysolver.stats import Interval, PairedComparison, accuracy_interval, correct_of, paired_difference
from latencysolver.training.evaluate import Classifier, predict_logits


@dataclass(frozen=True)
class Score:
    """One model on one split: ``accuracy`` with its two-sided ``interval``, and ``vs_teacher``, the paired
    comparison with the teacher on the same rows (None when no teacher predictions were given)."""

    accuracy: float
    interval: Interval
    vs_teacher: PairedComparison | None
    predictions: tuple[int, ...] = field(repr=False)

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        """``{prefix}accuracy``, ``{prefix}accuracy_interval`` and ``{prefix}vs_teacher`` (``Interval.to_dict``,
        ``PairedComparison.to_dict`` or None): the keys trial user attrs use, ``prefix="test_"`` for the test
        split; the predictions are left out."""
        return {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}accuracy_interval": self.interval.to_dict(),
            f"{prefix}vs_teacher": self.vs_teacher.to_dict() if self.vs_teacher is not None else None,
        }


def score(
    predictions: ArrayLike,
    labels: ArrayLike,
    teacher_predictions: ArrayLike | None = None,
    confidence: float = 0.95,
) -> Score:
    """Score ``predictions`` (class ids, one per row) against ``labels``, and against the teacher's
    ``teacher_predictions`` on the same rows when given.  Lengths must match (ValueError otherwise);
    ``confidence`` is the two-sided level of both intervals."""
    predicted = [int(p) for p in _flat(predictions)]
    truth = [int(y) for y in _flat(labels)]
    correct = correct_of(predicted, truth)
    vs_teacher = None
    if teacher_predictions is not None:
        teacher = correct_of([int(p) for p in _flat(teacher_predictions)], truth)
        vs_teacher = paired_difference(correct, teacher, confidence)
    interval = accuracy_interval(correct, confidence)
    return Score(float(correct.mean()), interval, vs_teacher, tuple(predicted))


def _flat(values: ArrayLike) -> list[Any]:
    tolist = getattr(values, "tolist", None)  # a tensor or an array: plain Python numbers
    return list(tolist() if tolist is not None else values)  # type: ignore[arg-type]


def predicted_classes(model: Classifier, split: EncodedSplit, pad_id: int, progress: bool = False) -> list[int]:
    """The class ``model`` predicts for each row of ``split`` (argmax of its logits), in row order."""
    return predict_logits(model, split, pad_id=pad_id, progress=progress).argmax(dim=-1).tolist()


def score_model(
    model: Classifier,
    splits: Mapping[str, EncodedSplit],
    teacher_predictions: Mapping[str, Sequence[int]] | None = None,
    *,
    pad_id: int = 0,
    progress: bool = False,
) -> dict[str, Score]:
    """``model`` run on each named split and scored there, paired with ``teacher_predictions[name]`` where that
    split has them."""
    teacher = teacher_predictions or {}
    return {
        name: score(predicted_classes(model, split, pad_id, progress), split.labels, teacher.get(name))
        for name, split in splits.items()
    }


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A GitHub markdown table: the first ``left`` columns left-aligned (names, recipes), the rest right-aligned
    (figures).  Cells are written with ``str``; a ``|`` inside a cell is escaped."""
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"markdown_table: every row needs {len(columns)} cells")

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |\n"

    rule = "|" + " --- |" * min(left, len(columns)) + " ---: |" * max(len(columns) - left, 0) + "\n"
    return line(columns) + rule + "".join(line(r) for r in rows)
