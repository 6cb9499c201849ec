"""The typed records read what the 0.1.0 release wrote (tests/data/study-v0.1.db) and what ``write_*`` writes."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from latencysolver.config.recipe import Recipe
from latencysolver.errors import StorageError
from latencysolver.results.front import feasible_trials, front_rows, pareto_trials
from latencysolver.results.records import (
    ConstraintsRecord,
    DataRecord,
    SharedFolder,
    StudyRecord,
    TeacherRecord,
    TrialRecord,
    is_feasible,
    study_record,
    trial_record,
    write_fail_reason,
    write_recipe,
    write_study_record,
    write_trial_record,
)
from latencysolver.results.storage import open_existing_study

LEGACY = Path(__file__).parent / "data" / "study-v0.1.db"


@pytest.fixture
def legacy(tmp_path) -> optuna.Study:
    if LEGACY.stat().st_size == 0:
        pytest.fail(f"{LEGACY} is empty: copy the study written by 0.1.0 (see tests/data/README.md)")
    db = tmp_path / "study-v0.1.db"
    shutil.copyfile(LEGACY, db)  # Optuna may write to the file it opens
    return open_existing_study("legacy", f"sqlite:///{db}").study


def stored(query: str, path: Path = LEGACY) -> list[tuple]:
    """Rows of the database file itself, read-only: the shape on disk, not what a reader makes of it."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(query).fetchall()


def stored_attr(path: Path, table: str, key: str) -> list[Any]:
    """Each stored JSON value of user attr ``key`` in ``table`` (trial_ or study_user_attributes), decoded."""
    return [json.loads(v) for (v,) in stored(f"SELECT value_json FROM {table} WHERE key = '{key}'", path)]


def test_legacy_trials_read_through_the_records(legacy):
    records = [trial_record(t) for t in legacy.get_trials()]
    assert [(r.number, r.state) for r in records] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.COMPLETE),
        (2, TrialState.COMPLETE),
        (3, TrialState.COMPLETE),
        (4, TrialState.FAIL),
    ]
    first = records[0]
    assert first.recipe == Recipe(
        prune_ratio=0.5,
        quant_dtype="fp32",
        skip_prob=0.5,
        rank=4,
        temperature=3.8909882815030876,
        alpha=0.43006491129546665,
        prune_kind="unstructured",
    )
    assert first.accuracy == pytest.approx(0.7916666865348816)
    assert first.speedup == pytest.approx(1.2682112632651763) == first.values[1]
    assert first.latency_p50_ms == pytest.approx(0.4710925000068755)
    assert first.reference_p50_ms == pytest.approx(0.5974599999944985)
    assert (first.f1, first.layers, first.kept_layers, first.parameters, first.size_bytes, first.degenerate) == (
        pytest.approx(0.8837209302325582),
        1,
        (0,),
        984194,
        3949126,
        True,
    )
    assert first.hardware_key == "ace0d14677f2" and first.fingerprint().cpu_model == "Intel(R) Xeon(R) Processor"
    # every number as the database holds it, for every COMPLETE trial
    values = {
        (n, i): v
        for n, i, v in stored(
            "SELECT t.number, v.objective, v.value FROM trial_values v JOIN trials t USING (trial_id)"
        )
    }
    for r in records[:4]:
        assert r.values == (values[(r.number, 0)], values[(r.number, 1)])
        assert r.speedup == r.values[1] and r.recipe is not None and r.fail_reason is None


def test_legacy_feasibility_is_optunas_constraints(legacy):
    records = [trial_record(t) for t in legacy.get_trials()]
    assert [r.feasible for r in records[:4]] == [True, False, False, False]  # 1-3: p50 over max_latency_ms 0.7
    assert records[1].constraints["max_latency_ms"] == pytest.approx(0.12842249999259825)
    assert all(r.constraints["min_accuracy"] < 0 for r in records[:4])
    assert [t.number for t in feasible_trials(legacy)] == [0]
    assert [t.number for t in pareto_trials(legacy)] == [0] == [t.number for t in legacy.best_trials]
    assert [row["trial"] for row in front_rows(legacy)] == [0]
    assert [is_feasible(t) for t in legacy.get_trials(states=(TrialState.COMPLETE,))] == [True, False, False, False]


def test_legacy_fail_reason(legacy):
    failed = trial_record(legacy.get_trials()[4])
    assert failed.fail_reason == "RuntimeError: made to fail for the fixture"
    assert failed.values is None and failed.recipe is None and failed.speedup is None and failed.feasible


def test_legacy_study_record(legacy):
    record = study_record(legacy)
    assert record.teacher == TeacherRecord(
        path="/tmp/legacy/run/cache/teachers/798eb662f8b7d5fd",
        key="798eb662f8b7d5fd",
        base_model="/tmp/legacy/run/model",
        accuracy=pytest.approx(0.7916666865348816),
        f1=pytest.approx(0.8837209302325582),
        latency_p50_ms=pytest.approx(0.5532779999981585),
        latency_p90_ms=pytest.approx(0.6898420000140959),
        hardware_key="ace0d14677f2",
        parameters=999138,
        size_bytes=4012328,
    )
    assert record.data == DataRecord(
        source="/tmp/legacy/run/data",
        train_rows=64,
        validation_rows=24,
        test_rows=24,
        majority_rate=pytest.approx(0.7916666666666666),
        max_length=64,
    )
    assert record.constraints == ConstraintsRecord(None, 0.7, "> 0.792 (majority class)")
    assert record.artifact_dir == "/tmp/legacy/run/study-artifacts"
    assert record.config["name"] == "legacy" and record.latency["objective"] == "speedup"
    assert record.hardware_probe["speedup"] == {"fp32": 1.0, "int8": 0.691}
    assert record.teacher_artifacts.key == "798eb662f8b7d5fd" and len(record.teacher_artifacts.files) == 5
    assert record.fingerprint().key == "ace0d14677f2"


