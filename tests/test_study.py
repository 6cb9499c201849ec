"""A whole study on a tiny model: trials and objectives in SQLite, resume, the Pareto front, export → load."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from latencysolver import load
from latencysolver.cli import main
from latencysolver.config import load_study_config
from latencysolver.study import RunOptions, front_rows, load_existing_study, pick_best, run_study
from tests.conftest import write_study_yaml


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, tiny_model_dir, synthetic_data_dir):
    """One 3-trial study shared by the read-only tests of this module."""
    folder = tmp_path_factory.mktemp("study")
    config = load_study_config(write_study_yaml(folder, tiny_model_dir, synthetic_data_dir))
    options = RunOptions(cache_dir=str(folder / "cache"), progress=False)
    study = run_study(config, options, log=lambda _: None)
    return config, options, study


@pytest.fixture()
def fresh_study(study_yaml, tmp_path):
    """A 3-trial study of its own, for tests that add to it."""
    config = load_study_config(study_yaml())
    options = RunOptions(cache_dir=str(tmp_path / "cache"), progress=False)
    return config, options, run_study(config, options, log=lambda _: None)


def test_three_trials_with_both_objectives_in_sqlite(finished_study):
    config, _, _ = finished_study
    assert config.storage.startswith("sqlite:///") and Path(config.storage[len("sqlite:///"):]).is_file()
    study = optuna.load_study(study_name="tiny", storage=config.storage)  # read back from the file
    trials = study.get_trials()
    assert len(trials) == 3
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert study.metric_names == ["accuracy", "latency_ms"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in trials:
        accuracy, latency = t.values
        assert 0.0 <= accuracy <= 1.0 and latency > 0.0
        assert t.user_attrs["latency_p50_ms"] == latency
        assert t.user_attrs["latency_p90_ms"] >= latency
        assert t.user_attrs["speedup"] == pytest.approx(study.user_attrs["teacher"]["latency_p50_ms"] / latency)
        assert t.user_attrs["parameters"] > 0 and t.user_attrs["size_bytes"] > 0
        assert set(t.user_attrs["recipe"]) >= {"prune_ratio", "quant_dtype", "skip_prob", "rank", "temperature", "alpha"}
    teacher = study.user_attrs["teacher"]
    assert 0.0 <= teacher["accuracy"] <= 1.0 and teacher["latency_p50_ms"] > 0


def test_recipe_attrs_match_the_model_that_was_measured(finished_study):
    _, _, study = finished_study
    for t in study.get_trials():
        recipe = t.user_attrs["recipe"]
        # 2-layer tiny teacher: skip 0.5 keeps one layer, skip 0 keeps both
        assert t.user_attrs["layers"] == (1 if recipe["skip_prob"] == 0.5 else 2)
        if recipe["prune_ratio"] > 0 and recipe["rank"] is None:
            assert t.user_attrs["nonzero_parameters"] < t.user_attrs["parameters"]


def test_second_run_resumes_the_same_study(fresh_study, study_yaml):
    config, options, _ = fresh_study
    more = load_study_config(study_yaml(n_trials=5))
    study = run_study(more, options, log=lambda _: None)
    assert len(optuna.get_all_study_summaries(config.storage)) == 1
    numbers = [t.number for t in study.get_trials()]
    assert numbers == [0, 1, 2, 3, 4]
    # and a third run with the target reached runs nothing
    again = run_study(more, options, log=lambda _: None)
    assert len(again.get_trials()) == 5


def test_pareto_lists_exactly_the_best_trials(finished_study, capsys):
    config, _, study = finished_study
    assert sorted(r["trial"] for r in front_rows(study)) == sorted(t.number for t in study.best_trials)
    assert main(["pareto", "--study", "tiny", "--storage", config.storage]) == 0
    out = capsys.readouterr().out
    printed = {int(line.split("│")[1]) for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip().isdigit()}
    assert printed == {t.number for t in study.best_trials}


def test_failed_trial_is_recorded_and_the_study_goes_on(study_yaml, tmp_path):
    # a learning rate this large makes the distillation loss overflow to NaN/inf: that trial must FAIL
    config = load_study_config(study_yaml(distillation={"steps": 3, "batch_size": 8, "learning_rate": 1.0e30}))
    study = run_study(config, RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=lambda _: None)
    trials = study.get_trials()
    assert len(trials) == 3
    assert all(t.state == TrialState.FAIL for t in trials)
    assert all("loss became" in t.user_attrs["fail_reason"] for t in trials)


def test_export_round_trip_predicts_what_the_trial_predicted(finished_study, tmp_path, synthetic_data_dir):
    config, _, study = finished_study
    trial = pick_best(study)
    out = tmp_path / "exported"
    assert main(["export", "--study", "tiny", "--storage", config.storage, "--trial", str(trial.number),
                 "--out", str(out)]) == 0
    for name in ("model.safetensors", "config.json", "student.json", "tokenizer.json", "README.md", "metrics.json"):
        assert (out / name).is_file(), name
    model = load(out)
    assert model.recipe.to_dict() == trial.user_attrs["recipe"]
    rows = [json.loads(line) for line in (synthetic_data_dir / "validation.jsonl").read_text().splitlines()]
    predictions = [p.answer for p in model.predict([r["question"] for r in rows], [r["passage"] for r in rows])]
    stored = json.loads((out / "predictions.json").read_text())["predictions"]
    assert [int(p) for p in predictions] == stored
    card = (out / "README.md").read_text()
    assert f"{trial.values[0]:.4f}" in card


def test_exported_int8_model_is_quantized_and_layers_match(finished_study, tmp_path):
    config, _, study = finished_study
    for trial in study.get_trials():
        out = tmp_path / f"t{trial.number}"
        assert main(["export", "--study", "tiny", "--storage", config.storage, "--trial", str(trial.number),
                     "--out", str(out)]) == 0
        model = load(out).model
        quantized = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
        assert (quantized > 0) == (trial.user_attrs["recipe"]["quant_dtype"] == "int8")
        assert len(model.base_model.encoder.layer) == trial.user_attrs["layers"]


def test_best_is_fastest_within_tolerance_of_teacher(finished_study):
    _, _, study = finished_study
    best = pick_best(study, tolerance=1.0)  # everything is within 1.0 accuracy: the fastest front trial wins
    assert best.values[1] == min(t.values[1] for t in study.best_trials)
    strict = pick_best(study, tolerance=-1.0)  # nothing qualifies: the most accurate front trial
    assert strict.values[0] == max(t.values[0] for t in study.best_trials)


def test_load_existing_study_names_missing_study(finished_study):
    from latencysolver.errors import StorageError

    config, _, _ = finished_study
    with pytest.raises(StorageError, match="no study named 'nope'"):
        load_existing_study("nope", config.storage)
