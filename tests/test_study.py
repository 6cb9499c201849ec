"""A whole study on a tiny model: trials and objectives in SQLite, resume, the Pareto front, export → load."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from latencysolver import load
from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.data.text import TextSplit
from latencysolver.results.front import front_rows, pareto_trials
from latencysolver.results.records import is_feasible, study_record, trial_record
from latencysolver.results.selection import select_best
from latencysolver.results.storage import load_existing_study
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.training.evaluate import scores
from tests.conftest import TINY_LATENCY, export_cli


@pytest.fixture()
def finished_study(tiny_study):
    """The session's finished 3-trial study (``tiny_study``), for the read-only tests of this module."""
    return tiny_study


@pytest.fixture()
def fresh_study(study_yaml, session_cache):
    """A 3-trial study of its own (the session's cached teacher), for tests that add to it."""
    config = load_study_config(study_yaml())
    options = RunOptions(cache_dir=session_cache, progress=False)
    return config, options, run_study(config, options, log=lambda _: None)


@pytest.fixture()
def copied_study(tiny_study, study_yaml):
    """The session's finished tiny study copied into a database of its own beside the same YAML (a run of it would
    make those 3 trials), for tests that add a trial by hand or check that a resume is refused: no trial of its
    own to run.  Its artifacts stay the session study's, read only."""
    import shutil

    from sqlalchemy.engine import make_url

    config = load_study_config(study_yaml())
    shutil.copyfile(make_url(tiny_study[0].storage).database, make_url(config.storage).database)
    return config, tiny_study[1], optuna.load_study(study_name="tiny", storage=config.storage)


@pytest.fixture()
def cached(session_cache):
    """Run options on the session's cache: the tests that run a study of their own fine-tune no teacher."""
    return RunOptions(cache_dir=session_cache, progress=False)


def test_three_trials_with_both_objectives_in_sqlite(finished_study):
    config, _, _ = finished_study
    assert config.storage.startswith("sqlite:///") and Path(config.storage[len("sqlite:///") :]).is_file()
    study = optuna.load_study(study_name="tiny", storage=config.storage)  # read back from the file
    trials = study.get_trials()
    assert len(trials) == 3
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert study.metric_names == ["accuracy", "speedup"]  # the default latency objective
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    keys = set()
    for t in trials:
        accuracy, speedup = t.values
        assert 0.0 <= accuracy <= 1.0 and speedup > 0.0
        a = trial_record(t)
        assert a.speedup == speedup
        # the paired speed-up: the teacher measured interleaved with this student, on the same inputs
        assert a.reference_p50_ms > 0  # the teacher, measured interleaved with this student
        assert a.latency_p50_ms > 0  # p50, p90 and the CVs against the raw samples: the next test
        assert a.parameters > 0 and a.size_bytes > 0
        assert set(a.recipe_dict) >= {"prune_ratio", "quant_dtype", "skip_prob", "rank", "temperature", "alpha"}
        assert a.hardware["threads"] == config.latency.threads == 1
        assert a.hardware["torch"] == torch.__version__.split("+")[0] or a.hardware["torch"] == torch.__version__
        keys.add(a.hardware_key)
    assert len(keys) == 1  # one machine ran them all
    teacher = study_record(study).teacher
    assert 0.0 <= teacher.accuracy <= 1.0 and teacher.latency_p50_ms > 0
    assert teacher.hardware_key in keys


