"""The Optuna objective: one trial = one recipe → one student of the kind the trial picks once (``kinds/``: the
teacher as is, compressed and distilled, sliced from the elastic student, or a CNN), timed before it is trained,
then evaluated and stored.

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

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import ConstraintsConfig
from latencysolver.files import writing
from latencysolver.latency.hardware import HardwareFingerprint
from latencysolver.latency.protocol import PairedLatency, measure_throughput
from latencysolver.latency.stability import StabilityCheck, measure_checked
from latencysolver.models.loading import count_parameters, nonzero_parameters
from latencysolver.models.student import ONNX_FILE, to_runnable
from latencysolver.results.attributes import baseline_of, repeat_of, retrain_of, seed_of
from latencysolver.results.records import (
    CONSTRAINT_NAMES,
    LATENCY_SAMPLES,
    PREDICTIONS,
    TrialRecord,
    write_fail_reason,
    write_recipe,
    write_trial_record,
)
from latencysolver.results.repeats import is_new_seed
from latencysolver.results.scoring import score
from latencysolver.search.context import TrainedStudent, TrialContext
from latencysolver.search.kinds import KINDS, keep_the_better, kind_of, train_student
from latencysolver.search.rungs import Rungs
from latencysolver.search.students import check_accuracy, data_schema, for_recipe, retrained, student_length
from latencysolver.search.suggest import suggest_recipe
from latencysolver.training.evaluate import Scores, predict_logits, scores


def objectives(latency_objective: str) -> tuple[list[str], list[Literal["maximize", "minimize"]]]:
    """Metric names and directions: accuracy (maximize), then the speed-up (maximize) or the p50 ms (minimize)."""
    if latency_objective == "speedup":
        return ["accuracy", "speedup"], ["maximize", "maximize"]
    if latency_objective == "latency_ms":
        return ["accuracy", "latency_ms"], ["maximize", "minimize"]
    raise ValueError(f"latency objective must be 'speedup' or 'latency_ms', but got {latency_objective!r}")


def model_size_bytes(model: Any) -> int:
    """Bytes of the serialized state dict (int8 packed weights count as int8, bf16 as two bytes), or of the
    onnxruntime graph file."""
    if hasattr(model, "size_bytes"):
        return int(model.size_bytes())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> tuple[float, float]:
    """One trial: its recipe, its kind, its shape's latency, the gate, training, evaluation, record and upload."""
    start = time.perf_counter()
    baseline = baseline_of(trial)  # a usual recipe: nothing to sample, nothing to train
    recipe = pick_recipe(trial, ctx, baseline)
    retrain = retrain_of(trial)  # `latencysolver retrain`: the search trial's recipe, seed and data, more steps
    if retrain is not None and not baseline:
        ctx = retrained(ctx, retrain[1])
    kind = kind_of(ctx, recipe, baseline)
    full_length_rows = ctx.latency_inputs  # the teacher's latency rows: it runs at the study's length
    ctx = for_recipe(ctx, recipe)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            shape = measure_shape(ctx, kind, recipe, folder, full_length_rows)
            rejected = gate(ctx, shape.paired)
            student, runnable, rungs = train(trial, ctx, kind, recipe, shape, rejected, folder)
            result = evaluate(ctx, runnable, shape.paired, student, rejected)
            record = measured_record(trial, ctx, kind, recipe, shape, student, runnable, result, rungs, rejected)
            upload(trial, ctx, kind, recipe, student, runnable, result.logits, shape.paired, folder)
        # Optuna 5's constraint mechanism (constraints_func is deprecated): TPE and NSGA-II learn from them,
        # the dashboard shows the trial as infeasible, and study.best_trials leaves it out.
        write_trial_record(trial, dataclasses.replace(record, seconds=round(time.perf_counter() - start, 1)))
    except Exception as exc:  # any failure: record why on the trial, then re-raise (the worker fails it)
        write_fail_reason(trial, f"{type(exc).__name__}: {exc}")
        raise
    accuracy, latency = result.quality.accuracy, shape.paired
    return accuracy, (latency.speedup if ctx.config.latency.objective == "speedup" else latency.model.p50_ms)


def pick_recipe(trial: optuna.Trial, ctx: TrialContext, baseline: str | None) -> Recipe:
    """The trial's recipe, written on it: a usual recipe's (the teacher at ``baseline``'s dtype), else sampled."""
    recipe = (
        Recipe.from_dict({"quant_dtype": baseline, "seed": trial.number})
        if baseline
        else suggest_recipe(trial, ctx.config.search_space)
    )
    write_recipe(trial, recipe)
    return recipe


