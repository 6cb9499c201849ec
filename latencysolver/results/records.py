"""What a trial's results are, read back from Optuna's storage."""

from __future__ import annotations

import optuna

# Every trial uploads these; the student's own files (``save_student``) and model.onnx come on top.
PREDICTIONS = "predictions.json"
LATENCY_SAMPLES = "latency_samples.json"
CONSTRAINT_NAMES = ("min_accuracy", "max_latency_ms")


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 0.0 for v in trial.user_attrs.get("constraints", [0.0]))
