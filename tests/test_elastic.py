"""The elastic student (issue 18): rewiring, slices, the sandwich training, and elastic trials end to end."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
from transformers import AlbertConfig, AlbertForSequenceClassification

from latencysolver import load
from latencysolver.compression import LowRankLinear, encoder_blocks, encoder_family, factorize_
from latencysolver.compression.elastic import (
    SubNetwork,
    elastic_shape,
    rewire_,
    sample_subnetwork,
    slice_model,
    subnetwork,
    use_subnetwork,
)
from latencysolver.compression.structured import _block_parts, _magnitude_stats, _unit_scores
from latencysolver.config.study import load_study_config
from latencysolver.config.training import ElasticConfig
from latencysolver.data.batches import EncodedSplit
from latencysolver.errors import CompressionRefused, ConfigError
from latencysolver.models.elastic import prepare_elastic
from latencysolver.models.teacher import Teacher
from latencysolver.results.records import study_record, trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.training import elastic as elastic_training
from latencysolver.training.elastic import sandwich, train_elastic
from tests.conftest import export_cli
from tests.test_architectures import logits, tiny_model

HEADS, NEURONS = 4, 64  # the tiny models of tests/test_architectures.py: 4 heads of 8, FFN 64, 2 layers


def widths(model: torch.nn.Module) -> list[tuple[int, int, int, int]]:
    """Per block: Q/K/V rows, attention-output columns, FFN-in rows, FFN-out columns (per stacked part: ModernBERT's
    fused [Q; K; V] has three, its gated [input; gate] FFN two)."""
    arch = encoder_family(model, "test")
    out = []
    for _, block in encoder_blocks(model, "test"):
        q, o = block.get_submodule(arch.query), block.get_submodule(arch.attention_output)
        i, f = block.get_submodule(arch.ffn_in), block.get_submodule(arch.ffn_out)
        parts = q.out_features // arch.groups("query"), i.out_features // arch.groups("ffn_in")
        out.append((parts[0], o.in_features, parts[1], f.in_features))
    return out


def test_rewired_full_network_gives_the_teachers_logits(family, batch):
    model = tiny_model(family)
    before = logits(model, batch)
    orders = rewire_(model, "magnitude")
    assert any(o["heads"] != sorted(o["heads"]) or o["neurons"] != sorted(o["neurons"]) for o in orders.values())
    # a permutation: the same function, up to the order of float sums
    torch.testing.assert_close(logits(model, batch), before, rtol=0, atol=1e-5)
    full = subnetwork(elastic_shape(model), 0.0, 0.0)
    torch.testing.assert_close(logits(slice_model(model, full), batch), before, rtol=0, atol=1e-5)


def test_rewiring_puts_the_most_important_heads_first(family):
    model = tiny_model(family)
    rewire_(model, "magnitude")
    arch = encoder_family(model, "test")
    for name, block in encoder_blocks(model, "test"):
        parts = _block_parts(name, block, arch)
        heads, neurons = _unit_scores(parts, _magnitude_stats([linear for _, linear in parts]), 8)
        assert torch.all(heads[:-1] >= heads[1:]) and torch.all(neurons[:-1] >= neurons[1:])
        assert heads.shape == (HEADS,) and neurons.shape == (NEURONS,)


@pytest.mark.parametrize(
    ("ratio", "skip", "heads", "neurons", "layers"), [(0.5, 0.5, 2, 32, (0,)), (0.25, 0.0, 3, 48, (0, 1))]
)
def test_a_slice_has_the_stated_heads_neurons_layers_and_ranks(family, batch, ratio, skip, heads, neurons, layers):
    model = tiny_model(family)
    rewire_(model, "magnitude")
    sub = subnetwork(elastic_shape(model), ratio, skip)
    assert (sub.heads, sub.neurons, sub.layers) == (heads, neurons, layers)  # structured pruning's arithmetic
    sliced = slice_model(model, sub)
    assert widths(sliced) == [(heads * 8, heads * 8, neurons, neurons)] * len(widths(sliced))
    depth = sliced.config.num_hidden_layers if family != "DistilBERT" else sliced.config.n_layers
    assert depth == len(layers)
    ranks = factorize_(sliced, 4)  # the truncated SVD of the sliced Linears, where rank 4 saves FLOPs
    assert ranks and all(isinstance(sliced.get_submodule(n), LowRankLinear) for n in ranks)
    assert all(sliced.get_submodule(n).rank == 4 for n in ranks)
    assert logits(sliced, batch).shape == (2, 2)
    assert widths(model) == [(32, 32, 64, 64)] * len(widths(model))  # the elastic model itself is untouched


def test_running_as_a_subnetwork_equals_its_slice_and_restores_the_model(family, batch):
    model = tiny_model(family)
    rewire_(model, "magnitude")
    full = logits(model, batch)
    modules = dict(model.named_modules())
    sub = SubNetwork(heads=1, neurons=10, layers=(1,))
    with use_subnetwork(model, sub):
        as_sub = logits(model, batch)
    torch.testing.assert_close(as_sub, logits(slice_model(model, sub), batch), rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="boom"), use_subnetwork(model, sub):
        raise RuntimeError("boom")
    assert dict(model.named_modules()).keys() == modules.keys()
    assert all(model.get_submodule(n) is m for n, m in modules.items())
    torch.testing.assert_close(logits(model, batch), full, rtol=0, atol=0)


def test_deberta_with_position_projections_of_its_own_runs_as_a_subnetwork(batch):
    # share_att_key=False: pos_key_proj / pos_query_proj are per head too, and DeBERTa reshapes by its head count,
    # so a sub-network must narrow them with Q, K, V and tell the attention how many heads it has.
    model = tiny_model("DeBERTa-v2", share_att_key=False)
    before = logits(model, batch)
    rewire_(model, "magnitude")
    torch.testing.assert_close(logits(model, batch), before, rtol=0, atol=1e-5)
    sub = SubNetwork(heads=2, neurons=16, layers=(0, 1))
    sliced = slice_model(model, sub)
    for _, block in encoder_blocks(sliced, "test"):
        assert block.attention.self.pos_key_proj.out_features == block.attention.self.pos_query_proj.out_features == 16
        assert block.attention.self.num_attention_heads == 2
    with use_subnetwork(model, sub):
        as_sub = logits(model, batch)
    torch.testing.assert_close(as_sub, logits(sliced, batch), rtol=0, atol=1e-6)
    assert all(block.attention.self.num_attention_heads == HEADS for _, block in encoder_blocks(model, "test"))
    torch.testing.assert_close(logits(model, batch), before, rtol=0, atol=1e-5)


def test_random_subnetworks_stay_between_the_smallest_and_the_full_one():
    shape = elastic_shape(tiny_model("BERT", num_hidden_layers=6))
    smallest = subnetwork(shape, 0.5, 0.67)
    generator = torch.Generator().manual_seed(0)
    seen = [sample_subnetwork(shape, smallest, generator) for _ in range(200)]
    assert {s.heads for s in seen} == {2, 3, 4} and {s.neurons for s in seen} <= set(range(32, 65))
    assert {len(s.layers) for s in seen} == {2, 3, 4, 5, 6}
    assert all(s.layers == subnetwork(shape, 0.0, 1 - len(s.layers) / 6).layers for s in seen)  # the skip rule
    width_only = sandwich(shape, smallest, 2, generator, depth=False)
    assert [len(s.layers) for s in width_only] == [6, 2, 6, 6] and width_only[1] == smallest  # the smallest as is
    both = sandwich(shape, smallest, 2, generator, depth=True)
    assert both[0] == subnetwork(shape, 0.0, 0.0) and both[1] == smallest


def random_split(rows: int, seed: int = 0) -> tuple[EncodedSplit, torch.Tensor]:
    """``rows`` random rows of 10 tokens for the tiny models, and random teacher logits for them."""
    generator = torch.Generator().manual_seed(seed)
    split = EncodedSplit(
        input_ids=tuple(tuple(torch.randint(3, 100, (10,), generator=generator).tolist()) for _ in range(rows)),
        token_type_ids=None,
        labels=tuple(i % 2 for i in range(rows)),
    )
    return split, torch.randn(rows, 2, generator=generator)


def test_the_sandwich_trains_the_largest_the_smallest_and_random_ones(monkeypatch, batch):
    model = tiny_model("BERT")
    rewire_(model, "magnitude")
    shape = elastic_shape(model)
    smallest = subnetwork(shape, 0.5, 0.5)
    split, teacher_logits = random_split(16)
    ran: list[SubNetwork] = []
    real = elastic_training.use_subnetwork

    def spy(module, sub):
        ran.append(sub)
        return real(module, sub)

    monkeypatch.setattr(elastic_training, "use_subnetwork", spy)
    before = [p.detach().clone() for p in model.parameters()]
    config = ElasticConfig(steps=4, batch_size=8, random_subnetworks=1, width_first=0.5, importance="magnitude")
    result = train_elastic(model, split, teacher_logits, config, smallest, progress=False)
    assert result.steps == 4 and len(ran) == 4 * 3
    steps = [ran[i : i + 3] for i in range(0, 12, 3)]  # the sub-networks each step trained, in order
    assert all(s[0] == subnetwork(shape, 0.0, 0.0) for s in steps)
    # the smallest of the space, depth included, explicitly every step (the width-first steps too)
    assert all(s[1] == smallest == SubNetwork(heads=2, neurons=32, layers=(0,)) for s in steps)
    assert [s[2].layers for s in steps[:2]] == [(0, 1), (0, 1)]  # width first: random depths from step 3 of 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_one_sub_networks_graph_is_alive_at_a_time(monkeypatch):
    """Each sub-network is back-propagated before the next runs, and no graph outlives its step: the saved tensors
    alive when a sub-network starts (counted through autograd's saved-tensor hooks) are none."""
    model = tiny_model("BERT")
    rewire_(model, "magnitude")
    split, teacher_logits = random_split(16)
    live: weakref.WeakSet = weakref.WeakSet()

    class Saved:
        def __init__(self, tensor: torch.Tensor) -> None:
            self.tensor = tensor

    def pack(tensor: torch.Tensor) -> Saved:
        saved = Saved(tensor)
        live.add(saved)
        return saved

    alive_at_start: list[int] = []
    real = elastic_training.use_subnetwork

    def spy(module, sub):
        alive_at_start.append(len(live))
        return real(module, sub)

    monkeypatch.setattr(elastic_training, "use_subnetwork", spy)
    config = ElasticConfig(steps=3, batch_size=8, random_subnetworks=2, width_first=0.0, importance="magnitude")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved.tensor):
        train_elastic(model, split, teacher_logits, config, subnetwork(elastic_shape(model), 0.5, 0.5), progress=False)
    assert len(alive_at_start) == 3 * 4 and max(alive_at_start) == 0 and len(live) == 0


