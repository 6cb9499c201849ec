"""Rungs (MO-ASHA) for per-trial mode: non-dominated ranks, the keep rule, and trials stopped or kept in a study."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from latencysolver.config.study import load_study_config
from latencysolver.errors import ConfigError
from latencysolver.results.attributes import RUNGS as RUNGS_ATTR
from latencysolver.results.front import pareto_trials
from latencysolver.results.records import trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.search.rungs import decide, dominates, nondominated_ranks
from latencysolver.training.evaluate import log_likelihood, ranking_auc, scores


def test_dominance_needs_better_somewhere():
    assert dominates((0.7, 3.0), (0.6, 3.0))
    assert not dominates((0.7, 3.0), (0.7, 3.0))  # equal points do not dominate each other
    assert not dominates((0.7, 2.0), (0.6, 3.0))


def test_nondominated_ranks_by_hand():
    #   a (0.70, 2) and b (0.60, 5) are the front; c (0.60, 2) is dominated by both; d (0.50, 1) by all three
    points = [(0.70, 2.0), (0.60, 5.0), (0.60, 2.0), (0.50, 1.0)]
    assert nondominated_ranks(points) == [0, 0, 1, 2]


def test_the_keep_rule():
    front = [(0.70, 2.0), (0.60, 5.0), (0.65, 4.0), (0.62, 4.5), (0.69, 3.0)]  # five mutually non-dominated
    # dominated by all of them: rank 1 of 6, ceil(6 / 3) = 2 kept, the cut-off rank is 0: it stops
    assert decide((0.55, 1.0), front, reduction_factor=3, min_trials=2) == (1, 2, True)
    # on the rung's front, it goes on however many are kept
    assert decide((0.75, 1.0), front, reduction_factor=3, min_trials=2) == (0, 2, False)
    # below min_trials nothing stops
    assert decide((0.55, 1.0), front, reduction_factor=3, min_trials=7) == (1, 6, False)
    # ties at the cut-off rank are kept: 3 of rank 1 behind 1 of rank 0, kept = ceil(4 / 2) = 2 → cut-off rank 1
    behind = [(0.9, 9.0), (0.5, 2.0), (0.6, 1.0)]
    assert decide((0.4, 3.0), behind, reduction_factor=2, min_trials=1) == (1, 2, False)


@pytest.mark.parametrize(
    "early_stop, key, words",
    [
        ({"rungs": [0.5, 0.2]}, "early_stop.rungs", "must increase"),
        ({"rungs": [0.0, 0.5]}, "early_stop.rungs", "(0, 1)"),
        ({"rungs": [0.5], "reduction_factor": 1}, "early_stop.reduction_factor", ">= 2"),
        ({"rungs": [0.5], "min_trials": 0}, "early_stop.min_trials", "> 0"),
        ({"rungs": [0.5], "rung_metric": "loss"}, "early_stop.rung_metric", "expected one of"),
    ],
)
def test_bad_rungs_name_the_key(study_yaml, early_stop, key, words):
    with pytest.raises(ConfigError) as info:
        load_study_config(study_yaml(early_stop=early_stop))
    assert info.value.key == key and words in str(info.value)


def _rung_study(study_yaml, tmp_path, others: tuple[float, float], signals: dict | None = None, **early_stop):
    """Six stored trials at the first rung with (accuracy, speed-up) ``others``, then a real trial ranked against
    them (on accuracy unless ``rung_metric`` says otherwise).  (The study is made by a first trial rejected on
    latency, which reaches no rung.)"""
    rule = {"after": None, "rows": 16, "rungs": [1 / 9, 1 / 3], "reduction_factor": 3, "min_trials": 2}
    rule["rung_metric"] = "accuracy"  # the stored trials carry an accuracy; the AUC test below sets its own
    path = study_yaml(distillation={"steps": 9, "batch_size": 8}, early_stop={**rule, **early_stop}, n_trials=1)
    config = load_study_config(path)
    options = RunOptions(cache_dir=str(tmp_path / "cache"), progress=False)
    rejecting = dataclasses.replace(config, constraints=dataclasses.replace(config.constraints, min_speedup=1e9))
    study = run_study(rejecting, options, log=lambda _: None)
    first_rung = config.early_stop.rungs[0]
    for _ in range(6):
        entry = {"rung": first_rung, "step": 1, "accuracy": others[0], "speedup": others[1], **(signals or {})}
        study.add_trial(
            optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.5, 1.0], user_attrs={RUNGS_ATTR: [entry]})
        )
    study = run_study(dataclasses.replace(config, n_trials=8), options, log=lambda _: None)
    first, second = [t for t in study.get_trials() if "recipe" in t.user_attrs]
    assert trial_record(first).rejected_before_training and RUNGS_ATTR not in first.user_attrs
    return study, second


def test_a_dominated_trial_stops_at_the_first_rung(study_yaml, tmp_path):
    study, second = _rung_study(study_yaml, tmp_path, others=(1.0, 1e6))  # better than anything on both
    r = trial_record(second)
    assert second.state == TrialState.COMPLETE  # partial results kept
    assert r.distill_steps == 1  # 1/9 of 9 steps
    assert r.early_stopped["reason"] == "rung" and r.early_stopped["step"] == 1
    decision = r.early_stopped["rung"]
    assert decision["rank"] == 1 and decision["trials"] == 7 and decision["kept"] == 3 and decision["stop"]
    assert len(r.rungs) == 1 and r.rungs[0] == decision
    assert r.constraints["min_accuracy"] > 0  # infeasible, whatever its accuracy
    assert second.number not in {t.number for t in pareto_trials(study)}


def test_a_trial_on_the_rung_front_is_never_stopped(study_yaml, tmp_path):
    _, second = _rung_study(study_yaml, tmp_path, others=(0.0, 1e-6))  # worse than anything on both
    r = trial_record(second)
    assert r.distill_steps == 9 and r.early_stopped is None
    # alone at the second rung (below min_trials): kept too
    assert [x["rank"] for x in r.rungs] == [0, 0] and [x["trials"] for x in r.rungs] == [7, 1]
    assert [x["step"] for x in r.rungs] == [1, 3]


def test_record_only_rungs_never_stop(study_yaml, tmp_path):
    _, second = _rung_study(study_yaml, tmp_path, others=(1.0, 1e6), rung_stop=False)
    r = trial_record(second)
    assert r.distill_steps == 9 and r.early_stopped is None
    assert r.rungs[0]["rank"] == 1 and r.rungs[0]["stop"] is False  # dominated, recorded, not stopped


def test_a_rung_ranks_on_its_rung_metric(study_yaml, tmp_path):
    # the stored trials beat it on accuracy and speed-up, and are worse than any real AUC: ranked on accuracy it
    # stops (as above), ranked on AUC it is on the rung's front and runs its whole budget
    impossible = {"auc": -1.0, "log_likelihood": -1e9}
    _, second = _rung_study(study_yaml, tmp_path, others=(1.0, 1e6), signals=impossible, rung_metric="auc")
    r = trial_record(second)
    assert r.distill_steps == 9 and r.early_stopped is None
    first = r.rungs[0]
    assert first["metric"] == "auc" and first["rank"] == 0 and first["trials"] == 7
    assert 0.0 <= first["auc"] <= 1.0 and first["log_likelihood"] < 0.0 and 0.0 <= first["accuracy"] <= 1.0


def test_ranking_auc_and_log_likelihood_by_hand():
    # scores logit[1] - logit[0] for labels 1, 0, 1, 0: of the 4 (yes, no) pairs, 3 are ordered and one tied
    # (-1.5 against -1.5, half): AUC 3.5 / 4.  Every row answers "no", so the accuracy is the majority rate's 0.5.
    logits = torch.tensor([[0.0, -0.5], [0.0, -1.5], [0.0, -1.5], [0.0, -3.5]])  # scores -0.5, -1.5, -1.5, -3.5
    labels = (1, 0, 1, 0)
    assert scores(logits, labels).accuracy == 0.5
    assert ranking_auc(logits, labels) == pytest.approx(0.875)
    assert ranking_auc(logits, (0, 0, 0, 0)) == 0.5  # one class only: no ranking to judge
    # p(yes) = 3/4 on the first row and 1/2 on the second, the true classes 1 and 0: mean(log 3/4, log 1/2)
    two = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    assert log_likelihood(two, (1, 0)) == pytest.approx((math.log(0.75) + math.log(0.5)) / 2)
    # three classes, each ranked first by its own probability: one-vs-rest AUC 1
    three = torch.eye(3)[[0, 1, 2, 0]] * 4.0
    assert ranking_auc(three, (0, 1, 2, 0)) == pytest.approx(1.0)


def test_rungs_are_refused_in_elastic_mode(study_yaml):
    with pytest.raises(ConfigError) as info:
        load_study_config(study_yaml(trial_mode="elastic", early_stop={"rungs": [0.5]}))
    assert info.value.key == "early_stop.rungs"
