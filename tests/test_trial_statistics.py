"""Issue 17: each trial's accuracy interval and its paired comparison with the teacher, as stored, shown and plotted.

The stored figures are recomputed here from what the trial uploaded (``predictions.json``), the data's labels and
the teacher's predictions the study recorded, with ``latencysolver.stats`` fed by hand-made counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

from latencysolver.cli import main
from latencysolver.results.figures import pareto_figure
from latencysolver.results.records import PREDICTIONS, study_record, trial_record
from latencysolver.stats import paired_difference, wilson_interval


@pytest.fixture()
def study(tiny_study, synthetic_data_dir):
    """The session's finished 3-trial study (read-only here), its config, data folder and own folder."""
    config, _, finished = tiny_study
    return finished, config, synthetic_data_dir, Path(config.config_file).parent


def labels_of(data_dir) -> list[bool]:
    return [bool(json.loads(line)["label"]) for line in (data_dir / "validation.jsonl").read_text().splitlines()]


def test_each_trial_stores_its_interval_and_paired_comparison_recomputed_from_its_predictions(study, tmp_path):
    study_, config, data_dir, _ = study
    labels = labels_of(data_dir)
    record = study_record(study_)
    teacher = record.teacher_predictions
    assert teacher is not None and len(teacher) == len(labels)
    teacher_correct = [bool(p) == y for p, y in zip(teacher, labels, strict=True)]
    teacher_k = sum(teacher_correct)
    assert record.teacher.accuracy == pytest.approx(teacher_k / len(labels))
    assert record.teacher.interval().low == pytest.approx(wilson_interval(teacher_k, len(labels)).low, abs=1e-12)
    store = FileSystemArtifactStore(record.artifact_dir)
    storage = optuna.storages.get_storage(config.storage)
    complete = [t for t in study_.get_trials() if t.state == TrialState.COMPLETE]
    assert complete
    for trial in complete:
        meta = {m.filename: m for m in get_all_artifact_meta(trial, storage=storage)}[PREDICTIONS]
        path = tmp_path / f"{trial.number}.json"
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(path))
        predicted = json.loads(path.read_text())["predictions"]
        correct = [bool(p) == y for p, y in zip(predicted, labels, strict=True)]
        k = sum(correct)
        stored = trial_record(trial)
        assert trial.values[0] == pytest.approx(k / len(labels))
        interval, hand = stored.interval(), wilson_interval(k, len(labels))
        assert (interval.low, interval.high) == pytest.approx((hand.low, hand.high), abs=1e-12)
        paired = stored.paired()
        assert paired == paired_difference(correct, teacher_correct)
        student_only = sum(c and not t for c, t in zip(correct, teacher_correct, strict=True))
        teacher_only = sum(t and not c for c, t in zip(correct, teacher_correct, strict=True))
        assert (paired.student_only, paired.teacher_only) == (student_only, teacher_only)
        assert paired.difference == pytest.approx((k - teacher_k) / len(labels))


def test_the_front_figure_has_each_trials_interval_as_its_error_bar(study):
    study_ = study[0]
    fig = pareto_figure(study_).to_plotly_json()
    feasible = next(t for t in fig["data"] if t.get("uid") == "feasible")
    numbers = [c[0] for c in feasible["customdata"]]
    trials = {t.number: t for t in study_.get_trials()}
    for i, number in enumerate(numbers):
        interval = trial_record(trials[number]).interval()
        assert feasible["error_y"]["array"][i] == pytest.approx(interval.high - trials[number].values[0])
        assert feasible["error_y"]["arrayminus"][i] == pytest.approx(trials[number].values[0] - interval.low)
        assert feasible["customdata"][i][2] == f"[{interval.low:.3f}, {interval.high:.3f}]"


def test_pareto_prints_the_interval_and_the_difference_to_the_teacher(study, capsys):
    study_, config, _, _ = study
    assert main(["pareto", "--study", "tiny", "--storage", config.storage]) == 0
    out = capsys.readouterr().out
    assert "95% CI" in out and "vs teacher" in out
    front_trial = trial_record(study_.best_trials[0])
    interval = front_trial.interval()
    assert f"[{interval.low:.3f}, {interval.high:.3f}]" in out