def test_the_default_steps_follow_the_data():
    default = ElasticConfig()
    assert default.steps is None and default.steps_for(40) == 25  # 10 epochs of 40 rows at batch 16
    assert default.steps_for(2270) == 600 and default.steps_for(1) == 1  # at most 600; at least one
    assert ElasticConfig(steps=7).steps_for(40) == 7 and ElasticConfig(epochs=2.5, batch_size=8).steps_for(40) == 13


def test_a_tiny_data_set_trains_the_shorter_default_and_says_so(tmp_path, study_yaml):
    config = load_study_config(
        study_yaml(
            search_space=SPACE,
            trial_mode="elastic",
            elastic={"batch_size": 8, "importance": "magnitude", "random_subnetworks": 0},
        )
    )
    model = tiny_model("BERT")
    split, teacher_logits = random_split(4)
    teacher = Teacher(path=tmp_path, key="t", model=model, train_logits=teacher_logits)
    logs: list[str] = []
    student = prepare_elastic(config, teacher, split, "rows", tmp_path / "cache", progress=False, log=logs.append)
    assert json.loads((student.path / "elastic.json").read_text())["steps"] == 5  # 10 epochs of 4 rows at batch 8
    assert any(
        "training once for 5 steps (10 epochs of 4 train rows at batch 8: elastic.epochs 10; set elastic.steps" in line
        for line in logs
    ), logs
    assert sum(" s a step, about " in line and "for the 2 steps left" in line for line in logs) == 1, logs


