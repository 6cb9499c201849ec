"""What every student kind (``search/kinds``) trains with: the checks that stop a distillation early, the study's
data as a recipe's student reads it (``max_tokens``, the augmented rows, a repeat's seed, a retrain's budget), and
the distillation of the teacher's cached logits into a model (``distill_into``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig
from latencysolver.config.training import TrainConfig
from latencysolver.data.batches import concat, truncate, truncate_inputs
from latencysolver.devices import training_placement
from latencysolver.latency.protocol import throughput_inputs
from latencysolver.search.context import TrialContext
from latencysolver.search.rungs import Rungs
from latencysolver.training.distillation import distill
from latencysolver.training.evaluate import log_likelihood, predict_logits, ranking_auc, scores
from latencysolver.training.loop import TrainResult


def accuracy_floor(ctx: TrialContext) -> float:
    """The accuracy a student must beat: ``constraints.min_accuracy``, else the validation majority rate."""
    floor = ctx.config.constraints.min_accuracy
    return ctx.majority_rate if floor is None else floor


def early_check(ctx: TrialContext, model: torch.nn.Module, seen: dict[str, Any], rungs: Rungs | None = None):
    """``should_stop`` for distill(): a look at the first ``early_stop.rows`` validation rows at the floor check
    (``early_stop.after`` of the steps) and at each rung.  What stopped it goes into ``seen``."""
    rule = ctx.config.early_stop
    if rule.after is None and rungs is None:
        return None
    rows = ctx.validation.head(rule.rows)

    def should_stop(step: int, total: int) -> bool:
        floor_check = rule.after is not None and step == max(1, round(rule.after * total))
        rung = rungs.rung_at(step, total) if rungs is not None else None
        if not floor_check and rung is None:
            return False
        logits = predict_logits(model, rows, pad_id=ctx.pad_id, progress=False)
        accuracy = scores(logits, rows.labels).accuracy
        model.train()
        decision = None
        if rungs is not None and rung is not None:
            signals = {
                "accuracy": accuracy,
                "auc": ranking_auc(logits, rows.labels),
                "log_likelihood": log_likelihood(logits, rows.labels),
            }
            decision = rungs.reached(rung, step, signals)
        if floor_check and accuracy <= accuracy_floor(ctx):
            seen.update(step=step, accuracy_on_check_rows=accuracy, reason="floor", floor=accuracy_floor(ctx))
            return True
        if decision is not None and decision.stop:
            seen.update(step=step, accuracy_on_check_rows=accuracy, reason="rung", rung=decision.to_dict())
            return True
        return False

    return should_stop


def check_accuracy(ctx: TrialContext, model: nn.Module) -> float:
    """Accuracy of the fp32 ``model`` on the check rows (the first ``early_stop.rows`` validation rows)."""
    rows = ctx.validation.head(ctx.config.early_stop.rows)
    accuracy = scores(predict_logits(model, rows, pad_id=ctx.pad_id, progress=False), rows.labels).accuracy
    model.eval()
    return accuracy


def student_length(config: StudyConfig, recipe: Recipe) -> int:
    """How many tokens the student reads: the recipe's ``max_tokens``, else the study's ``data.max_length``."""
    return min(recipe.max_tokens or config.data.max_length, config.data.max_length)


def for_recipe(ctx: TrialContext, recipe: Recipe) -> TrialContext:
    """``ctx`` as the recipe's student reads it: every split and latency row cut to ``max_tokens`` (the teacher's
    cached train logits stay those of the full rows: the student learns to answer from less)."""
    n = student_length(ctx.config, recipe)
    if n >= ctx.config.data.max_length:
        return ctx
    validation = truncate(ctx.validation, n)
    latency = ctx.config.latency
    extra = ctx.augmented
    return dataclasses.replace(
        ctx,
        augmented=dataclasses.replace(extra, split=truncate(extra.split, n)) if extra is not None else None,
        train=truncate(ctx.train, n),
        validation=validation,
        latency_inputs=[truncate_inputs(x, n) for x in ctx.latency_inputs],
        throughput_inputs=(
            throughput_inputs(validation, latency, latency.throughput_batch_size, ctx.pad_id)
            if ctx.throughput_inputs and latency.throughput_batch_size
            else None
        ),
        test=truncate(ctx.test, n) if ctx.test is not None else None,
    )


def reseeded(ctx: TrialContext, recipe: Recipe) -> TrialContext:
    """A seed repeat of ``confirm`` (or ``retrain --seeds``): the distillation's data order and dropout are seeded with
    ``recipe.seed`` instead of the study's ``distillation.seed``, so a repeat differs from its search trial even
    when nothing else in the recipe is random (deterministic skip, no LayerDrop)."""
    config = dataclasses.replace(
        ctx.config,
        distillation=dataclasses.replace(ctx.config.distillation, seed=recipe.seed),
        cnn_distillation=dataclasses.replace(ctx.config.cnn_distillation, seed=recipe.seed),
    )
    return dataclasses.replace(ctx, config=config)


def retrained(ctx: TrialContext, steps: int) -> TrialContext:
    """A trial of ``latencysolver retrain``: its recipe's student distilled from the teacher for ``steps`` (the
    data order and seeds of its search trial, the augmented rows as every student gets them).  In an elastic study
    too, the recipe is distilled per-trial from the teacher, not sliced from the elastic student."""
    config = dataclasses.replace(
        ctx.config,
        distillation=dataclasses.replace(ctx.config.distillation, steps=steps),
        cnn_distillation=dataclasses.replace(ctx.config.cnn_distillation, steps=steps),
    )
    return dataclasses.replace(ctx, config=config, elastic=None)


def with_augmented(ctx: TrialContext, recipe: Recipe) -> TrialContext:
    """``ctx`` with the augmented rows joined to the train rows (indices past the originals) and the teacher's
    logits on them, when they apply to this recipe's student."""
    extra = ctx.augmented
    if extra is None or not extra.applies_to(recipe):
        return ctx
    return dataclasses.replace(
        ctx,
        train=concat(ctx.train, extra.split),
        teacher_train_logits=torch.cat([ctx.teacher_train_logits, extra.logits]),
    )


def layer_wise(recipe: Recipe) -> bool:
    """The recipe learns the teacher's layers, not only its logits (hidden states, attention relations)."""
    return recipe.hidden_weight > 0 or recipe.attention_weight > 0


def distill_into(ctx: TrialContext, recipe: Recipe, model: nn.Module, budget: TrainConfig, **extra: Any) -> TrainResult:
    """The teacher's cached logits into ``model``, at the recipe's temperature and alpha."""
    return distill(
        model,
        ctx.train,
        ctx.teacher_train_logits,
        budget,
        recipe.temperature,
        recipe.alpha,
        pad_id=ctx.pad_id,
        progress=ctx.progress,
        placement=training_placement(ctx.config),
        **extra,
    )


def data_schema(ctx: TrialContext) -> dict[str, Any]:
    """What an export reads and answers, for its ``student.json``: the study's columns and the teacher's class
    names (``predict`` and ``bench`` read them back with ``data.text.recorded_schema``)."""
    id2label: Any = getattr(ctx.teacher_model.config, "id2label", None) or {0: "no", 1: "yes"}
    return {
        "columns": dataclasses.asdict(ctx.config.data.columns),
        "labels": [str(id2label[k]) for k in sorted(id2label, key=int)],
    }
