"""The only code that calls ``trial.suggest_*``: a study's search space and an Optuna trial become a ``Recipe``."""

from __future__ import annotations

from typing import Any

import optuna

from latencysolver.config.recipe import TRANSFORMER_KNOBS, Recipe
from latencysolver.config.space import KNOBS, Choices, Fixed, FloatRange, IntRange, SearchSpace


def _inactive(name: str, values: dict[str, Any]) -> bool:
    """Optuna conditional parameters: a knob that cannot matter for this trial is not sampled at all."""
    if values.get("architecture") == "cnn" and name in TRANSFORMER_KNOBS:
        return True
    if name == "prune_kind" and values.get("prune_ratio") == 0:
        return True
    return name == "skip_mode" and values.get("skip_prob") == 0


def suggest_recipe(trial: optuna.Trial, space: SearchSpace) -> Recipe:
    values: dict[str, Any] = {}
    for name in KNOBS:  # architecture comes first: the others depend on it
        knob = getattr(space, name)
        if isinstance(knob, Fixed):
            values[name] = knob.value
        elif _inactive(name, values):
            continue
        elif isinstance(knob, FloatRange):
            values[name] = trial.suggest_float(name, knob.low, knob.high, step=knob.step, log=knob.log)
        elif isinstance(knob, IntRange):
            values[name] = trial.suggest_int(name, knob.low, knob.high, step=knob.step, log=knob.log)
        elif isinstance(knob, Choices):
            values[name] = trial.suggest_categorical(name, list(knob.values))
        else:  # pragma: no cover - SearchSpace only holds the four knob types
            raise TypeError(f"unknown knob type {knob!r}")
    if values.get("architecture") == "cnn":  # fixed transformer knobs are meaningless for a CNN: defaults
        values = {k: v for k, v in values.items() if k not in TRANSFORMER_KNOBS}
    rank = values.pop("rank", "off")
    return Recipe(rank=None if rank == "off" else rank, seed=trial.number, **values)
