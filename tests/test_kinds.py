"""Student kinds (``latencysolver/search/kinds``): the registry's four kinds, the shape each builds for a tiny
recipe, how a trial picks one, and a fifth kind registered here that a study's trials then pick and use."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from latencysolver.compression import encoder_layers
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import load_study_config
from latencysolver.errors import CompressionRefused
from latencysolver.latency.protocol import latency_inputs
from latencysolver.models.cnn import CNNClassifier
from latencysolver.results.records import trial_record
from latencysolver.search.context import Prepared, TrainedStudent, TrialContext, with_kind_state
from latencysolver.search.kinds import KINDS, StudentKind, kind_of, register
from latencysolver.search.preparation import RunOptions, prepare, standalone_context
from latencysolver.search.run import run_study

SPACE = {  # an elastic study's space: structured pruning, deterministic skip
    "prune_ratio": {"choices": [0.0, 0.5]},
    "prune_kind": "structured",
    "quant_dtype": "fp32",
    "skip_prob": {"choices": [0.0, 0.5]},
    "temperature": 2.0,
    "alpha": 0.5,
}
HALF = Recipe(prune_ratio=0.5, prune_kind="structured", skip_prob=0.5)


@pytest.fixture(scope="module")
def elastic_ctx(tmp_path_factory, tiny_model_dir, synthetic_data_dir, session_cache) -> TrialContext:
    """The tiny teacher (2 layers, 2 heads, FFN 64) and its elastic student, as trials of an elastic study get them."""
    from tests.conftest import write_study_yaml

    folder = tmp_path_factory.mktemp("kinds")
    config = load_study_config(
        write_study_yaml(
            folder,
            tiny_model_dir,
            synthetic_data_dir,
            search_space=SPACE,
            trial_mode="elastic",
            elastic={"steps": 2, "batch_size": 8, "random_subnetworks": 0, "importance": "magnitude"},
        )
    )
    prepared = prepare(config, RunOptions(cache_dir=session_cache, progress=False), log=lambda _: None)
    inputs = latency_inputs(prepared.validation, config.latency, prepared.pad_id)
    return standalone_context(config, prepared, inputs, str(folder / "artifacts"))


def _heads(model: nn.Module) -> list[int]:
    return [layer.attention.self.num_attention_heads for layer in encoder_layers(model)]


def test_the_registry_holds_the_four_kinds():
    assert set(KINDS) == {"teacher", "compressed", "elastic", "cnn"}
    assert all(name == kind.name for name, kind in KINDS.items())


def test_a_trial_picks_its_kind_once_from_its_recipe_and_study(elastic_ctx):
    per_trial = dataclasses.replace(elastic_ctx, elastic=None)
    assert kind_of(elastic_ctx, HALF) == "elastic"
    assert kind_of(per_trial, HALF) == "compressed"
    assert kind_of(per_trial, Recipe(architecture="cnn")) == "cnn"
    assert kind_of(elastic_ctx, HALF, baseline="int8") == "teacher"  # a usual recipe, whatever the study's mode


def test_each_kind_builds_the_stated_shape(elastic_ctx):
    teacher = elastic_ctx.teacher_model
    assert _heads(teacher) == [2, 2]
    per_trial = dataclasses.replace(elastic_ctx, elastic=None)

    compressed, kept = KINDS["compressed"].untrained(per_trial, Recipe(prune_ratio=0.5, prune_kind="structured"))
    assert _heads(compressed) == [1, 1] and kept == (0, 1)  # half the heads, every layer

    sliced, kept = KINDS["elastic"].untrained(elastic_ctx, HALF)
    assert _heads(sliced) == [1] and kept == (0,)  # the width prefix of half the heads, the first layer
    assert encoder_layers(sliced)[0].intermediate.dense.out_features == 32  # half the FFN neurons

    cnn, kept = KINDS["cnn"].untrained(per_trial, Recipe(architecture="cnn"))
    assert isinstance(cnn, CNNClassifier) and kept == ()
    with pytest.raises(CompressionRefused):
        encoder_layers(cnn)  # no encoder layer at all

    model, kept = KINDS["teacher"].untrained(elastic_ctx, HALF)  # the recipe's knobs do not touch the teacher
    assert _heads(model) == [2, 2] and kept == (0, 1) and model is not teacher


class EchoKind(StudentKind):
    """A fifth kind: the teacher's untrained copy, "trained" for a step count it prepared once per study."""

    name = "echo"
    ranked = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def claims(self, ctx: TrialContext, recipe: Recipe) -> bool:
        return True  # asked first (registered last): it takes every searched recipe

    def prepare(self, config, prepared: Prepared, options, log) -> Prepared:
        self.calls.append("prepare")
        return with_kind_state(prepared, self.name, 7)

    def untrained(self, ctx: TrialContext, recipe: Recipe) -> tuple[nn.Module, tuple[int, ...]]:
        self.calls.append("untrained")
        return KINDS["teacher"].untrained(ctx, recipe)

    def train(self, ctx: TrialContext, recipe: Recipe, *, start=None, rungs=None) -> TrainedStudent:
        self.calls.append("train")
        assert start is not None
        return TrainedStudent(start, tuple(range(len(encoder_layers(start)))), ctx.kinds[self.name], None)

    def trains_from_a_start(self, ctx: TrialContext, recipe: Recipe) -> bool:
        return False


def test_a_registered_fifth_kind_is_picked_and_used_by_the_trials(study_yaml, session_cache):
    echo = register(EchoKind())
    try:
        with pytest.raises(ValueError, match="'echo' is already registered"):
            register(EchoKind())
        config = load_study_config(study_yaml(n_trials=2))
        study = run_study(config, RunOptions(cache_dir=session_cache, progress=False), log=lambda _: None)
    finally:
        del KINDS["echo"]
    records = [trial_record(t) for t in study.get_trials()]
    assert [r.state.name for r in records] == ["COMPLETE", "COMPLETE"], [r.fail_reason for r in records]
    assert echo.calls == ["prepare", "untrained", "train", "untrained", "train"]
    assert [r.distill_steps for r in records] == [7, 7]  # what it prepared, read back in each trial
    assert all(r.layers == 2 for r in records)  # its student kept every layer: no knob of the recipe applied
