"""Every study starts with the usual recipes (the teacher as is, untrained, in each backend the probe keeps), and a
distillation that leaves a student worse on the check rows than its untrained start keeps the start."""

from __future__ import annotations

import optuna
import pytest
import torch

from latencysolver.config.study import load_study_config
from latencysolver.results.records import trial_record
from latencysolver.search.confirm import confirm
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study


@pytest.fixture()
def run(session_cache):
    """Runs a study on the session's cache (its teacher fine-tuned once for the session, not once per test)."""

    def go(path, **options):
        log: list[str] = []
        config = load_study_config(path)
        study = run_study(config, RunOptions(cache_dir=session_cache, progress=False, **options), log.append)
        return config, study, log

    return go


def test_a_study_starts_with_the_usual_recipes_once(study_yaml, run, session_cache):
    path = study_yaml(
        usual_recipes=True,
        n_trials=4,
        search_space={"prune_ratio": 0.5, "prune_kind": "structured", "quant_dtype": "fp32"},
    )
    config, study, log = run(path)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    records = [trial_record(t) for t in trials]
    assert [r.baseline for r in records] == ["ort-fp32", "int8", "ort-int8", None]
    assert any(line.startswith("usual recipes: the teacher as is in ort-fp32, int8, ort-int8") for line in log)
    for t, r in zip(trials[:3], records[:3], strict=True):
        assert t.state.name == "COMPLETE" and t.params == {}  # nothing sampled: the sampler learns nothing from it
        assert r.distill_steps == 0 and r.distill_final_loss is None and r.kept_layers == (0, 1)
        assert r.recipe is not None and r.recipe.quant_dtype == r.baseline and r.recipe.prune_ratio == 0
    teacher_parameters = records[0].parameters
    assert records[3].recipe is not None and records[3].recipe.prune_ratio == 0.5
    assert records[3].parameters is not None and teacher_parameters is not None
    assert records[3].parameters < teacher_parameters  # the searched trial is the pruned one
    # a seed repeat of a usual recipe is the teacher as is again, measured on the test rows too; one repeat
    # whatever --seeds says, since no seed changes its answers
    said: list[str] = []
    (repeats,) = confirm(
        "tiny",
        config.storage,
        trials=[2],
        seeds=3,
        options=RunOptions(progress=False, cache_dir=session_cache),
        log=said.append,
    )
    assert "usual recipes (the teacher as is, untrained) once each: trials 2" in said[0]
    sibling = optuna.load_study(study_name="tiny:confirm", storage=config.storage)
    (repeat,) = [trial_record(t) for t in sibling.get_trials()]
    assert repeat.baseline == "ort-int8" and repeat.repeat_of == 2 and repeat.distill_steps == 0
    assert repeat.recipe is not None and repeat.recipe.prune_ratio == 0 and repeat.test_accuracy is not None
    # resumed with more trials: the usual recipes are not run again
    config, study, log = run(study_yaml(**{**_yaml(path), "n_trials": 5}))
    assert [trial_record(t).baseline for t in study.get_trials()].count("ort-int8") == 1
    assert len(study.get_trials()) == 5 and not any(line.startswith("usual recipes") for line in log)


def _yaml(path):
    import yaml

    return yaml.safe_load(path.read_text())


def test_slow_usual_recipes_are_left_out_like_slow_settings(study_yaml, run, monkeypatch):
    from latencysolver.search import probe as run_module

    real = run_module.probe_hardware

    def slow_int8(*args, **kwargs):
        probe = real(*args, **kwargs)
        return type(probe)(**{**probe.__dict__, "speedup": {**probe.speedup, "int8": 0.5}})

    monkeypatch.setattr(run_module, "probe_hardware", slow_int8)
    path = study_yaml(usual_recipes=True, n_trials=2, drop_slow_settings=True, search_space={"quant_dtype": "fp32"})
    _, study, _ = run(path)
    assert [trial_record(t).baseline for t in study.get_trials()] == ["ort-fp32", "ort-int8"]


def test_a_distillation_that_makes_the_student_worse_keeps_its_start(study_yaml, run, monkeypatch):
    from latencysolver.search import students
    from latencysolver.training.loop import TrainResult

    def invert(model, *args, **kwargs):  # a "distillation" that turns every answer round
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith("classifier"):
                    p.neg_()
        return TrainResult(steps=3, final_loss=9.0, seconds=0.0)

    monkeypatch.setattr(students, "distill", invert)
    space = {"quant_dtype": "fp32", "temperature": 2.0, "alpha": 0.5}  # the start is the teacher itself
    config, study, _ = run(study_yaml(n_trials=1, search_space=space, early_stop={"after": None}))
    (trial,) = study.get_trials()
    record = trial_record(trial)
    kept = record.kept_start
    assert kept is not None and kept["steps"] == 3
    assert kept["trained_accuracy_on_check_rows"] == pytest.approx(1 - kept["start_accuracy_on_check_rows"])
    teacher_accuracy = optuna.load_study(study_name="tiny", storage=config.storage).user_attrs["teacher"]["accuracy"]
    assert record.accuracy == teacher_accuracy  # the start, the teacher as is, is what was evaluated
    assert record.distill_steps == 3  # the record still says the distillation ran


def test_a_distillation_that_does_not_hurt_keeps_the_trained_student(study_yaml, run, monkeypatch):
    from latencysolver.search import students
    from latencysolver.training.loop import TrainResult

    monkeypatch.setattr(students, "distill", lambda *a, **k: TrainResult(steps=3, final_loss=0.1, seconds=0.0))
    _, study, _ = run(study_yaml(n_trials=1, search_space={"quant_dtype": "fp32"}, early_stop={"after": None}))
    assert trial_record(study.get_trials()[0]).kept_start is None  # equal on the check rows: the trained one stays
