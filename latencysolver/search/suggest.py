"""The only code that calls ``trial.suggest_*``: a study's search space and an Optuna trial become a ``Recipe``."""

from __future__ import annotations

from typing import Any

import optuna

from latencysolver.config.knobs import KNOBS
from latencysolver.config.recipe import Recipe
from latencysolver.config.space import Choices, Fixed, FloatRange, IntRange, SearchSpace
from latencysolver.config.study import StudyConfig
from latencysolver.results.attributes import seed_of

SEED_STRIDE = 1_000_003  # a prime: the seeds of successive resumes never meet the study seed's neighbours


def run_seed(seed: int | None, trials_so_far: int, offset: int = 0) -> int | None:
    """The sampler seed of one ``run`` or ``worker``: the study seed for a new study, so that a study is
    reproducible from scratch; derived from the trials so far (and the worker's ``offset``) on a resume, which
    would otherwise propose its first recipes again.  Always in [0, 2**32), what NumPy accepts."""
    if seed is None:
        return None
    return (seed + SEED_STRIDE * trials_so_far + offset) % 2**32


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """TPE and NSGA-II read the constraints each trial sets (``trial.set_constraint``); random search ignores them."""
    seed = config.sampler.seed
    if config.sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if config.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler.startup_trials is None:
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.sampler.startup_trials)


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
    # a seed repeat (`latencysolver confirm`) carries its own seed; a search trial's seed is its number
    seed = seed_of(trial)
    return Recipe(seed=seed if seed is not None else trial.number, **recipe)
