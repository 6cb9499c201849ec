"""benchmarks/search_efficiency.py: the clock and the hypervolume after each trial, on a hand-made study."""

from __future__ import annotations

import datetime
import json

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import load_benchmark

bench = load_benchmark("search_efficiency")
T0 = datetime.datetime(2026, 12, 3, 6, 0, 0)


def _trial(start: float, seconds: float, accuracy: float, speedup: float, floor: float) -> optuna.trial.FrozenTrial:
    trial = create_trial(
        state=TrialState.COMPLETE,
        values=[accuracy, speedup],
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        system_attrs={"constraints:min_accuracy": floor},
    )
    trial.datetime_start = T0 + datetime.timedelta(seconds=start)
    trial.datetime_complete = trial.datetime_start + datetime.timedelta(seconds=seconds)
    return trial


def test_the_clock_adds_setup_and_trial_times_and_the_hypervolume_counts_feasible_trials_only():
    study = optuna.create_study(directions=["maximize", "maximize"])
    # (start, seconds, accuracy, speed-up, accuracy constraint): the second is infeasible
    for start, seconds, accuracy, speedup, floor in [
        (0, 30, 0.7, 2.0, -0.1),
        (40, 20, 0.9, 9.0, 0.1),
        (70, 60, 0.65, 4.0, -0.1),
    ]:
        study.add_trial(_trial(start, seconds, accuracy, speedup, floor))
    points = bench.curve(study, 100.0, (0.6, 1.0))
    assert [p["seconds"] for p in points] == [130.0, 150.0, 210.0]  # setup + the trials' own times, summed
    # after trial 0: (0.7 - 0.6) * (2 - 1) = 0.1; trial 1 is infeasible; trial 2 adds (0.65 - 0.6) * (4 - 2) = 0.1
    assert [p["hypervolume"] for p in points] == pytest.approx([0.1, 0.1, 0.2])
    assert bench.at(points, 120) == 0.0 and bench.at(points, 150) == pytest.approx(0.1)
    assert bench.at(points, 1e9) == pytest.approx(0.2)


def test_an_unknown_arm_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--arms", "elastic-tpe,fastest"])
    assert "unknown arm 'fastest'" in capsys.readouterr().err


def test_rung_fidelity_is_spearman_over_trials_that_finished():
    def trial(rung_accuracy: float, final: float | None, stopped: str | None = None) -> dict:
        return {"rungs": {"0.1111": rung_accuracy}, "final": final, "stopped": stopped, "seconds": 60.0}

    # rung order 1 < 2 < 3 < 4 < 5 and final order the same except the last two swapped: rho = 1 - 6·2/(5·24) = 0.9
    finished = [trial(0.1, 0.60), trial(0.2, 0.61), trial(0.3, 0.62), trial(0.4, 0.64), trial(0.5, 0.63)]
    stopped = [trial(0.9, None, "rung"), trial(0.05, None, "floor")]  # no final accuracy: left out
    (fidelity,) = bench.rung_fidelity([{"rungs": finished + stopped}], resamples=200)
    assert fidelity["trials"] == 5 and fidelity["rung"] == pytest.approx(0.1111)
    assert fidelity["spearman"] == pytest.approx(0.9)
    assert -1.0 <= fidelity["low"] <= 0.9 <= fidelity["high"] <= 1.0


def test_rung_fidelity_is_per_signal_and_reads_old_bare_accuracies():
    # AUC ranks the five finished trials exactly as their final accuracy (rho 1); a log-likelihood the same on every
    # trial ranks nothing and is left out; a stored bare number (results from before the signals) is an accuracy
    finals = [0.60, 0.61, 0.62, 0.63, 0.64]
    rows = [
        {"rungs": {"0.3333": {"accuracy": 0.6, "auc": 0.50 + 0.01 * i, "log_likelihood": -0.7}}, "final": f}
        for i, f in enumerate(finals)
    ]
    rows[4]["rungs"]["0.3333"]["accuracy"] = 0.7
    old = [{"rungs": {"0.3333": 0.5 + 0.01 * i}, "final": f} for i, f in enumerate(finals)]
    out = bench.rung_fidelity([{"rungs": rows}, {"rungs": old}], resamples=50)
    by = {f["signal"]: f for f in out}
    assert [f["signal"] for f in out] == ["accuracy", "auc"]
    assert by["auc"]["trials"] == 5 and by["auc"]["spearman"] == pytest.approx(1.0)
    assert by["accuracy"]["trials"] == 10  # five new rows and five old bare numbers
    # a study that repeats the same recipes (another arm, same sampler seed) adds nothing
    again = bench.rung_fidelity([{"rungs": rows}, {"rungs": old}, {"rungs": [dict(t) for t in rows]}], resamples=50)
    assert [f["trials"] for f in again] == [10, 5]
    # ... nor does one stored before the signals (a bare accuracy) whose rung and final accuracies are the same
    bare = [{"rungs": {k: v["accuracy"] for k, v in t["rungs"].items()}, "final": t["final"]} for t in rows]
    assert [f["trials"] for f in bench.rung_fidelity([{"rungs": rows}, {"rungs": bare}], resamples=50)] == [5, 5]
    # whichever comes first: the bare copy does not hide the new one's AUC
    assert [f["trials"] for f in bench.rung_fidelity([{"rungs": bare}, {"rungs": rows}], resamples=50)] == [5, 5]


def test_runs_of_an_earlier_invocation_are_kept_unless_run_again(tmp_path, capsys):
    path = tmp_path / "results.json"
    assert bench.kept_runs(path, []) == []  # nothing written yet
    earlier = [{"arm": "elastic-tpe", "seed": 0, "n": 1}, {"arm": "per-trial-tpe", "seed": 0, "n": 2}]
    path.write_text(json.dumps({"runs": earlier}))
    now = [{"arm": "per-trial-tpe", "seed": 0, "n": 3}, {"arm": "per-trial-random", "seed": 0, "n": 4}]
    assert bench.kept_runs(path, now) == [earlier[0]]  # the re-run replaces the stored per-trial-tpe seed 0
    assert "elastic-tpe, sampler seed 0: kept from" in capsys.readouterr().out
