"""``front.completed_trials`` applies ``latencysolver remeasure``'s figures to a copy of each re-timed trial."""

from __future__ import annotations

import optuna
import pytest

from latencysolver.results.front import completed_trials
from latencysolver.results.records import ConstraintsRecord, StudyRecord, trial_record, write_study_record


@pytest.mark.parametrize("ceiling", [10.0, None])
def test_a_remeasured_trial_carries_its_new_figures_and_constraints(ceiling):
    study = optuna.create_study(directions=["maximize", "maximize"])
    measured = {"speedup": 4.0, "latency_p50_ms": 8.0, "latency_cv": 0.3}
    constraints = {"min_accuracy": -0.1, "max_latency_ms": 8.0 - (ceiling or 8.0), "min_speedup": 3.0 - 4.0}
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(values=[0.7, 4.0], user_attrs=measured, constraints=constraints))
    new = {"speedup": 2.5, "latency_p50_ms": 12.0, "latency_cv": 0.01}
    record = StudyRecord(remeasured={"1": new}, constraints=ConstraintsRecord(min_accuracy=0.6, max_latency_ms=ceiling))
    write_study_record(study, record)

    kept, remeasured = completed_trials(study)
    assert kept.values == [0.7, 4.0] and kept.constraints == constraints  # not re-timed: as stored
    assert remeasured.values == [0.7, 2.5]  # the speed-up objective follows
    assert (trial_record(remeasured).speedup, trial_record(remeasured).latency_cv) == (2.5, 0.01)
    assert remeasured.constraints["min_speedup"] == pytest.approx(3.0 - 2.5)  # now met by less
    assert remeasured.constraints["min_accuracy"] == -0.1
    # a study without a ceiling stored 0.0 there, which a slower re-timing must not move
    moved = 12.0 - ceiling if ceiling is not None else 0.0
    assert remeasured.constraints["max_latency_ms"] == pytest.approx(moved)
    stored = study.get_trials()[1]  # the stored trial is left as it is
    assert stored.values == [0.7, 4.0] and stored.constraints == constraints and trial_record(stored).speedup == 4.0
