"""The student of a usual-recipe trial (``usual_recipes``): the teacher itself, every layer kept, untrained,
quantized or exported as the recipe's ``quant_dtype`` says: the baseline a compressed student has to beat."""

from __future__ import annotations

from torch import nn

from latencysolver.compression import encoder_layers
from latencysolver.config.recipe import Recipe
from latencysolver.models.student import compress
from latencysolver.search.context import TrainedStudent, TrialContext
from latencysolver.search.kinds.base import StudentKind
from latencysolver.search.rungs import Rungs


class TeacherKind(StudentKind):
    """The teacher as is; ``registry.kind_of`` gives it the usual recipes, and no other trial."""

    name = "teacher"
    ranked = False

    def claims(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """No searched recipe: only a usual recipe has this kind."""
        return False

    def untrained(self, ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
        """A copy of the teacher, every layer kept."""
        student = compress(ctx.teacher_model, Recipe())
        return student.finalize(), student.kept_layers

    def train(
        self, ctx: TrialContext, recipe: Recipe, *, start: nn.Module | None = None, rungs: Rungs | None = None
    ) -> TrainedStudent:
        """Nothing to train: ``start`` (or a fresh copy of the teacher) as is."""
        if start is None:
            return TrainedStudent(*self.untrained(ctx, recipe), 0, None)
        return TrainedStudent(start, tuple(range(len(encoder_layers(start)))), 0, None)

    def trains_from_a_start(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """Never trained: there is no start to compare with."""
        return False
