"""The Optuna objective: one trial = one recipe → one compressed, distilled, measured student.

``suggest.suggest_recipe`` is the only code that calls ``trial.suggest_*``.  Everything after it works on plain models
and dataclasses; this module only wires them together and writes the trial's results and artifacts.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState

from latencysolver.compression import encoder_layers
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import ConstraintsConfig, StudyConfig
from latencysolver.data.batches import EncodedSplit, truncate, truncate_inputs
from latencysolver.files import writing
from latencysolver.latency.hardware import HardwareFingerprint
from latencysolver.latency.protocol import PairedLatency, measure_throughput, throughput_inputs
from latencysolver.latency.stability import measure_checked
from latencysolver.models.loading import count_parameters, nonzero_parameters
from latencysolver.models.student import ONNX_FILE, cnn_student, compress, save_student, to_runnable
from latencysolver.results.records import (
    CONSTRAINT_NAMES,
    LATENCY_SAMPLES,
    PREDICTIONS,
    TrialRecord,
    write_fail_reason,
    write_recipe,
    write_trial_record,
)
from latencysolver.results.storage import AtomicArtifactStore
from latencysolver.search.suggest import suggest_recipe
from latencysolver.stats import accuracy_interval, correct_of, paired_difference
from latencysolver.training.distillation import distill, hidden_targets
from latencysolver.training.evaluate import predict_logits, scores


def objectives(latency_objective: str) -> tuple[list[str], list[Literal["maximize", "minimize"]]]:
    """Metric names and directions: accuracy (maximize), then the speed-up (maximize) or the p50 ms (minimize)."""
    if latency_objective == "speedup":
        return ["accuracy", "speedup"], ["maximize", "maximize"]
    if latency_objective == "latency_ms":
        return ["accuracy", "latency_ms"], ["maximize", "minimize"]
    raise ValueError(f"latency objective must be 'speedup' or 'latency_ms', but got {latency_objective!r}")


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


def model_size_bytes(model: Any) -> int:
    """Bytes of the serialized state dict (int8 packed weights count as int8, bf16 as two bytes), or of the
    onnxruntime graph file."""
    if hasattr(model, "size_bytes"):
        return int(model.size_bytes())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


@dataclass
class TrainedStudent:
    model: torch.nn.Module  # fp32, finalized, eval mode
    kept_layers: tuple[int, ...]  # teacher layers kept (empty for a CNN)
    steps: int
    final_loss: float
    early_stop_accuracy: float | None = None  # set when the early check stopped distillation


def accuracy_floor(ctx: TrialContext) -> float:
    floor = ctx.config.constraints.min_accuracy
    return ctx.majority_rate if floor is None else floor


def _early_check(ctx: TrialContext, model: torch.nn.Module, seen: dict[str, float]):
    """``should_stop`` for distill(): at ``early_stop.after`` of the steps, a quick look at validation rows."""
    rule = ctx.config.early_stop
    after = rule.after
    if after is None:
        return None
    rows = ctx.validation.head(rule.rows)

    def should_stop(step: int, total: int) -> bool:
        if step != max(1, round(after * total)):
            return False
        accuracy = scores(predict_logits(model, rows, pad_id=ctx.pad_id, progress=False), rows.labels).accuracy
        model.train()
        seen["accuracy"] = accuracy
        return accuracy <= accuracy_floor(ctx)

    return should_stop


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
    return dataclasses.replace(
        ctx,
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


def train_student(ctx: TrialContext, recipe: Recipe, *, reseed: bool = False) -> TrainedStudent:
    """Compress the teacher (or build a CNN) and distill the teacher's cached logits into it.

    ``reseed`` (a seed repeat of ``latencysolver confirm``): the distillation's data order and dropout are seeded
    with ``recipe.seed`` instead of the study's ``distillation.seed``, so a repeat differs from its search trial
    even when nothing else in the recipe is random (deterministic skip, no LayerDrop)."""
    if reseed:
        config = dataclasses.replace(
            ctx.config,
            distillation=dataclasses.replace(ctx.config.distillation, seed=recipe.seed),
            cnn_distillation=dataclasses.replace(ctx.config.cnn_distillation, seed=recipe.seed),
        )
        ctx = dataclasses.replace(ctx, config=config)
    if recipe.architecture == "cnn":
        model = cnn_student(ctx.teacher_model, ctx.config.cnn, student_length(ctx.config, recipe), recipe.seed)
        seen: dict[str, float] = {}
        trained = distill(
            model,
            ctx.train,
            ctx.teacher_train_logits,
            ctx.config.cnn_distillation,
            recipe.temperature,
            recipe.alpha,
            pad_id=ctx.pad_id,
            progress=ctx.progress,
            should_stop=_early_check(ctx, model, seen),
        )
        return TrainedStudent(
            model.eval(), (), trained.steps, trained.final_loss, seen["accuracy"] if trained.stopped_early else None
        )
    student = compress(ctx.teacher_model, recipe)
    seen = {}
    hidden_layers = None  # with LayerDrop (or no hidden-state term): only the final outputs are compared
    if recipe.hidden_weight > 0 and not student.layerdrop:
        hidden_layers = hidden_targets(student.kept_layers, len(encoder_layers(ctx.teacher_model)))
    trained = distill(
        student.model,
        ctx.train,
        ctx.teacher_train_logits,
        ctx.config.distillation,
        recipe.temperature,
        recipe.alpha,
        pad_id=ctx.pad_id,
        progress=ctx.progress,
        should_stop=_early_check(ctx, student.model, seen),
        hidden_weight=recipe.hidden_weight,
        teacher=ctx.teacher_model,
        hidden_layers=hidden_layers,
    )
    return TrainedStudent(
        student.finalize(),
        student.kept_layers,
        trained.steps,
        trained.final_loss,
        seen["accuracy"] if trained.stopped_early else None,
    )


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> tuple[float, float]:
    start = time.perf_counter()
    recipe = suggest_recipe(trial, ctx.config.search_space)
    write_recipe(trial, recipe)
    full_length_rows = ctx.latency_inputs  # the teacher's latency rows: it runs at the study's length
    ctx = for_recipe(ctx, recipe)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            student = train_student(ctx, recipe, reseed=isinstance(trial.user_attrs.get("repeat_of"), int))
            model = student.model
            # accuracy and latency are measured on the model as it ships: quantized, or in onnxruntime
            runnable = to_runnable(
                model, recipe.quant_dtype, ctx.latency_inputs[0], folder / "onnx", ctx.config.latency.threads
            )
            logits = predict_logits(runnable, ctx.validation, pad_id=ctx.pad_id, progress=ctx.progress)
            quality = scores(logits, ctx.validation.labels)
            paired, stability = measure_checked(
                runnable,
                ctx.teacher_model,
                ctx.latency_inputs,
                ctx.config.latency,
                ctx.baseline_reference_ms,
                reference_inputs=full_length_rows,
            )
            latency = paired.model
            predicted = logits.argmax(dim=-1)
            constraints = constraint_values(ctx.config.constraints, ctx.majority_rate, quality.accuracy, latency.p50_ms)
            early_stopped = None
            if student.early_stop_accuracy is not None:  # hopeless at the check: infeasible, whatever it reached
                early_stopped = {
                    "step": student.steps,
                    "accuracy_on_check_rows": student.early_stop_accuracy,
                    "floor": accuracy_floor(ctx),
                }
                constraints[0] = max(constraints[0], 1e-6)
            throughput = (
                measure_throughput(runnable, ctx.throughput_inputs, ctx.config.latency).rows_per_second
                if ctx.throughput_inputs
                else None
            )
            record = TrialRecord(
                number=trial.number,
                state=TrialState.RUNNING,
                f1=quality.f1,
                latency_p50_ms=latency.p50_ms,
                latency_p90_ms=latency.p90_ms,
                latency_cv=latency.cv,
                speedup=paired.speedup,
                speedup_cv=paired.speedup_cv,
                reference_p50_ms=paired.reference.p50_ms,
                hardware=ctx.hardware.to_dict(),
                hardware_key=ctx.hardware.key,
                parameters=count_parameters(model),
                nonzero_parameters=nonzero_parameters(model),
                size_bytes=model_size_bytes(runnable),
                layers=len(student.kept_layers),
                kept_layers=tuple(student.kept_layers),
                distill_steps=student.steps,
                distill_final_loss=student.final_loss,
                degenerate=bool(quality.accuracy <= ctx.majority_rate or predicted.unique().numel() < 2),
                **validation_statistics(predicted, ctx),
                **test_statistics(runnable, trial, ctx),
                early_stopped=early_stopped,
                latency_stability=stability.to_dict(),
                throughput_rows_per_s=throughput,
                constraints=dict(zip(CONSTRAINT_NAMES, constraints, strict=True)),
            )
            files = save_student(
                model,
                recipe,
                student.kept_layers,
                folder,
                extra={"max_length": student_length(ctx.config, recipe), "base_model": ctx.config.model},
            )
            if recipe.backend == "onnxruntime":
                shutil.copyfile(runnable.path, folder / ONNX_FILE)
                files.append(ONNX_FILE)
            (folder / PREDICTIONS).write_text(
                json.dumps({"split": "validation", "predictions": logits.argmax(dim=-1).tolist()})
            )
            (folder / LATENCY_SAMPLES).write_text(json.dumps(latency_record(paired, ctx.hardware)))
            with writing(ctx.artifact_store.folder, "artifacts folder"):
                for name in (*files, PREDICTIONS, LATENCY_SAMPLES):
                    upload_artifact(
                        artifact_store=ctx.artifact_store, file_path=str(folder / name), study_or_trial=trial
                    )
        # Optuna 5's constraint mechanism (constraints_func is deprecated): TPE and NSGA-II learn from them,
        # the dashboard shows the trial as infeasible, and study.best_trials leaves it out.
        write_trial_record(trial, dataclasses.replace(record, seconds=round(time.perf_counter() - start, 1)))
    except Exception as exc:  # any failure: record why on the trial, then re-raise (the worker fails it)
        write_fail_reason(trial, f"{type(exc).__name__}: {exc}")
        raise
    return quality.accuracy, (paired.speedup if ctx.config.latency.objective == "speedup" else latency.p50_ms)


def validation_statistics(predicted: torch.Tensor, ctx: TrialContext) -> dict[str, Any]:
    """The accuracy's 95% interval, and the paired comparison with the teacher on the same rows (when known)."""
    labels = list(ctx.validation.labels)
    correct = correct_of(predicted.tolist(), labels)
    out: dict[str, Any] = {"accuracy_interval": accuracy_interval(correct).to_dict()}
    if ctx.teacher_predictions is not None and len(ctx.teacher_predictions) == len(correct):
        teacher = correct_of(ctx.teacher_predictions.tolist(), labels)
        out["vs_teacher"] = paired_difference(correct, teacher).to_dict()
    return out


