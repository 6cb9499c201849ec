"""A study over every kind of student: CNN, structurally pruned, onnxruntime fp32/int8; each exported and reloaded."""

from __future__ import annotations

import json

import pytest
import torch

from latencysolver import load
from latencysolver.cli import main
from latencysolver.config.knobs import TRANSFORMER_KNOBS
from latencysolver.config.study import load_study_config
from latencysolver.results.records import study_record, trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from tests.conftest import export_cli

SPACE = {
    "architecture": {"choices": ["transformer", "cnn"]},
    "prune_ratio": {"choices": [0.0, 0.5]},
    "prune_kind": "structured",
    "quant_dtype": {"choices": ["fp32", "ort-fp32", "ort-int8"]},
    "skip_prob": {"choices": [0.0, 0.5]},
    "rank": {"choices": ["off", 0.5]},
    "temperature": 2.0,
    "alpha": 0.5,
    "hidden_weight": {"choices": [0.0, 1.0]},  # the teacher's hidden states too, for half the transformers
}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, tiny_model_dir, synthetic_data_dir):
    """The study, and what each of its trials handed to distill(): (hidden_weight, hidden_layers)."""
    from tests.conftest import write_study_yaml

    folder = tmp_path_factory.mktemp("mixed")
    config = load_study_config(
        write_study_yaml(
            folder,
            tiny_model_dir,
            synthetic_data_dir,
            search_space=SPACE,
            n_trials=8,
            cnn={"embed_dim": 16, "channels": 8, "kernel_sizes": [3]},
            cnn_distillation={"steps": 3, "batch_size": 8, "learning_rate": 2.0e-3},
        )
    )
    from latencysolver.search import students

    calls = []
    real = students.distill

    def spy(*args, **kwargs):
        calls.append((kwargs.get("hidden_weight", 0.0), kwargs.get("hidden_layers")))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(students, "distill", spy)
        study = run_study(config, RunOptions(cache_dir=str(folder / "cache"), progress=False), log=lambda _: None)
    return config, study, calls


@pytest.fixture(scope="module")
def mixed_study(mixed_run):
    config, study, _ = mixed_run
    return config, study


def test_every_kind_of_student_completes(mixed_study):
    _, study = mixed_study
    trials = study.get_trials()
    assert all(t.state.name == "COMPLETE" for t in trials), [trial_record(t).fail_reason for t in trials]
    recipes = [trial_record(t).recipe_dict for t in trials]
    assert {r["architecture"] for r in recipes} == {"transformer", "cnn"}
    assert {r["quant_dtype"] for r in recipes} >= {"ort-fp32", "ort-int8"}
    assert {r["hidden_weight"] for r in recipes if r["architecture"] == "transformer"} == {0.0, 1.0}


def test_hidden_weight_reaches_distillation_with_each_layers_target(mixed_run):
    from latencysolver.training.distillation import hidden_targets

    _, study, calls = mixed_run
    trials = study.get_trials()
    assert len(calls) == len(trials)  # one distill() call per trial, in trial order (one process)
    for t, (weight, layers) in zip(trials, calls, strict=True):
        record = trial_record(t)
        recipe = record.recipe_dict
        assert weight == (recipe["hidden_weight"] if recipe["architecture"] == "transformer" else 0.0)
        if weight > 0:  # the tiny teacher has 2 layers; deterministic skip keeps [0] or both
            assert layers == hidden_targets(record.kept_layers, 2)


def test_cnn_trials_leave_the_transformer_knobs_out(mixed_study):
    _, study = mixed_study
    for t in study.get_trials():
        if t.params["architecture"] == "cnn":
            assert not set(t.params) & set(TRANSFORMER_KNOBS)
            record = trial_record(t)
            assert record.layers == 0 and record.recipe_dict["prune_ratio"] == 0.0
        else:
            assert {"prune_ratio", "skip_prob", "rank"} <= set(t.params)


def test_each_export_predicts_what_its_trial_predicted(mixed_study, tmp_path, synthetic_data_dir):
    config, study = mixed_study
    rows = [json.loads(line) for line in (synthetic_data_dir / "validation.jsonl").read_text().splitlines()]
    seen = set()
    for trial in study.get_trials():
        recipe = trial_record(trial).recipe_dict
        kind = (recipe["architecture"], recipe["quant_dtype"], recipe["prune_ratio"] > 0)
        if kind in seen:
            continue
        seen.add(kind)
        out = tmp_path / f"t{trial.number}"
        assert export_cli(config.storage, str(trial.number), str(out)) == 0
        clf = load(out)
        # every export ships an ONNX graph: int8 exactly when the trial is int8 (tests/test_export.py checks the graph)
        onnx = json.loads((out / "metrics.json").read_text())["onnx"]
        assert (out / "model.onnx").is_file()
        assert (onnx["precision"] == "int8") == recipe["quant_dtype"].endswith("int8"), (kind, onnx)
        predictions = [int(p.answer) for p in clf.predict([r["question"] for r in rows], [r["passage"] for r in rows])]
        assert predictions == json.loads((out / "predictions.json").read_text())["predictions"], kind
    assert len(seen) >= 3


def test_a_structured_trial_exports_fewer_heads_and_neurons(study_yaml, tmp_path):
    space = dict(SPACE, architecture="transformer", prune_ratio=0.5, quant_dtype="fp32", skip_prob=0.0, rank="off")
    config = load_study_config(study_yaml(search_space=space, n_trials=1))
    study = run_study(config, RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=lambda _: None)
    out = tmp_path / "pruned"
    assert main(["export", "--study", "tiny", "--storage", config.storage, "--trial", "0", "--out", str(out)]) == 0
    model = load(out).model
    for layer in model.base_model.encoder.layer:
        assert layer.attention.self.query.out_features == 16  # tiny teacher: 2 heads of 16, ratio 0.5 leaves one
        assert layer.intermediate.dense.out_features == 32  # of 64 FFN neurons
    assert trial_record(study.get_trials()[0]).parameters < study_record(study).teacher.parameters
    assert model(input_ids=torch.tensor([[101, 2000, 102]])).logits.shape == (1, 2)