@dataclass
class Shape:
    """The trial's untrained student, as it runs, and its latency paired with the teacher's."""

    model: torch.nn.Module
    kept: tuple[int, ...]
    runnable: Any
    paired: PairedLatency
    stability: StabilityCheck


def measure_shape(
    ctx: TrialContext, kind: str, recipe: Recipe, folder: Path, full_length_rows: list[dict[str, torch.Tensor]]
) -> Shape:
    """Latency first: the speed-up depends only on the architecture and the backend, so it is measured on the
    untrained shape the trial's kind builds (the teacher beside it reads ``full_length_rows``)."""
    model, kept = KINDS[kind].untrained(ctx, recipe)
    threads = ctx.config.latency.threads
    runnable = to_runnable(model, recipe.quant_dtype, ctx.latency_inputs[0], folder / "shape", threads)
    paired, stability = measure_checked(
        runnable,
        ctx.teacher_model,
        ctx.latency_inputs,
        ctx.config.latency,
        ctx.baseline_reference_ms,
        reference_inputs=full_length_rows,
    )
    return Shape(model, kept, runnable, paired, stability)


def gate(ctx: TrialContext, paired: PairedLatency) -> dict[str, float] | None:
    """Why a trial below ``constraints.min_speedup`` is recorded without being trained (None: it is trained)."""
    floor = ctx.config.constraints.min_speedup
    return {"speedup": paired.speedup, "min_speedup": floor} if floor and paired.speedup < floor else None


def train(
    trial: optuna.Trial,
    ctx: TrialContext,
    kind: str,
    recipe: Recipe,
    shape: Shape,
    rejected: dict[str, float] | None,
    folder: Path,
) -> tuple[TrainedStudent, Any, Rungs | None]:
    """The student its kind trains (ranked at the rungs unless a repeat or a retrain; the untrained start kept when
    training left it worse), and the student as it ships: quantized, or in onnxruntime."""
    if rejected:
        return TrainedStudent(shape.model, shape.kept, 0, None), shape.runnable, None
    student_kind = KINDS[kind]
    repeat = repeat_of(trial) is not None
    rule = ctx.config.early_stop  # a repeat or a retrain is never ranked against the search's trials
    rank = rule.rungs and not repeat and retrain_of(trial) is None and student_kind.ranked
    rungs = Rungs(trial, rule, shape.paired.speedup) if rank else None
    start_accuracy = check_accuracy(ctx, shape.model) if student_kind.trains_from_a_start(ctx, recipe) else None
    # a confirm repeat, or a retrain with a new seed, draws its data order from its seed: one trial is one draw
    reseed = repeat or is_new_seed(seed_of(trial))
    student = train_student(ctx, recipe, reseed=reseed, start=shape.model, rungs=rungs, kind=kind)
    if start_accuracy is not None and student.early_stopped is None:
        student = keep_the_better(ctx, kind, recipe, student, start_accuracy)
    if student.model is shape.model and student.steps == 0:  # not trained (the teacher, a slice without recovery)
        return student, shape.runnable, rungs
    threads = ctx.config.latency.threads
    runnable = to_runnable(student.model, recipe.quant_dtype, ctx.latency_inputs[0], folder / "onnx", threads)
    return student, runnable, rungs


@dataclass
class Evaluation:
    """The shipped student on the validation split, and the constraints it meets."""

    logits: torch.Tensor
    quality: Scores
    constraints: dict[str, float]
    throughput: float | None


def evaluate(
    ctx: TrialContext, runnable: Any, paired: PairedLatency, student: TrainedStudent, rejected: dict[str, float] | None
) -> Evaluation:
    """Accuracy on the model as it ships, the constraints (a trial stopped early or rejected on latency is never
    feasible, whatever a later remeasurement says of its speed), and the throughput when the study measures it."""
    logits = predict_logits(runnable, ctx.validation, pad_id=ctx.pad_id, progress=ctx.progress)
    quality = scores(logits, ctx.validation.labels)
    constraints = measured_constraints(
        ctx.config.constraints, ctx.majority_rate, quality.accuracy, paired.model.p50_ms, paired.speedup
    )
    if student.early_stopped or rejected:  # below the floor, or dominated at a rung: infeasible
        constraints["min_accuracy"] = max(constraints["min_accuracy"], 1e-6)
    throughput = (
        measure_throughput(runnable, ctx.throughput_inputs, ctx.config.latency).rows_per_second
        if ctx.throughput_inputs
        else None
    )
    return Evaluation(logits, quality, constraints, throughput)


