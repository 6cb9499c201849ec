"""Config: everything a user writes, turned into typed, frozen dataclasses once, at the edge.  ``knobs.py`` is
the knob table (each knob declared once: kind, valid values, default, family, when it is not sampled);
``space.py`` a search space (each knob fixed, a range or choices); ``study.py`` the study file (data, teacher,
distillation, latency, constraints, workers, sampler); ``training.py`` the training budgets and what each trial
mode can honour; ``convert.py`` the YAML-to-dataclass converter; ``recipe.py`` the ``Recipe`` of one trial.  A bad file
fails with a ``ConfigError`` naming the file, the key and the value.  Past this package no code sees YAML."""

from latencysolver.config.knobs import KNOB, KNOB_NAMES, KNOBS, KnobSpec, knob_table_markdown
from latencysolver.config.recipe import Recipe
from latencysolver.config.space import Choices, Fixed, FloatRange, IntRange, SearchSpace, load_search_space
from latencysolver.config.study import (
    ConstraintsConfig,
    DataConfig,
    LatencyConfig,
    StudyConfig,
    WorkersConfig,
    config_from_dict,
    config_to_dict,
    load_study_config,
)
from latencysolver.config.training import ElasticConfig, TrainConfig

__all__ = [
    "KNOB",
    "KNOBS",
    "KNOB_NAMES",
    "Choices",
    "ConstraintsConfig",
    "DataConfig",
    "ElasticConfig",
    "Fixed",
    "FloatRange",
    "IntRange",
    "KnobSpec",
    "LatencyConfig",
    "Recipe",
    "SearchSpace",
    "StudyConfig",
    "TrainConfig",
    "WorkersConfig",
    "config_from_dict",
    "config_to_dict",
    "knob_table_markdown",
    "load_search_space",
    "load_study_config",
]
