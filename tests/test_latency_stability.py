"""Issue 17, part 6: a latency measured under load is taken again, flagged if it stays unstable, kept off the front
and out of ``--best``, and cleared by ``latencysolver remeasure`` once the calls are stable."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

import latencysolver.latency.protocol as protocol
import latencysolver.latency.stability as stability
from latencysolver.cli import main
from latencysolver.config.study import LatencyConfig, load_study_config
from latencysolver.latency.stability import StabilityCheck, measure_checked, problems
from latencysolver.results.front import completed_trials, feasible_trials, pareto_trials, unstable_trials
from latencysolver.results.records import ConstraintsRecord, StudyRecord, study_record, trial_record, write_study_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from tests.conftest import write_study_yaml

INPUTS = [{"input_ids": torch.ones((1, 3), dtype=torch.long)} for _ in range(4)]
BOUNDS = LatencyConfig(rows=4, warmup=0, repeats=3, threads=1, max_speedup_cv=0.10, max_reference_drift=0.5)


class FakeRuntime:
    """A model whose k-th call "takes" ``ms(k)`` milliseconds, as read by the protocol's timer."""

    def __init__(self, ms):
        self.ms, self.calls = ms, 0

    def __call__(self, **inputs):
        self.calls += 1


@pytest.fixture()
def fake_clock(monkeypatch):
    """The protocol's per-call timer reads the fake runtime's own duration instead of the wall clock."""

    def timed(model, inputs):
        model(**inputs)
        return model.ms(model.calls)

    monkeypatch.setattr(protocol, "_timed", timed)


def test_a_quiet_measurement_is_kept_at_once(fake_clock):
    student, teacher = FakeRuntime(lambda k: 2.0), FakeRuntime(lambda k: 10.0)
    sleeps = []
    paired, check = measure_checked(student, teacher, INPUTS, BOUNDS, baseline_ms=10.0, sleep=sleeps.append)
    assert paired.speedup == pytest.approx(5.0) and paired.speedup_cv == 0.0
    assert check == StabilityCheck(True, 1, 0.0, 0.0, (), 0.10, 0.5)
    assert sleeps == [] and student.calls == 12  # one measurement: 3 passes x 4 rows


def test_load_that_passes_is_measured_again_and_the_clean_attempt_kept(fake_clock):
    # the teacher's first 12 calls (one measurement) run 3x slower: a load that goes away
    student, teacher = FakeRuntime(lambda k: 2.0), FakeRuntime(lambda k: 30.0 if k <= 12 else 10.0)
    config = dataclasses.replace(BOUNDS, remeasure_wait_s=1.5)
    sleeps = []
    paired, check = measure_checked(student, teacher, INPUTS, config, baseline_ms=10.0, sleep=sleeps.append)
    assert check.stable and check.attempts == 2 and check.reasons == ()
    assert paired.speedup == pytest.approx(5.0)  # the first attempt read 15x
    assert sleeps == [1.5]


def test_a_reference_that_stays_slow_is_flagged_after_the_bounded_attempts(fake_clock):
    # oversubscription: the long teacher calls stretch (x3, then x2.5, x2.8), the short student calls do not
    factors = iter([3.0] * 12 + [2.5] * 12 + [2.8] * 12)
    student, teacher = FakeRuntime(lambda k: 2.0), FakeRuntime(lambda k: 10.0 * next(factors))
    sleeps = []
    paired, check = measure_checked(student, teacher, INPUTS, BOUNDS, baseline_ms=10.0, sleep=sleeps.append)
    assert not check.stable and check.attempts == 3 and teacher.calls == 36
    assert sleeps == [5.0, 10.0]  # remeasure_wait_s, doubling
    # the least loaded attempt is kept (teacher p50 25 ms), with its drift and why it is unstable
    assert paired.reference.p50_ms == pytest.approx(25.0) and paired.speedup == pytest.approx(12.5)
    assert check.reference_drift == pytest.approx(1.5)
    assert check.reasons == ("teacher p50 25.00 ms is +150% from the baseline 10.00 ms (bound +50%)",)
    assert check.describe().startswith("unstable after 3 measurements: teacher p50 25.00 ms")
    assert StabilityCheck.from_dict(check.to_dict()) == check


