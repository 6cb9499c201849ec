"""Faults inside a trial fail that trial with its reason; the study goes on; nothing half-done is COMPLETE."""

from __future__ import annotations

import errno

import pytest
import torch
from optuna.trial import TrialState

from latencysolver.config.study import load_study_config
from latencysolver.errors import OutputError
from latencysolver.results.records import trial_record
from latencysolver.search import objective, students
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study


def _fail_first(real, exc: BaseException):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise exc
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("target", "exc", "reason"),
    [
        ("distill", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory"),
        ("to_runnable", RuntimeError("ONNX export failed: unsupported operator"), "ONNX export failed"),
    ],
)
def test_a_fault_fails_only_its_trial(study_yaml, tmp_path, monkeypatch, target, exc, reason):
    module = students if target == "distill" else objective  # where the trial looks the function up
    monkeypatch.setattr(module, target, _fail_first(getattr(module, target), exc))
    config = load_study_config(study_yaml(n_trials=3))
    study = run_study(config, RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=lambda _: None)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    records = [trial_record(t) for t in trials]
    assert reason in records[0].fail_reason
    assert records[0].f1 is None  # its results were never recorded as if it had finished
    assert all(r.f1 is not None for r in records[1:])


def test_a_full_disk_stops_the_run_and_its_trial_runs_again_on_resume(study_yaml, tmp_path, monkeypatch):
    """Every later trial would fail the same way: the run stops with one OutputError naming the folder, and its
    trial is failed as interrupted (not the recipe's fault), so the resumed study still ends with n_trials."""
    real = objective.upload_artifact
    monkeypatch.setattr(
        objective, "upload_artifact", _fail_first(real, OSError(errno.ENOSPC, "No space left on device"))
    )
    config = load_study_config(study_yaml(n_trials=2))
    options = RunOptions(cache_dir=str(tmp_path / "cache"), progress=False)
    with pytest.raises(OutputError, match="artifacts folder .*study-artifacts.*: cannot write: No space left"):
        run_study(config, options, log=lambda _: None)
    monkeypatch.setattr(objective, "upload_artifact", real)
    trials = run_study(config, options, log=lambda _: None).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trial_record(trials[0]).fail_reason.startswith("interrupted (cannot write): artifacts folder")