def measured_record(
    trial: optuna.Trial,
    ctx: TrialContext,
    kind: str,
    recipe: Recipe,
    shape: Shape,
    student: TrainedStudent,
    runnable: Any,
    result: Evaluation,
    rungs: Rungs | None,
    rejected: dict[str, float] | None,
) -> TrialRecord:
    """What the trial measured, for its record (``results/records.py``)."""
    paired, quality, model = shape.paired, result.quality, student.model
    latency = paired.model
    predicted = result.logits.argmax(dim=-1)
    return TrialRecord(
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
        **statistics_on_test_split(runnable, trial, ctx),
        early_stopped=student.early_stopped,
        rungs=rungs.reported if rungs else None,
        rejected_before_training=rejected,
        latency_stability=shape.stability.to_dict(),
        throughput_rows_per_s=result.throughput,
        baseline=baseline_of(trial),
        kept_start=student.kept_start,
        constraints=result.constraints,
        **KINDS[kind].record(ctx, recipe),
    )


def upload(
    trial: optuna.Trial,
    ctx: TrialContext,
    kind: str,
    recipe: Recipe,
    student: TrainedStudent,
    runnable: Any,
    logits: torch.Tensor,
    paired: PairedLatency,
    folder: Path,
) -> None:
    """The student's files as its kind saves them (+ the ONNX graph it ran as), its validation predictions and
    latency samples, into the study's artifact store."""
    files = KINDS[kind].save(
        student.model,
        recipe,
        student.kept_layers,
        folder,
        {"max_length": student_length(ctx.config, recipe), "base_model": ctx.config.model, **data_schema(ctx)},
    )
    if recipe.backend == "onnxruntime":
        shutil.copyfile(runnable.path, folder / ONNX_FILE)
        files.append(ONNX_FILE)
    predictions = {"split": "validation", "predictions": logits.argmax(dim=-1).tolist()}
    (folder / PREDICTIONS).write_text(json.dumps(predictions))
    (folder / LATENCY_SAMPLES).write_text(json.dumps(latency_record(paired, ctx.hardware)))
    with writing(ctx.artifact_store.folder, "artifacts folder"):
        for name in (*files, PREDICTIONS, LATENCY_SAMPLES):
            upload_artifact(artifact_store=ctx.artifact_store, file_path=str(folder / name), study_or_trial=trial)


def validation_statistics(predicted: torch.Tensor, ctx: TrialContext) -> dict[str, Any]:
    """The accuracy's 95% interval, and the paired comparison with the teacher on the same rows (when known)."""
    teacher = ctx.teacher_predictions
    if teacher is not None and len(teacher) != len(predicted):
        teacher = None
    scored = score(predicted, ctx.validation.labels, teacher).to_dict()
    return {key: value for key, value in scored.items() if key != "accuracy" and value is not None}


def statistics_on_test_split(runnable: Any, trial: optuna.Trial, ctx: TrialContext) -> dict[str, Any]:
    """A seed repeat's or a retrained recipe's accuracy on the test split, its interval, and its paired difference
    to the teacher there (the test split checks a chosen recipe; no search trial is measured on it)."""
    repeat = repeat_of(trial)
    if (repeat is None and retrain_of(trial) is None) or ctx.test is None:
        return {}
    logits = predict_logits(runnable, ctx.test, pad_id=ctx.pad_id, desc="test evaluate", progress=ctx.progress)
    scored = score(logits.argmax(dim=-1), ctx.test.labels, ctx.teacher_test_predictions).to_dict(prefix="test_")
    return {"repeat_of": repeat, **{key: value for key, value in scored.items() if value is not None}}


def measured_constraints(
    constraints: ConstraintsConfig, majority_rate: float, accuracy: float, p50_ms: float, speedup: float
) -> dict[str, float]:
    """Optuna's convention: each value <= 0 means satisfied.  The accuracy floor and the latency ceiling always;
    the speed-up floor when the study sets one (older trials without it read as meeting it)."""
    if constraints.min_accuracy is None:  # must beat always answering the majority class
        floor = majority_rate - accuracy + 1e-9
    else:
        floor = constraints.min_accuracy - accuracy
    ceiling = p50_ms - constraints.max_latency_ms if constraints.max_latency_ms is not None else 0.0
    values = dict(zip(CONSTRAINT_NAMES, (floor, ceiling), strict=False))
    if constraints.min_speedup is not None:
        values["min_speedup"] = constraints.min_speedup - speedup
    return values


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