def test_raw_latency_samples_are_a_trial_artifact(finished_study, tmp_path):
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    from latencysolver.results.storage import artifact_store_of

    config, _, study = finished_study
    rows, n = config.latency.rows, config.latency.rows * config.latency.repeats
    for trial in study.get_trials():
        storage = optuna.storages.get_storage(config.storage)
        meta = {m.filename: m for m in get_all_artifact_meta(trial, storage=storage)}["latency_samples.json"]
        target = tmp_path / f"samples-{trial.number}.json"
        download_artifact(artifact_store=artifact_store_of(study), artifact_id=meta.artifact_id, file_path=str(target))
        record = json.loads(target.read_text())
        model, reference = record["model"]["samples_ms"], record["reference"]["samples_ms"]
        assert len(model) == len(reference) == n
        assert record["speedup"] == trial.values[1]
        # the trial's figures are the statistics of the samples it recorded (in call order, pass after pass)
        ordered = sorted(model)
        a = trial_record(trial)
        assert a.latency_p50_ms == record["model"]["p50_ms"] == statistics.median(ordered)
        assert a.latency_p90_ms == record["model"]["p90_ms"] == ordered[round(0.9 * (n - 1))]
        assert a.reference_p50_ms == statistics.median(reference)
        means = [statistics.fmean(model[i : i + rows]) for i in range(0, n, rows)]
        assert a.latency_cv == pytest.approx(statistics.pstdev(means) / statistics.fmean(means))
        # the speed-up is the median ratio of paired calls: teacher and student on the same input, back to back
        ratios = [r / m for m, r in zip(model, reference, strict=True)]
        assert record["speedup"] == pytest.approx(statistics.median(ratios))
        per_pass = [statistics.median(ratios[i : i + rows]) for i in range(0, n, rows)]
        assert a.speedup_cv == pytest.approx(statistics.pstdev(per_pass) / statistics.fmean(per_pass))
        assert record["hardware"]["threads"] == config.latency.threads


def test_latency_ms_objective_minimizes_milliseconds(study_yaml, cached):
    config = load_study_config(study_yaml(latency={**TINY_LATENCY, "objective": "latency_ms"}))
    study = run_study(config, cached, log=lambda _: None)
    assert study.metric_names == ["accuracy", "latency_ms"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.get_trials():
        assert t.values[1] == trial_record(t).latency_p50_ms
    best = select_best(study, "near-teacher", tolerance=1.0).trial
    assert best.values[1] == min(t.values[1] for t in study.best_trials)


def test_changing_the_objective_of_an_existing_study_is_refused(copied_study, study_yaml):
    from latencysolver.errors import StorageError

    config, options, _ = copied_study
    other = load_study_config(study_yaml(n_trials=4, latency={"rows": 4, "objective": "latency_ms"}))
    with pytest.raises(StorageError, match=r"optimizes \['accuracy', 'speedup'\].*latency_ms"):
        run_study(other, options, log=lambda _: None)
    assert len(optuna.load_study(study_name="tiny", storage=config.storage).get_trials()) == 3


def test_front_mixing_hardware_fingerprints_warns(copied_study, capsys):
    from latencysolver.results.front import hardware_warning

    config, _, study = copied_study
    assert hardware_warning(study) is None
    # a worker on another machine adds a trial that joins the front (most accurate, slowest)
    attrs = dict(study.best_trials[0].user_attrs, hardware_key="othermachine")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=[1.0, 1e-6], user_attrs=attrs))
    assert len(study.best_trials) >= 2
    warning = hardware_warning(study)
    assert warning is not None and "2 different hardware fingerprints" in warning and "othermachine" in warning
    assert main(["pareto", "--study", "tiny", "--storage", config.storage]) == 0
    assert "mixes latencies measured on 2 different hardware" in capsys.readouterr().err


def test_recipe_attrs_match_the_model_that_was_measured(finished_study):
    _, _, study = finished_study
    for t in study.get_trials():
        r = trial_record(t)
        recipe = r.recipe_dict
        # 2-layer tiny teacher: skip 0.5 keeps one layer, skip 0 keeps both
        assert r.layers == (1 if recipe["skip_prob"] == 0.5 else 2)
        if recipe["prune_ratio"] > 0 and recipe["rank"] is None:
            assert r.nonzero_parameters < r.parameters


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
    printed = {
        int(line.split("│")[1])
        for line in out.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    }
    assert printed == {t.number for t in study.best_trials}


def test_failed_trial_is_recorded_and_the_study_goes_on(study_yaml, cached):
    # a learning rate this large makes the distillation loss overflow to NaN/inf: that trial must FAIL
    config = load_study_config(study_yaml(distillation={"steps": 3, "batch_size": 8, "learning_rate": 1.0e30}))
    study = run_study(config, cached, log=lambda _: None)
    trials = study.get_trials()
    assert len(trials) == 3
    assert all(t.state == TrialState.FAIL for t in trials)
    assert all("loss became" in trial_record(t).fail_reason for t in trials)


