"""The Optuna objective: one trial = one recipe → one compressed, distilled, measured student.

``suggest_recipe`` is the only code that calls ``trial.suggest_*``.  Everything after it works on plain models
and dataclasses; this module only wires them together and writes the trial's results and artifacts.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from latencysolver.batches import EncodedSplit
from latencysolver.compression import quantize
from latencysolver.config import KNOBS, Choices, Fixed, FloatRange, IntRange, SearchSpace, StudyConfig
from latencysolver.distill import distill
from latencysolver.evaluate import predict_logits, scores
from latencysolver.latency import measure_latency
from latencysolver.models import count_parameters, nonzero_parameters
from latencysolver.recipe import Recipe
from latencysolver.student import compress, save_student

OBJECTIVE_NAMES = ["accuracy", "latency_ms"]
DIRECTIONS = ["maximize", "minimize"]
ARTIFACT_FILES = ("model.safetensors", "config.json", "student.json", "predictions.json")


def suggest_recipe(trial: optuna.Trial, space: SearchSpace) -> Recipe:
    values: dict[str, Any] = {}
    for name in KNOBS:
        knob = getattr(space, name)
        if isinstance(knob, Fixed):
            values[name] = knob.value
        elif isinstance(knob, FloatRange):
            values[name] = trial.suggest_float(name, knob.low, knob.high, step=knob.step, log=knob.log)
        elif isinstance(knob, IntRange):
            values[name] = trial.suggest_int(name, knob.low, knob.high, step=knob.step, log=knob.log)
        elif isinstance(knob, Choices):
            values[name] = trial.suggest_categorical(name, list(knob.values))
        else:  # pragma: no cover - SearchSpace only holds the four knob types
            raise TypeError(f"unknown knob type {knob!r}")
    rank = values.pop("rank")
    return Recipe(rank=None if rank == "off" else int(rank), seed=trial.number, **values)


@dataclass
class TrialContext:
    """What every trial of a study shares; built once per ``run``."""

    config: StudyConfig
    teacher_model: torch.nn.Module
    teacher_train_logits: torch.Tensor
    train: EncodedSplit
    validation: EncodedSplit
    latency_inputs: list[dict[str, torch.Tensor]]
    teacher_latency_p50_ms: float
    artifact_store: FileSystemArtifactStore
    pad_id: int = 0
    progress: bool = True


def model_size_bytes(model: torch.nn.Module) -> int:
    """Bytes of the serialized state dict: int8 packed weights count as int8, bf16 as two bytes."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> tuple[float, float]:
    start = time.perf_counter()
    recipe = suggest_recipe(trial, ctx.config.search_space)
    trial.set_user_attr("recipe", recipe.to_dict())
    try:
        student = compress(ctx.teacher_model, recipe)
        trained = distill(student.model, ctx.train, ctx.teacher_train_logits, ctx.config.distillation,
                          recipe.temperature, recipe.alpha, pad_id=ctx.pad_id, progress=ctx.progress)
        model = student.finalize()
        quantized = quantize(model, recipe.quant_dtype)
        logits = predict_logits(quantized, ctx.validation, pad_id=ctx.pad_id, progress=ctx.progress)
        quality = scores(logits, ctx.validation.labels)
        latency = measure_latency(quantized, ctx.latency_inputs, ctx.config.latency)
        attrs = {
            "f1": quality.f1,
            "latency_p50_ms": latency.p50_ms,
            "latency_p90_ms": latency.p90_ms,
            "latency_cv": latency.cv,
            "speedup": ctx.teacher_latency_p50_ms / latency.p50_ms,
            "parameters": count_parameters(model),
            "nonzero_parameters": nonzero_parameters(model),
            "size_bytes": model_size_bytes(quantized),
            "layers": len(student.kept_layers),
            "kept_layers": list(student.kept_layers),
            "distill_steps": trained.steps,
            "distill_final_loss": trained.final_loss,
            "seconds": round(time.perf_counter() - start, 1),
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        predictions = logits.argmax(dim=-1).tolist()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            save_student(model, recipe, student.kept_layers, folder,
                         extra={"max_length": ctx.config.data.max_length, "base_model": ctx.config.model})
            (folder / "predictions.json").write_text(json.dumps({"split": "validation", "predictions": predictions}))
            (folder / "latency_samples.json").write_text(json.dumps(latency.summary() | {"samples_ms": latency.samples_ms}))
            for name in (*ARTIFACT_FILES, "latency_samples.json"):
                upload_artifact(artifact_store=ctx.artifact_store, file_path=str(folder / name), study_or_trial=trial)
    except Exception as exc:
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
        raise
    return quality.accuracy, latency.p50_ms


def make_objective(ctx: TrialContext) -> Callable[[optuna.Trial], tuple[float, float]]:
    return lambda trial: run_trial(trial, ctx)
