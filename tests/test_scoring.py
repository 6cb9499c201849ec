"""latencysolver.results.scoring against the hand computations of tests/test_stats.py, and on a tiny model."""

from __future__ import annotations

import pytest
import torch

from latencysolver.data.batches import encode_split
from latencysolver.data.text import load_data
from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.results.scoring import markdown_table, predicted_classes, score, score_model
from latencysolver.training.evaluate import predict_logits
from tests.test_stats import Z95, newcombe_by_hand, rows, wilson_by_hand


def _predictions(a: int, b: int, c: int, d: int) -> tuple[list[int], list[int], list[int]]:
    """Labels, student and teacher predictions whose right/wrong make the table (a, b, c, d) of test_stats."""
    student, teacher = rows(a, b, c, d)
    labels = [i % 2 for i in range(len(student))]
    return (
        labels,
        [y if s else 1 - y for s, y in zip(student, labels, strict=True)],
        [y if t else 1 - y for t, y in zip(teacher, labels, strict=True)],
    )


def test_score_is_the_wilson_interval_and_the_newcombe_difference_by_hand():
    labels, student, teacher = _predictions(10, 4, 1, 5)  # student right on 14 of 20, teacher on 11
    scored = score(student, labels, teacher)
    assert scored.accuracy == pytest.approx(0.7, abs=1e-15)
    low, high = wilson_by_hand(14, 20, Z95)
    assert (scored.interval.low, scored.interval.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert scored.interval.low == pytest.approx(0.481027, abs=1e-6)  # (0.79604 - 0.22262) / 1.19207
    paired = scored.vs_teacher
    assert paired is not None and (paired.student_only, paired.teacher_only, paired.both_correct) == (4, 1, 10)
    low, high = newcombe_by_hand(10, 4, 1, 5, Z95)
    band = paired.difference_interval
    assert band.estimate == pytest.approx(0.15) and band.low == pytest.approx(low, abs=1e-9)
    assert band.high == pytest.approx(high, abs=1e-9)
    assert scored.predictions == tuple(student)


def test_score_takes_tensors_and_writes_the_trial_keys():
    labels, student, teacher = _predictions(300, 40, 50, 110)
    scored = score(torch.tensor(student), tuple(labels), torch.tensor(teacher))
    assert scored == score(student, labels, teacher)
    flat = scored.to_dict(prefix="test_")
    assert set(flat) == {"test_accuracy", "test_accuracy_interval", "test_vs_teacher"}
    assert flat["test_accuracy"] == pytest.approx(340 / 500)
    assert flat["test_vs_teacher"]["difference"] == pytest.approx(-10 / 500)
    low, _ = newcombe_by_hand(300, 40, 50, 110, Z95)
    assert flat["test_vs_teacher"]["difference_interval"]["low"] == pytest.approx(low, abs=1e-9)


def test_score_without_a_teacher_and_with_rows_that_do_not_match():
    alone = score([1, 0, 1], [1, 1, 1])
    assert alone.vs_teacher is None and alone.to_dict()["vs_teacher"] is None
    assert alone.accuracy == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="differ in length"):
        score([1, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="differ in length"):
        score([1, 0, 1], [1, 1, 1], teacher_predictions=[1])


def test_score_model_runs_the_model_on_each_split(tiny_model_dir, synthetic_data_dir):
    folder = tiny_model_dir
    model, tokenizer = load_classifier(str(folder)).eval(), load_tokenizer(str(folder))
    data = load_data(str(synthetic_data_dir))
    splits = {name: encode_split(getattr(data, name), tokenizer, 64) for name in ("validation", "test")}
    expected = {n: predict_logits(model, s, progress=False).argmax(-1).tolist() for n, s in splits.items()}
    assert {n: predicted_classes(model, s, pad_id=0) for n, s in splits.items()} == expected
    # paired with its own predictions: no row differs; with none for test, no comparison there
    scored = score_model(model, splits, {"validation": expected["validation"]})
    assert scored["validation"].vs_teacher is not None and scored["validation"].vs_teacher.discordant == 0
    assert scored["test"].vs_teacher is None
    truth = splits["test"].labels
    assert scored["test"].accuracy == pytest.approx(
        sum(p == y for p, y in zip(expected["test"], truth, strict=True)) / len(truth)
    )


def test_markdown_table_aligns_names_left_and_figures_right():
    table = markdown_table(("", "recipe", "acc"), [("trial 1", "a|b", "0.700")], left=2)
    assert table.splitlines() == ["|  | recipe | acc |", "| --- | --- | ---: |", "| trial 1 | a\\|b | 0.700 |"]
    with pytest.raises(ValueError, match="3 cells"):
        markdown_table(("", "recipe", "acc"), [("trial 1",)])


def test_scoring_splits_hold_validation_test_and_the_teacher_answers(tmp_path, study_yaml, session_cache):
    from latencysolver.config.study import load_study_config
    from latencysolver.search.preparation import RunOptions, prepare, scoring_splits
    from tests.conftest import write_synthetic_boolq

    options = RunOptions(cache_dir=session_cache, progress=False)
    config = load_study_config(study_yaml())
    prepared = prepare(config, options, log=lambda _: None)
    splits, teacher = scoring_splits(prepared, config, options, log=lambda _: None)
    assert list(splits) == list(teacher) == ["validation", "test"]
    assert splits["validation"] is prepared.validation and len(splits["test"]) == 24
    model = prepared.teacher.model
    assert all(teacher[n] == predicted_classes(model, s, prepared.pad_id) for n, s in splits.items())

    # data without a test split: validation only, and a line that says so
    no_test = write_synthetic_boolq(tmp_path / "no-test", {"train": 64, "validation": 24})
    config = load_study_config(study_yaml(), data=str(no_test))
    prepared, lines = prepare(config, options, log=lambda _: None), []
    splits, teacher = scoring_splits(prepared, config, options, log=lines.append)
    assert list(splits) == list(teacher) == ["validation"] and "no test split" in lines[0]