def test_a_spread_above_the_bound_is_unstable_even_without_a_baseline(fake_clock):
    # the second pass is loaded: the teacher at 10, 16, 10 ms -> per-pass speed-ups 5, 8, 5: CV 23.6%
    teacher = FakeRuntime(lambda k: 16.0 if 5 <= k <= 8 else 10.0)
    config = dataclasses.replace(BOUNDS, remeasure_attempts=0)
    paired, check = measure_checked(FakeRuntime(lambda k: 2.0), teacher, INPUTS, config, baseline_ms=None)
    expected_cv = 2**0.5 / 6  # pstdev of (5, 8, 5), sqrt((1 + 4 + 1) / 3), over its mean 6
    assert paired.speedup_cv == pytest.approx(expected_cv)
    assert check.reasons == (f"pair-ratio CV {expected_cv:.1%} > 10.0%",) and check.reference_drift is None
    off = dataclasses.replace(config, max_speedup_cv=None)
    assert problems(paired, None, off) == ()  # a bound set to null is not checked


def test_bounds_in_the_study_yaml_are_checked(study_yaml, capsys):
    assert main(["run", str(study_yaml(latency={"max_speedup_cv": -0.1})), "--no-progress"]) == 1
    assert "study.yaml: latency.max_speedup_cv: max_speedup_cv must be > 0, but got -0.1" in capsys.readouterr().err
    assert main(["run", str(study_yaml(latency={"remeasure_attempts": -1})), "--no-progress"]) == 1
    assert "remeasure_attempts must be >= 0, but got -1" in capsys.readouterr().err


def quiet_ms(model) -> float:
    """A quiet machine's milliseconds for one call of ``model``: fixed by its parameter count, so another job on
    the host (the suite runs beside others) cannot move a baseline these tests compare against."""
    parameters = getattr(model, "parameters", None)
    return 0.5 + 1e-5 * (sum(p.numel() for p in parameters()) if callable(parameters) else 0)


@pytest.fixture()
def loaded_study(tmp_path, tiny_model_dir, synthetic_data_dir, monkeypatch):
    """A tiny study whose trials were all measured while "another job" stretched the teacher's calls 4x.  Every
    call still runs, but is timed by ``quiet_ms``: the load is the one these tests apply, never the host's."""
    monkeypatch.setenv("LATENCYSOLVER_CACHE", str(tmp_path / "cache"))
    real_call = protocol._timed

    def quiet(m, x):
        real_call(m, x)  # the call runs; the host's time for it is not used
        return quiet_ms(m)

    monkeypatch.setattr(protocol, "_timed", quiet)
    latency = {"rows": 4, "warmup": 1, "repeats": 2, "threads": 1, "max_speedup_cv": 10.0}
    latency |= {"max_reference_drift": 3.0, "remeasure_attempts": 2, "remeasure_wait_s": 0}
    config = load_study_config(
        write_study_yaml(tmp_path, tiny_model_dir, synthetic_data_dir, n_trials=2, latency=latency)
    )
    real_paired, real_timed = stability.measure_paired, protocol._timed
    measured = []

    def paired_under_load(model, reference, inputs, config, reference_inputs=None):
        measured.append(model)

        def timed(m, x):
            ms = real_timed(m, x)
            return 4 * ms + 5.0 if m is reference else ms

        monkeypatch.setattr(protocol, "_timed", timed)
        try:
            return real_paired(model, reference, inputs, config, reference_inputs)
        finally:
            monkeypatch.setattr(protocol, "_timed", real_timed)

    monkeypatch.setattr(stability, "measure_paired", paired_under_load)
    study = run_study(config, RunOptions(progress=False), log=lambda _: None)
    monkeypatch.setattr(stability, "measure_paired", real_paired)  # the load is gone
    return study, config.storage, measured


