"""The per-trial student: a copy of the teacher compressed by the recipe (prune, skip, low rank, ...), then
distilled from the teacher's cached logits for ``distillation.steps``, checked at ``early_stop.after`` and at the
rungs.  ``latencysolver retrain`` trains this kind too, at a longer budget (``students.retrained``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from latencysolver.compression import encoder_layers
from latencysolver.config.recipe import Recipe
from latencysolver.models.student import compress
from latencysolver.search.context import TrainedStudent, TrialContext
from latencysolver.search.kinds.base import StudentKind
from latencysolver.search.rungs import Rungs
from latencysolver.search.students import distill_into, early_check, layer_wise
from latencysolver.training.distillation import hidden_targets


class CompressedKind(StudentKind):
    """copy(teacher) → compress (recipe) → distill (``distillation.steps``) → finalize."""

    name = "compressed"

    def claims(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """Every recipe no other kind claims."""
        return True

    def untrained(self, ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
        """The compressed copy of the teacher, finalized (masks baked in, skipped layers gone)."""
        student = compress(ctx.teacher_model, recipe)
        return student.finalize(), student.kept_layers

    def train(
        self, ctx: TrialContext, recipe: Recipe, *, start: nn.Module | None = None, rungs: Rungs | None = None
    ) -> TrainedStudent:
        """Compress a fresh copy of the teacher (``start`` is not trained: it is finalized) and distill into it."""
        student = compress(ctx.teacher_model, recipe)
        seen: dict[str, Any] = {}
        hidden_layers = None  # with LayerDrop (or no layer-wise term): only the final layers are compared
        if layer_wise(recipe) and not student.layerdrop:
            hidden_layers = hidden_targets(student.kept_layers, len(encoder_layers(ctx.teacher_model)))
        trained = distill_into(
            ctx,
            recipe,
            student.model,
            ctx.config.distillation,
            should_stop=early_check(ctx, student.model, seen, rungs),
            hidden_weight=recipe.hidden_weight,
            attention_weight=recipe.attention_weight,
            teacher=ctx.teacher_model,
            hidden_layers=hidden_layers,
        )
        return TrainedStudent(
            student.finalize(),
            student.kept_layers,
            trained.steps,
            trained.final_loss,
            seen or None,
        )
