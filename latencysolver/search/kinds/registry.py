"""The student kinds a study knows, by name, and how a trial picks one (``kind_of``).

Adding a kind is one module with a ``StudentKind`` and one ``register`` call (or entry in ``KINDS``): a kind
registered later is asked first, so a new kind can claim recipes a built-in one would otherwise take.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from latencysolver.config.recipe import Recipe
from latencysolver.search.context import TrainedStudent, TrialContext
from latencysolver.search.kinds.base import StudentKind
from latencysolver.search.kinds.cnn import CNNKind
from latencysolver.search.kinds.compressed import CompressedKind
from latencysolver.search.kinds.elastic import ElasticKind
from latencysolver.search.kinds.teacher import TeacherKind
from latencysolver.search.rungs import Rungs
from latencysolver.search.students import check_accuracy, reseeded, with_augmented

# asked newest first: the fallback (compressed) first in, the most specific last
KINDS: dict[str, StudentKind] = {
    kind.name: kind for kind in (CompressedKind(), ElasticKind(), CNNKind(), TeacherKind())
}


def register(kind: StudentKind) -> StudentKind:
    """Add ``kind`` to the registry (asked before every kind registered before it); a taken name is refused."""
    if kind.name in KINDS:
        raise ValueError(f"a student kind named {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def kind_of(ctx: TrialContext, recipe: Recipe, baseline: str | None = None) -> str:
    """The kind of a trial of ``recipe`` in the study of ``ctx``: ``teacher`` for a usual recipe (``baseline``),
    else the newest registered kind that claims it."""
    if baseline:
        return TeacherKind.name
    for kind in reversed(KINDS.values()):
        if kind.claims(ctx, recipe):
            return kind.name
    raise LookupError(f"no student kind claims the recipe {recipe.to_dict()}")  # CompressedKind claims every one


def untrained_student(ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
    """The recipe's student before any training, by its kind (``StudentKind.untrained``)."""
    return KINDS[kind_of(ctx, recipe)].untrained(ctx, recipe)


def train_student(
    ctx: TrialContext,
    recipe: Recipe,
    *,
    reseed: bool = False,
    start: nn.Module | None = None,
    rungs: Rungs | None = None,
    kind: str | None = None,
) -> TrainedStudent:
    """The recipe's student trained by its ``kind`` (by default the recipe's, ``kind_of``) on the study's data as
    the recipe's student reads it: with the augmented rows that apply to it, and, for a seed repeat (``reseed``),
    the distillation seeded with the recipe's seed."""
    chosen = KINDS[kind or kind_of(ctx, recipe)]
    if reseed:
        ctx = reseeded(ctx, recipe)
    return chosen.train(with_augmented(ctx, recipe), recipe, start=start, rungs=rungs)


def keep_the_better(
    ctx: TrialContext, kind: str, recipe: Recipe, trained: TrainedStudent, start_accuracy: float
) -> TrainedStudent:
    """The trained student, unless its training left it worse on the check rows than its untrained start
    (``start_accuracy``): then the start, rebuilt by its ``kind`` (an elastic slice recovers in place), with both
    accuracies recorded."""
    accuracy = check_accuracy(ctx, trained.model)
    if accuracy >= start_accuracy:
        return trained
    model, kept = KINDS[kind].untrained(ctx, recipe)
    return dataclasses.replace(
        trained,
        model=model,
        kept_layers=kept,
        kept_start={
            "start_accuracy_on_check_rows": start_accuracy,
            "trained_accuracy_on_check_rows": accuracy,
            "steps": trained.steps,
        },
    )