def test_export_round_trip_predicts_what_the_trial_predicted(finished_study, tmp_path, synthetic_data_dir):
    config, _, study = finished_study
    trial = select_best(study, "near-teacher").trial
    out = tmp_path / "exported"
    assert (
        main(
            ["export", "--study", "tiny", "--storage", config.storage, "--trial", str(trial.number), "--out", str(out)]
        )
        == 0
    )
    for name in ("model.safetensors", "config.json", "student.json", "tokenizer.json", "README.md", "metrics.json"):
        assert (out / name).is_file(), name
    model = load(out)
    assert model.recipe.to_dict() == trial_record(trial).recipe_dict
    rows = [json.loads(line) for line in (synthetic_data_dir / "validation.jsonl").read_text().splitlines()]
    predictions = [p.answer for p in model.predict([r["question"] for r in rows], [r["passage"] for r in rows])]
    stored = json.loads((out / "predictions.json").read_text())["predictions"]
    assert [int(p) for p in predictions] == stored
    card = (out / "README.md").read_text()
    assert f"{trial.values[0]:.4f}" in card


def test_bench_an_export_uses_its_own_data(finished_study, tmp_path, capsys):
    config, _, _ = finished_study
    out = tmp_path / "exported"
    assert main(["export", "--study", "tiny", "--storage", config.storage, "--best", "knee", "--out", str(out)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "bench",
                str(out),
                "--threads",
                "1",
                "--rows",
                "4",
                "--repeats",
                "1",
                "--batch-size",
                "0",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "p50, batch 1" in printed and "throughput" not in printed
    assert str(config.data.source) in printed  # the rows came from the study's own data


def test_exported_int8_model_is_quantized_and_layers_match(finished_study, tmp_path):
    config, _, study = finished_study
    for trial in study.get_trials():
        out = tmp_path / f"t{trial.number}"
        assert export_cli(config.storage, str(trial.number), str(out)) == 0
        model = load(out).model
        quantized = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
        record = trial_record(trial)
        assert (quantized > 0) == (record.recipe_dict["quant_dtype"] == "int8")
        assert len(model.base_model.encoder.layer) == record.layers


def test_best_is_fastest_within_tolerance_of_teacher(finished_study):
    _, _, study = finished_study
    # everything is within 1.0 accuracy: the fastest front trial wins
    best = select_best(study, "near-teacher", tolerance=1.0).trial
    assert best.values[1] == max(t.values[1] for t in study.best_trials)  # the largest speed-up
    # nothing qualifies: the most accurate front trial
    strict = select_best(study, "near-teacher", tolerance=-1.0).trial
    assert strict.values[0] == max(t.values[0] for t in study.best_trials)


def test_load_existing_study_names_missing_study(finished_study):
    from latencysolver.errors import StorageError

    config, _, _ = finished_study
    with pytest.raises(StorageError, match="no study named 'nope'"):
        load_existing_study("nope", config.storage)


def test_an_infeasible_trial_never_reaches_the_front_or_best(copied_study, capsys):
    config, _, study = copied_study
    # another worker reports a trial that beats everything on both objectives but breaks a constraint
    study.add_trial(
        optuna.trial.create_trial(
            params={},
            distributions={},
            values=[1.0, 1e6],
            user_attrs=study.get_trials()[0].user_attrs,
            constraints={"min_accuracy": 0.3, "max_latency_ms": 0.0},
        )
    )
    cheat = study.get_trials()[-1].number
    assert cheat not in [t.number for t in pareto_trials(study)] and cheat not in [t.number for t in study.best_trials]
    assert select_best(study, "near-teacher", tolerance=1.0).trial.number != cheat
    assert main(["pareto", "--study", "tiny", "--storage", config.storage]) == 0
    out = capsys.readouterr().out
    printed = {
        int(line.split("│")[1])
        for line in out.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    }
    assert cheat not in printed and printed
    assert f"infeasible and left out (trials [{cheat}])" in out
    assert out.count("no latency ceiling") == 1 and "none ms" not in out  # the tiny study sets no ceiling


def test_a_latency_ceiling_makes_every_trial_infeasible(study_yaml, cached):
    from latencysolver.errors import SelectionError

    config = load_study_config(study_yaml(constraints={"max_latency_ms": 1.0e-6}))
    study = run_study(config, cached, log=lambda _: None)
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.constraints["max_latency_ms"] > 0 and not is_feasible(t) for t in trials)
    assert pareto_trials(study) == [] and study.best_trials == []  # Optuna agrees: set_constraint was used
    with pytest.raises(SelectionError, match="no completed feasible trials"):
        select_best(study, "near-teacher")


def test_measured_constraints_follow_optunas_sign_convention():
    from latencysolver.config.study import ConstraintsConfig
    from latencysolver.search.objective import measured_constraints

    default = ConstraintsConfig()  # must beat the majority rate, no latency bound, no speed-up floor
    values = measured_constraints(default, 0.62, 0.70, 5.0, 2.0)
    assert (
        values["min_accuracy"] < 0
        and values["max_latency_ms"] == 0
        and set(values) == {"min_accuracy", "max_latency_ms"}
    )
    assert measured_constraints(default, 0.62, 0.62, 5.0, 2.0)["min_accuracy"] > 0  # exactly the majority: degenerate
    # a model answering the majority class on 19 of 24 rows scores exactly the majority rate (a float32 mean read
    # 0.79166669 > 19/24 and passed the floor)
    labels = (1,) * 19 + (0,) * 5
    majority = TextSplit(("q",) * 24, ("p",) * 24, labels, ("no", "yes")).majority_rate()
    accuracy = scores(torch.tensor([[0.0, 1.0]] * 24), labels).accuracy
    assert accuracy == majority == 19 / 24
    assert measured_constraints(default, majority, accuracy, 5.0, 2.0)["min_accuracy"] > 0
    explicit = ConstraintsConfig(min_accuracy=0.65, max_latency_ms=4.0, min_speedup=3.0)
    # the bounds themselves are feasible
    assert measured_constraints(explicit, 0.62, 0.65, 4.0, 3.0) == {
        "min_accuracy": 0.0,
        "max_latency_ms": 0.0,
        "min_speedup": 0.0,
    }
    assert measured_constraints(explicit, 0.62, 0.64, 4.5, 2.5) == pytest.approx(
        {"min_accuracy": 0.01, "max_latency_ms": 0.5, "min_speedup": 0.5}
    )


def test_every_trial_records_degeneracy_and_constraints(finished_study):
    _, _, study = finished_study
    majority = study_record(study).data.majority_rate
    for t in study.get_trials():
        degenerate = trial_record(t).degenerate
        assert isinstance(degenerate, bool)
        assert degenerate == (t.values[0] <= majority)  # the majority rate exactly is degenerate too
        assert t.constraints["min_accuracy"] == pytest.approx(0.0 - t.values[0])  # the tiny study's floor is 0
        assert t.system_attrs  # set_constraint stored them where samplers and the dashboard look


def test_a_hopeless_trial_stops_early_and_is_recorded_infeasible(study_yaml, cached):
    config = load_study_config(
        study_yaml(
            distillation={"steps": 6, "batch_size": 8},
            constraints={"min_accuracy": 1.0},  # unreachable: every check fails
            early_stop={"after": 0.5, "rows": 8},
        )
    )
    study = run_study(config, cached, log=lambda _: None)
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE  # partial results are kept
        r = trial_record(t)
        assert r.distill_steps == 3  # stopped at half of 6
        assert r.early_stopped["step"] == 3 and r.early_stopped["floor"] == 1.0
        assert t.constraints["min_accuracy"] > 0 and "constraints" not in t.user_attrs  # one record, Optuna's
    assert pareto_trials(study) == []


def test_without_a_failing_check_trials_run_their_full_budget(study_yaml, cached):
    config = load_study_config(
        study_yaml(
            distillation={"steps": 6, "batch_size": 8},
            constraints={"min_accuracy": 0.0},
            early_stop={"after": 0.5, "rows": 8},
        )
    )
    study = run_study(config, cached, log=lambda _: None)
    for t in study.get_trials():
        r = trial_record(t)
        assert r.distill_steps == 6 and r.early_stopped is None


def _attrs(url: str) -> dict:
    return optuna.load_study(study_name="tiny", storage=url).user_attrs


def test_resuming_with_other_data_is_refused_before_anything_is_rewritten(copied_study, study_yaml, tmp_path):
    from latencysolver.errors import StorageError
    from tests.conftest import write_synthetic_boolq

    config, _, _ = copied_study
    # an empty cache: the other data's teacher would be fine-tuned (and logged) if the refusal came after it
    options = RunOptions(cache_dir=str(tmp_path / "cache"), progress=False)
    before = _attrs(config.storage)
    other = write_synthetic_boolq(tmp_path / "other-data", {"train": 64, "validation": 24}, seed=7)
    lines: list[str] = []
    more = load_study_config(study_yaml(n_trials=5), data=str(other))
    with pytest.raises(StorageError) as caught:
        run_study(more, options, log=lines.append)
    message = str(caught.value)
    assert "\n" not in message and "another data" in message and str(other) in message
    assert "teacher" not in message.split("(")[0] and "new study name" in message
    assert not [line for line in lines if "fine-tuning" in line]  # refused before the teacher was trained
    assert _attrs(config.storage) == before  # neither the data record nor the teacher baseline was touched
    assert len(optuna.load_study(study_name="tiny", storage=config.storage).get_trials()) == 3


def test_resuming_with_another_search_space_or_teacher_is_refused(copied_study, study_yaml):
    from latencysolver.errors import StorageError

    config, options, _ = copied_study
    before = _attrs(config.storage)
    space = dict(yaml.safe_load(Path(config.config_file).read_text())["search_space"], rank={"choices": ["off", 8]})
    with pytest.raises(StorageError, match=r"another search space \(search space: rank changed\)"):
        run_study(load_study_config(study_yaml(search_space=space)), options, log=lambda _: None)
    teacher = {"epochs": 2, "batch_size": 16, "learning_rate": 1.0e-3}
    with pytest.raises(StorageError, match="another teacher"):
        run_study(load_study_config(study_yaml(teacher=teacher)), options, log=lambda _: None)
    assert _attrs(config.storage) == before


def test_a_study_recorded_without_a_binding_is_not_refused(fresh_study, study_yaml, tmp_path):
    import sqlite3

    from tests.conftest import write_synthetic_boolq

    config, options, _ = fresh_study
    assert study_record(load_existing_study("tiny", config.storage)).binding is not None
    with sqlite3.connect(config.storage[len("sqlite:///") :]) as db:  # as a study written before the binding
        db.execute("DELETE FROM study_user_attributes WHERE key = 'binding'")
    other = write_synthetic_boolq(tmp_path / "other-data", {"train": 64, "validation": 24}, seed=7)
    study = run_study(load_study_config(study_yaml(), data=str(other)), options, log=lambda _: None)
    assert len(study.get_trials()) == 3


def test_a_resumed_study_samples_afresh_and_a_new_one_repeats(study_yaml, tmp_path, cached):
    options = cached
    first = run_study(load_study_config(study_yaml(n_trials=2)), options, log=lambda _: None)
    resumed = run_study(load_study_config(study_yaml(n_trials=4)), options, log=lambda _: None)
    params = [t.params for t in resumed.get_trials()]
    assert len(params) == 4 and params[2] not in params[:2] and params[3] not in params[:2]
    assert study_record(resumed).sampler_seeds == [0, 2 * 1_000_003]  # the seed of each run, derived and recorded
    # from scratch, the same study samples the same recipes: the derived seeds keep it reproducible
    again = run_study(
        load_study_config(study_yaml(n_trials=2, storage=f"sqlite:///{tmp_path / 'again.db'}")),
        options,
        log=lambda _: None,
    )
    assert [t.params for t in again.get_trials()] == [t.params for t in first.get_trials()[:2]]


def test_a_trial_failed_by_ctrl_c_is_not_a_finished_trial(study_yaml, cached, monkeypatch):
    import latencysolver.search.run as run_module
    from latencysolver.results.records import write_fail_reason

    def interrupted(study, storage, objective, n_trials, **kwargs):
        with pytest.warns(UserWarning, match="Heartbeat"):
            trial = study.ask()
        write_fail_reason(trial, "interrupted (Ctrl-C): the worker stopped")
        study.tell(trial, state=TrialState.FAIL)
        raise KeyboardInterrupt

    config = load_study_config(study_yaml(n_trials=2))
    options = cached
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(run_module, "work", interrupted)
        run_study(config, options, log=lambda _: None)
    study = run_study(config, options, log=lambda _: None)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
