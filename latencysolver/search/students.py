"""How a trial gets its student, in each trial mode; what every trial of a study shares (``TrialContext``).

    per-trial:  copy(teacher) → compress (recipe) → distill (distillation.steps) → finalize
    elastic:    slice(elastic student) (prune ratio → width prefix, skip → depth) → low rank → recover
                (``recovery_steps``, 0 allowed)

Both modes first build the student's *shape* untrained (``untrained_student``): its latency depends only on the
architecture and the backend, so ``run_trial`` measures it before any training and skips the training of a trial
that cannot reach ``constraints.min_speedup``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latencysolver.compression import encoder_layers, factorize_
from latencysolver.compression.elastic import slice_model, subnetwork
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig
from latencysolver.config.training import TrainConfig
from latencysolver.data.batches import EncodedSplit, concat, truncate, truncate_inputs
from latencysolver.devices import training_placement
from latencysolver.latency.hardware import HardwareFingerprint
from latencysolver.latency.protocol import throughput_inputs
from latencysolver.models.elastic import ElasticStudent
from latencysolver.models.student import cnn_student, compress
from latencysolver.results.storage import AtomicArtifactStore
from latencysolver.search.rungs import Rungs
from latencysolver.training.distillation import distill, hidden_targets
from latencysolver.training.evaluate import log_likelihood, predict_logits, ranking_auc, scores
from latencysolver.training.loop import TrainResult


@dataclass(frozen=True)
class AugmentedRows:
    """The rows built from the train rows (data/augment.py), labelled by the teacher: its logits (the split's
    labels are their argmax, for the hard-label term) and, with the CNN's representation loss, its pooled
    representations.  Added to the distillation of every student (``data.augment``), or of the CNN alone
    (``cnn.augment``); never evaluated on."""

    split: EncodedSplit
    logits: torch.Tensor
    representations: torch.Tensor | None = None
    every_student: bool = True
    key: str = ""  # the labels' cache key (models/augmented.py)
    path: Path | None = None  # their cache folder: what the study's artifact store shares with workers

    def applies_to(self, recipe: Recipe) -> bool:
        return self.every_student or recipe.architecture == "cnn"


@dataclass
class TrialContext:
    """What every trial of a study shares; built once per ``run``."""

    config: StudyConfig
    teacher_model: torch.nn.Module
    teacher_train_logits: torch.Tensor
    train: EncodedSplit
    validation: EncodedSplit
    latency_inputs: list[dict[str, torch.Tensor]]
    artifact_store: AtomicArtifactStore
    hardware: HardwareFingerprint
    throughput_inputs: list[dict[str, torch.Tensor]] | None = None
    majority_rate: float = 0.0  # of the validation split
    pad_id: int = 0
    progress: bool = True
    teacher_predictions: torch.Tensor | None = None  # the teacher's class per validation row: the paired statistics
    # seed repeats (`latencysolver confirm`) are also measured on the test split, paired with the teacher there
    test: EncodedSplit | None = None
    teacher_test_predictions: torch.Tensor | None = None
    # the teacher's quiet p50 on this hardware: a trial's paired teacher p50 far above it means a loaded machine
    baseline_reference_ms: float | None = None
    elastic: ElasticStudent | None = None  # trial_mode elastic: the student every trial slices
    # cnn.representation_weight > 0: the teacher's pooled representation of each train row (the CNN's extra target)
    teacher_train_representations: torch.Tensor | None = None
    augmented: AugmentedRows | None = None  # data.augment > 0 (or cnn.augment > 0 with the CNN in the space)


@dataclass
class TrainedStudent:
    model: torch.nn.Module  # fp32, finalized, eval mode
    kept_layers: tuple[int, ...]  # teacher layers kept (empty for a CNN)
    steps: int
    final_loss: float | None  # None: not trained (an elastic slice without recovery, a trial rejected on latency)
    # set when a check stopped distillation: {"step", "accuracy_on_check_rows", "reason": "floor" | "rung",
    # and "floor" or the rung's decision}
    early_stopped: dict[str, Any] | None = None
    kept_start: dict[str, Any] | None = None  # set by ``keep_the_better`` when the untrained start was kept


def accuracy_floor(ctx: TrialContext) -> float:
    floor = ctx.config.constraints.min_accuracy
    return ctx.majority_rate if floor is None else floor


def _early_check(ctx: TrialContext, model: torch.nn.Module, seen: dict[str, Any], rungs: Rungs | None = None):
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


def trains_from_a_start(ctx: TrialContext, recipe: Recipe) -> bool:
    """Whether the trial's student is trained from a start worth keeping: a compressed teacher, or an elastic
    slice that recovers.  A CNN starts from random weights; a slice without recovery is not trained at all."""
    if recipe.architecture == "cnn":
        return False
    return ctx.elastic is None or recipe.recovery_steps > 0


def keep_the_better(
    ctx: TrialContext, recipe: Recipe, trained: TrainedStudent, start_accuracy: float
) -> TrainedStudent:
    """The trained student, unless its distillation left it worse on the check rows than its untrained start
    (``start_accuracy``): then the start, rebuilt (an elastic slice recovers in place), with both accuracies
    recorded.  A CNN starts from random weights, so it never has a start worth keeping."""
    accuracy = check_accuracy(ctx, trained.model)
    if accuracy >= start_accuracy:
        return trained
    model, kept = untrained_student(ctx, recipe)
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


def teacher_as_is(ctx: TrialContext) -> tuple[nn.Module, tuple[int, ...]]:
    """The student of a usual-recipe trial: the teacher itself (a copy, every layer kept), untrained."""
    student = compress(ctx.teacher_model, Recipe())
    return student.finalize(), student.kept_layers


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
    """A seed repeat of ``latencysolver confirm``: the distillation's data order and dropout are seeded with
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


