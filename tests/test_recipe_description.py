"""``Recipe.describe`` and ``Recipe.from_description``: the line the tables print reads back as the same recipe."""

from __future__ import annotations

import itertools

import pytest

from latencysolver.config.recipe import Recipe


def _recipes() -> list[Recipe]:
    transformers = [
        Recipe(
            prune_ratio=prune,
            prune_kind=kind,
            quant_dtype=dtype,
            skip_prob=skip,
            skip_mode=mode,
            rank=rank,
            temperature=7.65,
            alpha=0.82,
            hidden_weight=hidden,
            attention_weight=hidden,
            max_tokens=tokens,
            recovery_steps=recovery,
        )
        for prune, kind, dtype, skip, mode, rank, hidden, tokens, recovery in itertools.product(
            (0.0, 0.3),
            ("unstructured", "structured"),
            ("fp32", "ort-int8"),
            (0.0, 0.5),
            ("deterministic", "stochastic"),
            (None, 8, 0.25),
            (0.0, 0.5),
            (None, 96),
            (0, 150),
        )
        if prune > 0 or kind == "unstructured"  # describe leaves the kind out at ratio 0: it is not sampled there
    ]
    cnns = [Recipe(architecture="cnn", quant_dtype=d, temperature=2.5, alpha=0.4) for d in ("int8", "ort-fp32")]
    return transformers + cnns


def test_every_described_recipe_reads_back_as_itself():
    recipes = _recipes()
    assert len(recipes) > 500
    for recipe in recipes:
        assert Recipe.from_description(recipe.describe()) == recipe, recipe.describe()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("prune=0.30(xyz) int8 skip=0.00(det) rank=off T=3.01 alpha=0.33", "unknown prune_kind 'xyz'"),
        ("prune=0.30(str) int8 skip=0.50(rnd) rank=off T=3.01 alpha=0.33", "unknown skip_mode 'rnd'"),
        ("prune=0.30(str) int8 speed=2 T=3.01 alpha=0.33", "unknown word 'speed=2'"),
        ("prune=0.30(str) int4 T=3.01 alpha=0.33", "quant_dtype must be"),
    ],
)
def test_a_description_it_cannot_read_is_a_value_error(text, match):
    with pytest.raises(ValueError, match=match):
        Recipe.from_description(text)
