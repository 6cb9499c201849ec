"""The CNN student: a small convolutional classifier over the teacher's token ids (``models/cnn.py``), from random
weights (its embeddings seeded from the teacher's), distilled for ``cnn_distillation.steps``; with
``cnn.representation_weight`` it also learns the teacher's pooled representation of each train row, which the
study computes once (``prepare``)."""

from __future__ import annotations

import torch
from torch import nn

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig
from latencysolver.devices import training_placement
from latencysolver.models.student import cnn_student
from latencysolver.models.teacher import teacher_representations
from latencysolver.search.context import Prepared, RunOptions, TrainedStudent, TrialContext
from latencysolver.search.kinds.base import Log, StudentKind
from latencysolver.search.rungs import Rungs
from latencysolver.search.students import distill_into, early_check, student_length


class CNNKind(StudentKind):
    """``architecture: cnn`` recipes: a fresh CNN, distilled."""

    name = "cnn"

    def claims(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """The recipes whose ``architecture`` is ``cnn``."""
        return recipe.architecture == "cnn"

    def prepare(self, config: StudyConfig, prepared: Prepared, options: RunOptions, log: Log) -> Prepared:
        """The teacher's pooled representation of every train row (cached), when the space has the CNN and its
        representation loss is on."""
        if "cnn" not in config.search_space.values_of("architecture") or config.cnn.representation_weight <= 0:
            return prepared
        prepared.train_representations = teacher_representations(
            prepared.teacher,
            prepared.train,
            prepared.cache_root,
            prepared.data.train.fingerprint(),
            pad_id=prepared.pad_id,
            progress=options.progress,
            device=training_placement(config).device,
        )
        return prepared

    def untrained(self, ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
        """A fresh CNN seeded by the recipe's seed; it keeps no teacher layer."""
        return cnn_student(ctx.teacher_model, ctx.config.cnn, student_length(ctx.config, recipe), recipe.seed), ()

    def train(
        self, ctx: TrialContext, recipe: Recipe, *, start: nn.Module | None = None, rungs: Rungs | None = None
    ) -> TrainedStudent:
        """A fresh CNN (``start`` is not reused) distilled for ``cnn_distillation``, with the representation loss."""
        model = cnn_student(ctx.teacher_model, ctx.config.cnn, student_length(ctx.config, recipe), recipe.seed)
        seen: dict = {}
        should_stop = early_check(ctx, model, seen, rungs)
        weight = ctx.config.cnn.representation_weight
        representations = ctx.teacher_train_representations if weight > 0 else None
        extra = ctx.augmented
        if representations is not None and extra is not None and extra.representations is not None:
            representations = torch.cat([representations, extra.representations])
        trained = distill_into(
            ctx,
            recipe,
            model,
            ctx.config.cnn_distillation,
            should_stop=should_stop,
            representations=representations,
            representation_weight=weight,
        )
        return TrainedStudent(model.eval(), (), trained.steps, trained.final_loss, seen or None)

    def trains_from_a_start(self, ctx: TrialContext, recipe: Recipe) -> bool:
        """It starts from random weights: no start worth keeping."""
        return False
