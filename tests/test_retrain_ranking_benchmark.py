"""benchmarks/retrain_ranking.py on a tiny study: every searched recipe retrained once, the rank agreement of the
two budgets in results.json, and a second invocation that runs nothing again."""

from __future__ import annotations

import json
import sys

import optuna
import pytest
from optuna.trial import TrialState

from latencysolver.results.attributes import baseline_of
from latencysolver.results.records import trial_record
from tests.conftest import load_benchmark, write_study_yaml

bench = load_benchmark("retrain_ranking")

pytestmark = pytest.mark.slow  # 11 trials of a tiny study and two preparations: about 90 s on 2 cores under load


def test_every_searched_recipe_is_retrained_once_and_a_rerun_repeats_nothing(
    tmp_path, tiny_model_dir, synthetic_data_dir, session_cache, monkeypatch
):
    config = write_study_yaml(tmp_path, tiny_model_dir, synthetic_data_dir, usual_recipes=True)
    out = tmp_path / "out"
    argv = ["retrain_ranking.py", "--config", str(config), "--data", str(synthetic_data_dir), "--trials", "7"]
    argv += ["--steps", "4", "--min-recipes", "4", "--cache-dir", session_cache, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    searched = [t.number for t in trials if t.state == TrialState.COMPLETE and baseline_of(t) is None]
    assert len(trials) == 7 and len(searched) >= 4  # the usual recipes count toward --trials and are not ranked
    results = json.loads((out / "results.json").read_text())
    assert [(r["trial"], r["seed"], r["search_steps"]) for r in results["recipes"]] == [(n, n, 3) for n in searched]
    retrained = optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials()
    assert sorted(trial_record(t).retrain_of for t in retrained) == searched
    assert {trial_record(t).distill_steps for t in retrained} == {4}
    by_trial = {t.number: t for t in trials}
    assert [r["search_validation"] for r in results["recipes"]] == [by_trial[n].values[0] for n in searched]
    agreement = results["rank_agreement"]
    assert agreement["validation"]["n"] == len(searched)  # rho: None where a tiny student ranks all recipes equal
    assert "rank agreement, search validation against retrained validation" in (out / "retrain.txt").read_text()

    bench.main()  # resumed: the study is complete, every recipe is retrained
    assert len(optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials()) == len(searched)
    assert "nothing to run" in (out / "run.txt").read_text()
    assert f"{len(searched)} recipes of study 'tiny' for 4 steps each: 0 to run" in (out / "retrain.txt").read_text()