def test_an_albert_with_several_groups_is_refused_by_name():
    model = AlbertForSequenceClassification(
        AlbertConfig(
            vocab_size=100,
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            num_hidden_groups=2,
        )
    )
    with pytest.raises(CompressionRefused, match="elastic student: ALBERT with num_hidden_groups=2"):
        elastic_shape(model)


# ------------------------------------------------------------------------------------------- elastic trials

SPACE = {
    "prune_ratio": {"choices": [0.0, 0.5]},
    "prune_kind": "structured",
    "quant_dtype": {"choices": ["fp32", "ort-int8"]},
    "skip_prob": {"choices": [0.0, 0.5]},
    "rank": {"choices": ["off", 4]},
    "temperature": 2.0,
    "alpha": 0.5,
    "recovery_steps": {"choices": [0, 2]},
}
ELASTIC = {"steps": 3, "batch_size": 8, "random_subnetworks": 1, "importance": "gradient"}


@pytest.fixture(scope="module")
def elastic_run(tmp_path_factory, tiny_model_dir, synthetic_data_dir):
    from tests.conftest import write_study_yaml

    folder = tmp_path_factory.mktemp("elastic")
    config = load_study_config(
        write_study_yaml(
            folder,
            tiny_model_dir,
            synthetic_data_dir,
            search_space=SPACE,
            n_trials=6,
            trial_mode="elastic",
            elastic=ELASTIC,
        )
    )
    logs: list[str] = []
    study = run_study(config, RunOptions(cache_dir=str(folder / "cache"), progress=False), log=logs.append)
    return config, study, logs, folder