def test_trials_measured_under_load_are_flagged_and_kept_off_the_front(loaded_study, tmp_path, capsys):
    study, storage, measured = loaded_study
    # the hardware probe's int8 once (its spread is within the bound), then each of the 2 trials 3 times: once,
    # then the 2 bounded re-measurements
    assert len(measured) == 7
    complete = completed_trials(study)
    assert len(complete) == 2
    for t in complete:
        check = trial_record(t).stability()
        assert check is not None and not check.stable and check.attempts == 3
        assert check.reference_drift > 3.0 and "from the baseline" in check.reasons[0]
        assert t.values is not None  # the figures are kept, with the flag
    assert feasible_trials(study) == [] and pareto_trials(study) == []
    assert [t.number for t in unstable_trials(study)] == [0, 1]
    out = tmp_path / "export"
    assert main(["export", "--study", "tiny", "--storage", storage, "--best", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "trials [0, 1] were measured unstable" in err and "latencysolver remeasure --study tiny" in err
    assert not out.exists()


def test_remeasure_clears_the_flag_when_the_calls_are_stable(loaded_study, capsys):
    study, storage, _ = loaded_study
    flagged = {t.number: trial_record(t).speedup for t in completed_trials(study)}
    assert main(["remeasure", "--study", "tiny", "--storage", storage, "--no-progress"]) == 0
    assert "2 trial(s) measured stable" in capsys.readouterr().out
    study = optuna.load_study(study_name="tiny", storage=storage)
    remeasured = study_record(study).remeasured
    assert remeasured is not None and set(remeasured) == {"0", "1"}
    assert unstable_trials(study) == []
    for t in completed_trials(study):
        record = trial_record(t)
        assert record.stability().stable
        assert record.speedup == remeasured[str(t.number)]["speedup"] == t.values[1]  # the objective follows
        assert record.speedup < flagged[t.number]  # the load had inflated the ratio
    # the stored trials themselves are unchanged (Optuna's finished trials are immutable)
    for t in study.get_trials():
        assert not trial_record(t).stability().stable
    assert pareto_trials(study)  # back on the front, and --best can pick them
    # nothing flagged any more: a second call says so and exits non-zero
    assert main(["remeasure", "--study", "tiny", "--storage", storage, "--no-progress"]) == 1
    assert "no trial whose latency is flagged unstable" in capsys.readouterr().err


def test_a_slower_remeasurement_moves_a_set_ceiling_and_no_other(loaded_study, monkeypatch):
    study, storage, _ = loaded_study
    first_ms = {t.number: trial_record(t).latency_p50_ms for t in completed_trials(study)}
    real_timed = protocol._timed
    # the machine is quiet but slower overall: both models' calls take 2x + 1 ms, the ratio stays stable
    monkeypatch.setattr(protocol, "_timed", lambda m, x: 2 * real_timed(m, x) + 1.0)
    assert main(["remeasure", "--study", "tiny", "--storage", storage, "--no-progress"]) == 0
    study = optuna.load_study(study_name="tiny", storage=storage)
    # the study set no latency ceiling: its stored 0.0 stays, however much slower the student now reads
    assert all(t.constraints["max_latency_ms"] == 0.0 for t in completed_trials(study))
    assert [t.number for t in pareto_trials(study)] != []
    # had the study set a ceiling (each trial exactly at it: the stored 0.0), the value moves with p50 and turns > 0
    write_study_record(study, StudyRecord(constraints=ConstraintsRecord(min_accuracy=0.0, max_latency_ms=1.0)))
    for t in completed_trials(study):
        moved = trial_record(t).latency_p50_ms - first_ms[t.number]
        assert moved > 0.0 and t.constraints["max_latency_ms"] == pytest.approx(moved)
    assert feasible_trials(study) == []
