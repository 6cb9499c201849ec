"""The only code that calls ``trial.suggest_*``: a study's search space and an Optuna trial become a ``Recipe``."""

from __future__ import annotations

from typing import Any

import optuna

from latencysolver.config.knobs import KNOBS
from latencysolver.config.recipe import Recipe
from latencysolver.config.space import Choices, Fixed, FloatRange, IntRange, SearchSpace


def suggest_recipe(trial: optuna.Trial, space: SearchSpace) -> Recipe:
    """Sample the knobs in table order; a knob whose ``inactive_when`` holds is not sampled at all.

    That is Optuna's conditional parameters: a knob that cannot matter for this trial (a CNN's ``rank``,
    ``prune_kind`` at ratio 0) would only add noise to the sampler's model of the others.
    """
    values: dict[str, Any] = {}
    for spec in KNOBS:  # architecture comes first: the others depend on it
        knob = getattr(space, spec.name)
        if isinstance(knob, Fixed):
            values[spec.name] = knob.value
        elif spec.inactive_when(values):
            continue
        elif isinstance(knob, FloatRange):
            values[spec.name] = trial.suggest_float(spec.name, knob.low, knob.high, step=knob.step, log=knob.log)
        elif isinstance(knob, IntRange):
            values[spec.name] = trial.suggest_int(spec.name, knob.low, knob.high, step=knob.step, log=knob.log)
        elif isinstance(knob, Choices):
            values[spec.name] = trial.suggest_categorical(spec.name, list(knob.values))
        else:  # pragma: no cover - SearchSpace only holds the four knob types
            raise TypeError(f"unknown knob type {knob!r}")
    architecture = values.get("architecture")
    # Fixed knobs that do not apply to this architecture (a CNN's prune_ratio) keep the Recipe's defaults.
    recipe = {
        spec.name: spec.from_yaml(values[spec.name])
        for spec in KNOBS
        if spec.name in values and spec.applies(architecture)
    }
    return Recipe(seed=trial.number, **recipe)