def test_elastic_trials_slice_one_student_trained_once(elastic_run, monkeypatch):
    config, study, logs, folder = elastic_run
    trials = study.get_trials()
    assert all(t.state.name == "COMPLETE" for t in trials), [trial_record(t).fail_reason for t in trials]
    assert sum("elastic student: training once for 3 steps" in line for line in logs) == 1
    record = study_record(study)
    assert record.elastic_artifacts is not None and "elastic.json" in record.elastic_artifacts.files
    for t in trials:
        r = trial_record(t)
        recipe = r.recipe_dict
        heads, neurons = (1, 32) if recipe["prune_ratio"] == 0.5 else (2, 64)  # the tiny teacher: 2 heads, FFN 64
        assert r.elastic["key"] == record.elastic_artifacts.key
        assert (r.elastic["heads"], r.elastic["neurons"]) == (heads, neurons)
        assert r.kept_layers == ((0,) if recipe["skip_prob"] == 0.5 else (0, 1))
        assert r.distill_steps == recipe["recovery_steps"]
    assert {trial_record(t).recipe_dict["recovery_steps"] for t in trials} == {0, 2}
    # a second run finds the elastic student in the cache: no training
    monkeypatch.setattr("latencysolver.models.elastic.train_elastic", lambda *a, **k: pytest.fail("trained again"))
    more = load_study_config(str(folder / "study.yaml"), n_trials=7)
    run_study(more, RunOptions(cache_dir=str(folder / "cache"), progress=False), log=lambda _: None)