def untrained_student(ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
    """The trial's student before any training, finalized (masks baked in, skipped layers gone), in eval mode,
    with the teacher layers it keeps: the shape its latency is measured on.  In elastic mode it is also where the
    trial starts from."""
    if recipe.architecture == "cnn":
        return cnn_student(ctx.teacher_model, ctx.config.cnn, student_length(ctx.config, recipe), recipe.seed), ()
    if ctx.elastic is not None:
        sub = subnetwork(ctx.elastic.shape, recipe.prune_ratio, recipe.skip_prob)
        model = slice_model(ctx.elastic.model, sub)
        if recipe.rank is not None:
            factorize_(model, recipe.rank)  # the truncated SVD of the sliced Linears
        return model.eval(), sub.layers
    student = compress(ctx.teacher_model, recipe)
    return student.finalize(), student.kept_layers


def train_student(
    ctx: TrialContext,
    recipe: Recipe,
    *,
    reseed: bool = False,
    start: nn.Module | None = None,
    rungs: Rungs | None = None,
) -> TrainedStudent:
    """Per-trial mode: compress the teacher (or build a CNN) and distill the teacher's cached logits into it,
    checked at ``early_stop.after`` and at ``rungs``.  Elastic mode: ``start`` (the slice from
    ``untrained_student``) recovers for ``recipe.recovery_steps``."""
    if reseed:
        ctx = reseeded(ctx, recipe)
    ctx = with_augmented(ctx, recipe)
    if ctx.elastic is not None and recipe.architecture != "cnn":
        return _recover(ctx, recipe, start)
    if recipe.architecture == "cnn":
        model = cnn_student(ctx.teacher_model, ctx.config.cnn, student_length(ctx.config, recipe), recipe.seed)
        seen: dict[str, Any] = {}
        should_stop = _early_check(ctx, model, seen, rungs)
        weight = ctx.config.cnn.representation_weight
        representations = ctx.teacher_train_representations if weight > 0 else None
        extra = ctx.augmented
        if representations is not None and extra is not None and extra.representations is not None:
            representations = torch.cat([representations, extra.representations])
        trained = _distill(
            ctx,
            recipe,
            model,
            ctx.config.cnn_distillation,
            should_stop=should_stop,
            representations=representations,
            representation_weight=weight,
        )
        return TrainedStudent(model.eval(), (), trained.steps, trained.final_loss, seen or None)
    student = compress(ctx.teacher_model, recipe)
    seen = {}
    hidden_layers = None  # with LayerDrop (or no layer-wise term): only the final layers are compared
    if layer_wise(recipe) and not student.layerdrop:
        hidden_layers = hidden_targets(student.kept_layers, len(encoder_layers(ctx.teacher_model)))
    trained = _distill(
        ctx,
        recipe,
        student.model,
        ctx.config.distillation,
        should_stop=_early_check(ctx, student.model, seen, rungs),
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


def layer_wise(recipe: Recipe) -> bool:
    """The recipe learns the teacher's layers, not only its logits (hidden states, attention relations)."""
    return recipe.hidden_weight > 0 or recipe.attention_weight > 0


def _recover(ctx: TrialContext, recipe: Recipe, start: nn.Module | None) -> TrainedStudent:
    """An elastic trial: the slice as the elastic student trained it, then ``recovery_steps`` of distillation with
    the recipe's temperature, alpha and hidden-state weight (the study's ``distillation`` optimizer settings)."""
    model, kept = untrained_student(ctx, recipe) if start is None else (start, _elastic_layers(ctx, recipe))
    if recipe.recovery_steps == 0:
        return TrainedStudent(model.eval(), kept, 0, None)
    hidden_layers = hidden_targets(kept, len(encoder_layers(ctx.teacher_model))) if layer_wise(recipe) else None
    trained = _distill(
        ctx,
        recipe,
        model,
        dataclasses.replace(ctx.config.distillation, steps=recipe.recovery_steps),
        hidden_weight=recipe.hidden_weight,
        attention_weight=recipe.attention_weight,
        teacher=ctx.teacher_model,
        hidden_layers=hidden_layers,
    )
    return TrainedStudent(model.eval(), kept, trained.steps, trained.final_loss)


def _distill(ctx: TrialContext, recipe: Recipe, model: nn.Module, budget: TrainConfig, **extra: Any) -> TrainResult:
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


def _elastic_layers(ctx: TrialContext, recipe: Recipe) -> tuple[int, ...]:
    assert ctx.elastic is not None  # elastic mode only
    return subnetwork(ctx.elastic.shape, recipe.prune_ratio, recipe.skip_prob).layers


def data_schema(ctx: TrialContext) -> dict[str, Any]:
    """What an export reads and answers, for its ``student.json``: the study's columns and the teacher's class
    names (``predict`` and ``bench`` read them back with ``data.text.recorded_schema``)."""
    id2label: Any = getattr(ctx.teacher_model.config, "id2label", None) or {0: "no", 1: "yes"}
    return {
        "columns": dataclasses.asdict(ctx.config.data.columns),
        "labels": [str(id2label[k]) for k in sorted(id2label, key=int)],
    }


def elastic_description(ctx: TrialContext, recipe: Recipe) -> dict[str, Any] | None:
    """What an elastic trial sliced, for its record (None in per-trial mode)."""
    if ctx.elastic is None or recipe.architecture == "cnn":
        return None
    sub = subnetwork(ctx.elastic.shape, recipe.prune_ratio, recipe.skip_prob)
    return {"key": ctx.elastic.key, **dataclasses.asdict(sub), "recovery_steps": recipe.recovery_steps}
