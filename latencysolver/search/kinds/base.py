"""The extension point for student kinds: what a kind of student does for a study and for each of its trials.

A trial picks its kind once (``registry.kind_of``), then asks it for the recipe's untrained student (the shape its
latency is measured on), trains it, and writes what the kind adds to the trial's record.  A kind may prepare
something once per study (the elastic student, the teacher's representations for the CNN) and share it with
workers on other machines through the study's artifact store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import optuna
from torch import nn

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig
from latencysolver.models.student import save_student
from latencysolver.results.storage import AtomicArtifactStore
from latencysolver.search.context import Prepared, RunOptions, TrainedStudent, TrialContext
from latencysolver.search.rungs import Rungs

Log = Callable[[str], None]


class StudentKind(Protocol):
    """One kind of student.  A kind subclasses this protocol to inherit the defaults below (nothing to prepare or
    share, trained from a start worth keeping, ranked at rungs, nothing added to the record, saved by
    ``models.student.save_student``) and defines ``name``, ``claims``, ``untrained`` and ``train``."""

    name: str  # the registry's key; ``kind_of`` answers it
    ranked: bool = True  # rungs (``early_stop.rungs``) may rank its trials against the others and stop them

    def claims(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """Whether a trial of ``recipe`` in this study has this kind (the registry asks the newest kind first)."""
        ...

    def untrained(self, ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
        """The recipe's student before any training, finalized, in eval mode, and the teacher layers it keeps (empty
        when it keeps none): the shape the trial measures for latency before it trains anything."""
        ...

    def train(
        self, ctx: TrialContext, recipe: Recipe, *, start: nn.Module | None = None, rungs: Rungs | None = None
    ) -> TrainedStudent:
        """The trained student.  ``ctx`` is already the recipe's (its seed, its augmented rows); ``start`` is the
        trial's untrained student when it built one; ``rungs`` may stop the training part-way."""
        ...

    def prepare(self, config: StudyConfig, prepared: Prepared, options: RunOptions, log: Log) -> Prepared:
        """What this kind needs once per study, added to ``prepared`` (``context.with_kind_state`` for a kind
        without a field of its own); ``prepared`` as is when the study has no trial of this kind."""
        return prepared

    def share(self, study: optuna.Study, prepared: Prepared, store: AtomicArtifactStore) -> None:
        """Put what ``prepare`` made into the study's artifact ``store``, for workers on other machines."""
        return None

    def fetch(self, study: optuna.Study, config: StudyConfig, options: RunOptions, log: Log) -> RunOptions:
        """A worker's ``options`` pointing at this kind's shared copy, fetched into its cache (as is: none)."""
        return options

    def trains_from_a_start(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """Whether the untrained student is worth keeping when training leaves it worse (``keep_the_better``)."""
        return True

    def record(self, ctx: TrialContext, recipe: Recipe) -> dict[str, Any]:
        """Fields this kind adds to the trial's ``TrialRecord`` (none by default)."""
        return {}

    def save(
        self, model: nn.Module, recipe: Recipe, kept: tuple[int, ...], folder: Path, extra: dict[str, Any]
    ) -> list[str]:
        """Write the trained student's files into ``folder`` (uploaded as the trial's artifacts; ``export`` and
        ``predict`` read them back); the names written."""
        return save_student(model, recipe, kept, folder, extra=extra)