def test_an_elastic_trial_exports_and_loads_to_its_own_predictions(elastic_run, tmp_path, synthetic_data_dir):
    config, study, _, _ = elastic_run
    rows = [json.loads(line) for line in (synthetic_data_dir / "validation.jsonl").read_text().splitlines()]
    narrow = [t for t in study.get_trials() if t.params["prune_ratio"] == 0.5]
    assert narrow
    for trial in narrow[:2]:
        out = tmp_path / f"t{trial.number}"
        assert export_cli(config.storage, str(trial.number), str(out)) == 0
        clf = load(out)
        shape = json.loads((out / "student.json").read_text())["structured"]["blocks"]
        assert shape and all(block == {"heads": 1, "neurons": 32} for block in shape.values())
        predictions = [int(p.answer) for p in clf.predict([r["question"] for r in rows], [r["passage"] for r in rows])]
        assert predictions == json.loads((out / "predictions.json").read_text())["predictions"]


def test_a_trial_below_min_speedup_is_recorded_infeasible_untrained(study_yaml, session_cache, monkeypatch):
    from latencysolver.search import students

    monkeypatch.setattr(students, "distill", lambda *a, **k: pytest.fail("a rejected trial was trained"))
    config = load_study_config(study_yaml(n_trials=2, constraints={"min_speedup": 1000.0}))
    study = run_study(config, RunOptions(cache_dir=session_cache, progress=False), log=lambda _: None)
    for t in study.get_trials():
        r = trial_record(t)
        assert t.state.name == "COMPLETE" and r.distill_steps == 0 and r.distill_final_loss is None
        assert r.rejected_before_training == {"speedup": r.speedup, "min_speedup": 1000.0}
        assert t.constraints["min_speedup"] == pytest.approx(1000.0 - r.speedup)
        assert t.constraints["min_accuracy"] > 0  # never feasible, whatever its untrained accuracy
    assert study.best_trials == []


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (
            {"trial_mode": "elastic", "search_space": {"prune_ratio": {"low": 0.0, "high": 0.5}}},
            "search_space.prune_kind",
        ),
        (
            {"trial_mode": "elastic", "search_space": {"skip_prob": 0.5, "skip_mode": "stochastic"}},
            "search_space.skip_mode",
        ),
        (
            {"trial_mode": "elastic", "search_space": {"architecture": {"choices": ["transformer", "cnn"]}}},
            "search_space.architecture",
        ),
        ({"search_space": {"recovery_steps": {"choices": [0, 10]}}}, "search_space.recovery_steps"),
        ({"constraints": {"min_speedup": 0}}, "constraints.min_speedup"),
        ({"elastic": {"width_first": 1.5}}, "elastic.width_first"),
        ({"trial_mode": "both"}, "trial_mode"),
    ],
)
def test_elastic_settings_a_trial_cannot_honour_are_refused(study_yaml, overrides, key):
    with pytest.raises(ConfigError) as caught:
        load_study_config(study_yaml(**overrides))
    assert caught.value.key == key, str(caught.value)


def test_a_worker_elsewhere_copies_the_elastic_student_instead_of_training_it(elastic_run, tmp_path, monkeypatch):
    from latencysolver.search.run import join_study

    config, study, _, _ = elastic_run
    monkeypatch.setattr("latencysolver.models.elastic.train_elastic", lambda *a, **k: pytest.fail("trained again"))
    logs: list[str] = []
    elsewhere = tmp_path / "other-cache"  # another machine's cache: no elastic student in it
    join_study(config.name, config.storage, RunOptions(cache_dir=str(elsewhere), progress=False), logs.append, 1)
    key = study_record(study).elastic_artifacts.key
    assert any("elastic student: copied from the study's artifact store" in line for line in logs), logs
    assert (elsewhere / "elastic" / key / "elastic.json").is_file()
    assert any(f"elastic student: the study's, {elsewhere / 'elastic' / key}" in line for line in logs)