def test_statistics(runnable: Any, trial: optuna.Trial, ctx: TrialContext) -> dict[str, Any]:
    """A seed repeat's accuracy on the test split, its interval, and its paired difference to the teacher there."""
    repeat_of = trial.user_attrs.get("repeat_of")
    if not isinstance(repeat_of, int) or ctx.test is None:
        return {}
    logits = predict_logits(runnable, ctx.test, pad_id=ctx.pad_id, desc="test evaluate", progress=ctx.progress)
    labels = list(ctx.test.labels)
    correct = correct_of(logits.argmax(dim=-1).tolist(), labels)
    out: dict[str, Any] = {
        "repeat_of": repeat_of,
        "test_accuracy": float(correct.mean()),
        "test_accuracy_interval": accuracy_interval(correct).to_dict(),
    }
    if ctx.teacher_test_predictions is not None:
        teacher = correct_of(ctx.teacher_test_predictions.tolist(), labels)
        out["test_vs_teacher"] = paired_difference(correct, teacher).to_dict()
    return out


def constraint_values(
    constraints: ConstraintsConfig, majority_rate: float, accuracy: float, p50_ms: float
) -> list[float]:
    """Optuna's convention: each value <= 0 means satisfied.  [accuracy floor, latency ceiling]."""
    if constraints.min_accuracy is None:  # must beat always answering the majority class
        floor = majority_rate - accuracy + 1e-9
    else:
        floor = constraints.min_accuracy - accuracy
    ceiling = p50_ms - constraints.max_latency_ms if constraints.max_latency_ms is not None else 0.0
    return [floor, ceiling]


def latency_record(paired: PairedLatency, hardware: HardwareFingerprint) -> dict[str, Any]:
    """The raw samples of both models, call by call, for the dashboard and reports."""
    return {
        "protocol": "paired: model and fp32 teacher interleaved on the same batch-1 inputs",
        "speedup": paired.speedup,
        "speedup_cv": paired.speedup_cv,
        "hardware": hardware.to_dict(),
        "model": paired.model.summary() | {"samples_ms": paired.model.samples_ms},
        "reference": paired.reference.summary() | {"samples_ms": paired.reference.samples_ms},
    }


def make_objective(ctx: TrialContext) -> Callable[[optuna.Trial], tuple[float, float]]:
    return lambda trial: run_trial(trial, ctx)
