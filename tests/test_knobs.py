"""The knob table (config/knobs.py) is the one place a knob is declared: everything else must agree with it."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import optuna
import pytest

from latencysolver.compression import resolve_rank
from latencysolver.config import recipe as recipe_module
from latencysolver.config.knobs import (
    KNOB,
    KNOB_NAMES,
    KNOBS,
    TRANSFORMER_KNOBS,
    knob_table_markdown,
    valid_rank,
)
from latencysolver.config.recipe import Recipe
from latencysolver.config.space import Choices, Fixed, SearchSpace, parse_search_space
from latencysolver.errors import ConfigError
from latencysolver.results import figures
from latencysolver.search.suggest import suggest_recipe

KNOB_PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "own-model-and-data.md"


def _example(spec) -> object:
    """A valid value of the knob other than its default, so a test sees it arrive."""
    candidates = [*spec.choices, 0.25, 4, 3.0, 64]
    return next(v for v in candidates if spec.valid(v) and v != spec.default)


def _two_choice_space(**override) -> SearchSpace:
    knobs = {s.name: Choices((s.yaml_default, _example(s))) for s in KNOBS}
    return SearchSpace(**(knobs | override))


# ------------------------------------------------------------------------------------------------ one declaration


def test_search_space_has_one_field_per_knob_in_table_order_with_the_table_defaults():
    assert tuple(f.name for f in dataclasses.fields(SearchSpace)) == KNOB_NAMES
    assert SearchSpace() == SearchSpace(**{s.name: Fixed(s.yaml_default) for s in KNOBS})
    assert KNOB_NAMES[0] == "architecture"  # sampled first: the others depend on it


def test_recipe_fields_are_the_knobs_plus_the_seed_with_the_table_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(Recipe)}
    assert set(fields) - {"seed"} == set(KNOB_NAMES)
    assert {name: fields[name] for name in KNOB_NAMES} == {s.name: s.default for s in KNOBS}
    assert figures.NOT_KNOBS == ("seed",)


def test_literal_types_list_the_tables_choices():
    hints = typing.get_type_hints(Recipe, vars(recipe_module))
    for spec in KNOBS:
        if spec.kind == "categorical":
            assert typing.get_args(hints[spec.name]) == spec.choices, spec.name


@pytest.mark.parametrize("spec", KNOBS, ids=lambda s: s.name)
def test_every_knob_is_accepted_by_the_parser_and_recipe(spec):
    example = _example(spec)
    space = parse_search_space({spec.name: {"choices": [spec.yaml_default, example]}}, "s.yaml")
    assert getattr(space, spec.name) == Choices((spec.yaml_default, example))
    assert parse_search_space({spec.name: example}, "s.yaml") == SearchSpace(**{spec.name: Fixed(example)})
    assert getattr(Recipe(**{spec.name: example}), spec.name) == example
    assert spec.name in figures.KNOB_ORDER


@pytest.mark.parametrize("spec", KNOBS, ids=lambda s: s.name)
def test_every_knob_refuses_what_the_table_refuses(spec):
    bad = "nonsense" if spec.kind != "categorical" else 3.5
    with pytest.raises(ConfigError, match=f"s.yaml: {spec.name}: expected ") as info:
        parse_search_space({spec.name: bad}, "s.yaml")
    assert (info.value.file, info.value.key, info.value.value) == ("s.yaml", spec.name, bad)
    with pytest.raises(ValueError, match=f"{spec.name} must be "):
        Recipe(**{spec.name: bad})


def test_suggest_recipe_samples_every_knob_into_the_recipe():
    examples = {s.name: _example(s) for s in KNOBS} | {"architecture": "transformer"}
    recipe = suggest_recipe(optuna.trial.FixedTrial(examples), _two_choice_space())
    assert {name: getattr(recipe, name) for name in KNOB_NAMES} == examples


def test_report_order_is_the_table_order():
    assert figures.KNOB_ORDER == KNOB_NAMES
    study = optuna.create_study(directions=["maximize", "maximize"])
    recipes = [
        Recipe(prune_ratio=0.5, skip_prob=0.5),
        Recipe(**{s.name: _example(s) for s in KNOBS if s.name != "architecture"}),
        Recipe(architecture="cnn"),
    ]
    for i, recipe in enumerate(recipes):
        study.add_trial(
            optuna.trial.create_trial(values=[0.6 + i / 10, 1.0 + i], user_attrs={"recipe": recipe.to_dict()})
        )
    assert tuple(figures.knob_values(study)) == KNOB_NAMES


# ------------------------------------------------------------------------------------------------ conditional knobs


def test_suggest_and_the_report_leave_out_the_same_knobs():
    """A knob is unsampled by suggest_recipe exactly where the report shows n/a: both ask ``inactive_when``."""
    space = _two_choice_space(prune_ratio=Choices((0.0, 0.5)), skip_prob=Choices((0.0, 0.5)))
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {name: set() for name in KNOB_NAMES}
    for _ in range(60):
        trial = study.ask()
        recipe = suggest_recipe(trial, space).to_dict()
        for name in KNOB_NAMES:
            unsampled = name not in trial.params
            assert unsampled == (figures._active_knob_value(recipe, name) == figures.NA), (name, recipe)
            seen[name].add(unsampled)
        if recipe["architecture"] == "cnn":  # transformer-only knobs keep the Recipe's defaults
            assert all(recipe[name] == KNOB[name].default for name in TRANSFORMER_KNOBS)
    # both cases happened for the conditional knobs, so the agreement above was tested on each
    for name in (*TRANSFORMER_KNOBS, "architecture", "quant_dtype"):
        assert seen[name] == ({True, False} if name in TRANSFORMER_KNOBS else {False}), name


def test_inactive_rules():
    assert KNOB["rank"].inactive_when({"architecture": "cnn"})
    assert not KNOB["rank"].inactive_when({"architecture": "transformer"})
    assert not KNOB["quant_dtype"].inactive_when({"architecture": "cnn"})
    assert KNOB["prune_kind"].inactive_when({"architecture": "transformer", "prune_ratio": 0})
    assert not KNOB["prune_kind"].inactive_when({"architecture": "transformer", "prune_ratio": 0.5})
    assert KNOB["skip_mode"].inactive_when({"skip_prob": 0.0})
    assert not KNOB["skip_mode"].inactive_when({"skip_prob": 0.1})


# -------------------------------------------------------------------------------------------------- rank, docs


@pytest.mark.parametrize("rank", [1, 4, 0.5, 0.999, 1.0, 0.0, 0, -1, True, 1.5, float("nan")])
def test_one_rank_rule_in_the_parser_the_recipe_and_the_low_rank_pass(rank):
    def accepts(make) -> bool:
        try:
            make()
        except (ValueError, ConfigError):
            return False
        return True

    verdicts = {
        "valid_rank": valid_rank(rank),
        "parser": accepts(lambda: parse_search_space({"rank": rank}, "s.yaml")),
        "recipe": accepts(lambda: Recipe(rank=rank)),
        "low_rank": accepts(lambda: resolve_rank(rank, 32, 64)),
    }
    assert len(set(verdicts.values())) == 1, verdicts
    if rank == 1.0 and isinstance(rank, float):
        assert not verdicts["valid_rank"]  # full rank as a fraction: refused everywhere


def test_docs_knob_table_is_the_generated_one():
    text = KNOB_PAGE.read_text(encoding="utf-8")
    table = knob_table_markdown()
    assert table in text, f"{KNOB_PAGE.name}'s knob table differs from knob_table_markdown(): paste its output in"
    assert text.count("| knob | values |") == 1
    assert all(f"| `{name}` |" in table for name in KNOB_NAMES)
