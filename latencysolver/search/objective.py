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
from latencysolver.latency.stability import measure_checked
from latencysolver.models.loading import count_parameters, nonzero_parameters
from latencysolver.models.student import ONNX_FILE, to_runnable
from latencysolver.results.attributes import baseline_of, repeat_of, retrain_of
from latencysolver.results.records import (
    CONSTRAINT_NAMES,
    LATENCY_SAMPLES,
    PREDICTIONS,
    TrialRecord,
    write_fail_reason,
    write_recipe,
    write_trial_record,
)
from latencysolver.search.context import TrainedStudent, TrialContext
from latencysolver.search.kinds import KINDS, keep_the_better, kind_of, train_student
from latencysolver.search.rungs import Rungs
from latencysolver.search.students import check_accuracy, data_schema, for_recipe, retrained, student_length
from latencysolver.search.suggest import suggest_recipe
from latencysolver.stats import accuracy_interval, correct_of, paired_difference
from latencysolver.training.evaluate import predict_logits, scores


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
    start = time.perf_counter()
    baseline = baseline_of(trial)  # a usual recipe: nothing to sample, nothing to train
    recipe = (
        Recipe.from_dict({"quant_dtype": baseline, "seed": trial.number})
        if baseline
        else suggest_recipe(trial, ctx.config.search_space)
    )
    write_recipe(trial, recipe)
    retrain = retrain_of(trial)  # `latencysolver retrain`: the search trial's recipe, seed and data, more steps
    if retrain is not None and not baseline:
        ctx = retrained(ctx, retrain[1])
    kind = kind_of(ctx, recipe, baseline)  # picked once: how this trial gets its student (search/kinds)
    full_length_rows = ctx.latency_inputs  # the teacher's latency rows: it runs at the study's length
    ctx = for_recipe(ctx, recipe)
    threads = ctx.config.latency.threads
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            # Latency first: the speed-up depends only on the architecture and the backend, so it is measured on
            # the untrained shape, and a trial below constraints.min_speedup is recorded without being trained.
            shape, kept = KINDS[kind].untrained(ctx, recipe)
            shape_runnable = to_runnable(shape, recipe.quant_dtype, ctx.latency_inputs[0], folder / "shape", threads)
            paired, stability = measure_checked(
                shape_runnable,
                ctx.teacher_model,
                ctx.latency_inputs,
                ctx.config.latency,
                ctx.baseline_reference_ms,
                reference_inputs=full_length_rows,
            )
            floor = ctx.config.constraints.min_speedup
            rejected = {"speedup": paired.speedup, "min_speedup": floor} if floor and paired.speedup < floor else None
            rungs = None
            if rejected:
                student, runnable = TrainedStudent(shape, kept, 0, None), shape_runnable
            else:
                student_kind = KINDS[kind]
                repeat = repeat_of(trial) is not None
                rule = ctx.config.early_stop  # a repeat or a retrain is never ranked against the search's trials
                rank = rule.rungs and not repeat and retrain is None and student_kind.ranked
                rungs = Rungs(trial, rule, paired.speedup) if rank else None
                start_accuracy = check_accuracy(ctx, shape) if student_kind.trains_from_a_start(ctx, recipe) else None
                student = train_student(ctx, recipe, reseed=repeat, start=shape, rungs=rungs, kind=kind)
                if start_accuracy is not None and student.early_stopped is None:
                    student = keep_the_better(ctx, kind, recipe, student, start_accuracy)
                # accuracy is measured on the model as it ships: quantized, or in onnxruntime
                runnable = (
                    shape_runnable
                    if student.model is shape and student.steps == 0  # not trained: the teacher, a bare slice
                    else to_runnable(student.model, recipe.quant_dtype, ctx.latency_inputs[0], folder / "onnx", threads)
                )
            model = student.model
            logits = predict_logits(runnable, ctx.validation, pad_id=ctx.pad_id, progress=ctx.progress)
            quality = scores(logits, ctx.validation.labels)
            latency = paired.model
            predicted = logits.argmax(dim=-1)
            constraints = measured_constraints(
                ctx.config.constraints, ctx.majority_rate, quality.accuracy, latency.p50_ms, paired.speedup
            )
            early_stopped = student.early_stopped  # below the floor, or dominated at a rung: infeasible
            if early_stopped or rejected:  # never feasible, whatever a later remeasurement says of its speed
                constraints["min_accuracy"] = max(constraints["min_accuracy"], 1e-6)
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
                **statistics_on_test_split(runnable, trial, ctx),
                early_stopped=early_stopped,
                rungs=rungs.reported if rungs else None,
                rejected_before_training=rejected,
                latency_stability=stability.to_dict(),
                throughput_rows_per_s=throughput,
                baseline=baseline,
                kept_start=student.kept_start,
                constraints=constraints,
                **KINDS[kind].record(ctx, recipe),
            )
            files = KINDS[kind].save(
                model,
                recipe,
                student.kept_layers,
                folder,
                {
                    "max_length": student_length(ctx.config, recipe),
                    "base_model": ctx.config.model,
                    **data_schema(ctx),
                },
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


def statistics_on_test_split(runnable: Any, trial: optuna.Trial, ctx: TrialContext) -> dict[str, Any]:
    """A seed repeat's or a retrained recipe's accuracy on the test split, its interval, and its paired difference
    to the teacher there (the test split checks a chosen recipe; no search trial is measured on it)."""
    repeat = repeat_of(trial)
    if (repeat is None and retrain_of(trial) is None) or ctx.test is None:
        return {}
    logits = predict_logits(runnable, ctx.test, pad_id=ctx.pad_id, desc="test evaluate", progress=ctx.progress)
    labels = list(ctx.test.labels)
    correct = correct_of(logits.argmax(dim=-1).tolist(), labels)
    out: dict[str, Any] = {
        "repeat_of": repeat,
        "test_accuracy": float(correct.mean()),
        "test_accuracy_interval": accuracy_interval(correct).to_dict(),
    }
    if ctx.teacher_test_predictions is not None:
        teacher = correct_of(ctx.teacher_test_predictions.tolist(), labels)
        out["test_vs_teacher"] = paired_difference(correct, teacher).to_dict()
    return out


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