def test_a_trial_record_round_trips(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'rt.db'}", directions=["maximize", "maximize"])
    trial = study.ask()
    recipe = Recipe(prune_ratio=0.25, quant_dtype="int8", skip_prob=0.5, rank=0.5, temperature=3.0, alpha=0.7)
    written = TrialRecord(
        number=trial.number,
        state=TrialState.COMPLETE,
        values=(0.8, 2.5),
        recipe=recipe,
        recipe_dict=recipe.to_dict(),
        f1=0.75,
        latency_p50_ms=4.0,
        latency_p90_ms=4.5,
        latency_cv=0.02,
        speedup=2.5,
        speedup_cv=0.03,
        reference_p50_ms=10.0,
        hardware={"cpu_model": "x"},
        hardware_key="abc",
        parameters=100,
        nonzero_parameters=90,
        size_bytes=1000,
        layers=2,
        kept_layers=(0, 2),
        distill_steps=6,
        distill_final_loss=0.5,
        degenerate=False,
        early_stopped={"step": 3, "accuracy_on_check_rows": 0.5, "floor": 0.6},
        throughput_rows_per_s=50.0,
        seconds=1.5,
        constraints={"min_accuracy": 0.1, "max_latency_ms": -1.0},
    )
    write_recipe(trial, recipe)
    write_trial_record(trial, written)
    study.tell(trial, [0.8, 2.5])
    frozen = study.get_trials()[0]
    assert trial_record(frozen) == written
    assert not is_feasible(frozen) and study.best_trials == [] and pareto_trials(study) == []
    assert "constraints" not in frozen.user_attrs  # only Optuna's own record of them
    assert stored_attr(tmp_path / "rt.db", "trial_user_attributes", "kept_layers") == [[0, 2]]  # as 0.1.0 stored it

    failing = study.ask()
    write_fail_reason(failing, "RuntimeError: " + "x" * 600)
    study.tell(failing, state=TrialState.FAIL)
    assert trial_record(study.get_trials()[1]).fail_reason == "RuntimeError: " + "x" * 486


def test_a_study_record_round_trips_and_partial_writes_keep_the_rest(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'rt.db'}", directions=["maximize", "maximize"])
    first = StudyRecord(
        teacher=TeacherRecord(path="/t", key="k", accuracy=0.9, parameters=5),
        data=DataRecord(source="d", train_rows=1, majority_rate=0.6),
        artifact_dir="/a",
        config={"name": "n"},
        search_space={"quant_dtype": "int8"},
    )
    write_study_record(study, first)
    write_study_record(
        study,
        StudyRecord(
            constraints=ConstraintsRecord(0.5, None, 0.5),
            teacher_artifacts=SharedFolder("k", {"config.json": "id"}),
        ),
    )
    read = study_record(optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{tmp_path / 'rt.db'}"))
    assert read == StudyRecord(
        teacher=first.teacher,
        data=first.data,
        artifact_dir="/a",
        config={"name": "n"},
        search_space={"quant_dtype": "int8"},
        constraints=ConstraintsRecord(0.5, None, 0.5),
        teacher_artifacts=SharedFolder("k", {"config.json": "id"}),
    )
    [teacher] = stored_attr(tmp_path / "rt.db", "study_user_attributes", "teacher")  # all fields, None as null
    assert teacher["accuracy"] == 0.9 and teacher["f1"] is None


def test_a_trial_with_only_the_legacy_constraint_list_is_read_from_it():
    study = optuna.create_study(directions=["maximize", "maximize"])
    for accuracy, legacy in ((0.9, [0.0, 0.5]), (0.8, [-0.1, 0.0])):
        study.add_trial(optuna.trial.create_trial(values=[accuracy, 1.0], user_attrs={"constraints": legacy}))
    assert [trial_record(t).constraints for t in study.get_trials()] == [
        {"min_accuracy": 0.0, "max_latency_ms": 0.5},
        {"min_accuracy": -0.1, "max_latency_ms": 0.0},
    ]
    assert [is_feasible(t) for t in study.get_trials()] == [False, True]
    assert [t.number for t in pareto_trials(study)] == [1]


def test_an_unreadable_study_attr_is_one_line_naming_key_and_value():
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.set_user_attr("teacher_artifacts", {"files": {}})  # no key
    with pytest.raises(StorageError, match=r"^study user attr 'teacher_artifacts' = \{'files': \{\}\}: "):
        study_record(study)


def test_a_space_recorded_before_a_knob_existed_binds_like_todays_space_with_its_default():
    from latencysolver.config.space import SearchSpace
    from latencysolver.results.records import BindingRecord

    today = SearchSpace().to_dict()
    older = {k: v for k, v in today.items() if k != "max_tokens"}  # stored before max_tokens was a knob
    assert BindingRecord(search_space=older).differences(BindingRecord(search_space=today)) == []
    searched = dict(today, max_tokens={"choices": ["full", 64]})
    assert BindingRecord(search_space=older).differences(BindingRecord(search_space=searched)) == ["search space"]
