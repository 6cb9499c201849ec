"""Issue 17: ``latencysolver confirm`` re-runs chosen recipes with new seeds in a sibling study ``NAME:confirm``."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.results.records import trial_record
from latencysolver.results.repeats import find_repeats, repeat_seed
from latencysolver.search.confirm import enqueue_repeats, sibling_study
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from tests.conftest import write_study_yaml


@pytest.fixture(scope="module")
def searched_once(tmp_path_factory, tiny_model_dir, synthetic_data_dir, session_cache) -> str:
    """A finished 2-trial search study, run once for this module on the session's cache; its SQLite file."""
    folder = tmp_path_factory.mktemp("confirm-study")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LATENCYSOLVER_CACHE", session_cache)
        config = load_study_config(write_study_yaml(folder, tiny_model_dir, synthetic_data_dir, n_trials=2))
        run_study(config, RunOptions(progress=False), log=lambda _: None)
    return make_url(config.storage).database


@pytest.fixture()
def searched(searched_once, tmp_path, session_cache, monkeypatch):
    """The module's search study copied into a database of this test's own (confirm, worker and remeasure add
    to it); the repeats it runs store their artifacts beside the original trials', under new ids."""
    monkeypatch.setenv("LATENCYSOLVER_CACHE", session_cache)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    shutil.copyfile(searched_once, tmp_path / "study.db")
    return optuna.load_study(study_name="tiny", storage=storage), storage


def repeats_of(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny:confirm", storage=storage).get_trials()


def test_confirm_runs_n_seeded_repeats_linked_to_their_trial_and_reports_mean_and_sd(searched, capsys):
    study, storage = searched
    before = [(t.number, t.state, t.values) for t in study.get_trials()]
    args = ["confirm", "--study", "tiny", "--storage", storage, "--trials", "0,1", "--seeds", "2", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    trials = repeats_of(storage)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    originals = {t.number: t for t in study.get_trials()}
    for t in trials:
        record = trial_record(t)
        assert record.repeat_of in (0, 1)
        assert t.params == originals[record.repeat_of].params  # the same recipe ...
        assert record.recipe.seed == t.user_attrs["seed"]  # ... with its own seed
        assert record.test_accuracy is not None and record.test_vs_teacher is not None  # confirmed: test measured
    # the new seed reaches the distillation (data order, dropout): no repeat ends at its search trial's loss
    for t in trials:
        original_loss = trial_record(originals[t.user_attrs["repeat_of"]]).distill_final_loss
        assert trial_record(t).distill_final_loss != original_loss
    seeds = [t.user_attrs["seed"] for t in trials]
    assert sorted(seeds) == sorted(repeat_seed(n, k) for n in (0, 1) for k in (1, 2))
    assert len(set(seeds)) == 4 and not set(seeds) & {0, 1}
    # the search study is untouched: no new trial, the repeats are not on its front
    after = optuna.load_study(study_name="tiny", storage=storage)
    assert [(t.number, t.state, t.values) for t in after.get_trials()] == before
    # mean ± sd recomputed from the repeats themselves
    summaries = {r.trial: r for r in find_repeats(after, storage)}
    for number in (0, 1):
        values = [t.values[0] for t in trials if t.user_attrs["repeat_of"] == number]
        tests = [trial_record(t).test_accuracy for t in trials if t.user_attrs["repeat_of"] == number]
        assert summaries[number].validation.mean == pytest.approx(statistics.mean(values))
        assert summaries[number].validation.sd == pytest.approx(statistics.stdev(values))
        assert summaries[number].test.mean == pytest.approx(statistics.mean(tests))
        assert summaries[number].search_accuracy == originals[number].values[0]
        assert summaries[number].validation.describe() in out
    assert "winner's curse" in out


def test_resuming_confirm_adds_only_the_missing_repeats(searched, capsys):
    study, storage = searched
    base = ["confirm", "--study", "tiny", "--storage", storage, "--trials", "0", "--no-progress"]
    assert main([*base, "--seeds", "2"]) == 0
    assert main([*base, "--seeds", "2"]) == 0  # nothing missing: nothing run
    assert len(repeats_of(storage)) == 2
    assert main([*base, "--seeds", "3"]) == 0  # one more seed
    trials = repeats_of(storage)
    assert [t.user_attrs["seed"] for t in trials] == [repeat_seed(0, k) for k in (1, 2, 3)]


def test_a_worker_runs_the_enqueued_repeats_and_never_asks_the_sampler(searched, capsys):
    study, storage = searched
    sibling = sibling_study(study, storage)
    assert enqueue_repeats(sibling, [study.trials[1]], seeds=2) == 2
    assert main(["worker", "--study", "tiny:confirm", "--storage", storage, "--no-progress"]) == 0
    trials = repeats_of(storage)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert [t.user_attrs["repeat_of"] for t in trials] == [1, 1]


def test_confirm_refuses_bad_requests_in_one_line(searched, capsys):
    study, storage = searched
    assert main(["confirm", "--study", "tiny", "--storage", storage, "--trials", "7", "--no-progress"]) == 1
    assert "--trials: study 'tiny' has no trial 7" in capsys.readouterr().err
    args = ["confirm", "--study", "tiny", "--storage", storage, "--front", "--seeds", "0"]
    assert main(args) == 1
    assert "--seeds: expected a positive integer, got 0" in capsys.readouterr().err


def test_export_shows_the_repeat_figures_when_they_exist(searched, tmp_path, capsys):
    import json

    study, storage = searched
    export = ["export", "--study", "tiny", "--storage", storage, "--trial", "0", "--no-progress", "--out"]
    assert main([*export, str(tmp_path / "before")]) == 0
    assert json.loads((tmp_path / "before" / "metrics.json").read_text())["repeats"] is None
    assert "Seed repeats: none" in (tmp_path / "before" / "README.md").read_text()
    report = ["report", "--study", "tiny", "--storage", storage, "--no-png", "--out"]  # the PNG: test_report.py
    assert main([*report, str(tmp_path / "before.html")]) == 0
    assert 'id="repeats-table"' not in (tmp_path / "before.html").read_text()
    confirm = ["confirm", "--study", "tiny", "--storage", storage, "--trials", "0", "--seeds", "2", "--no-progress"]
    assert main(confirm) == 0
    assert main([*export, str(tmp_path / "after")]) == 0
    repeats = json.loads((tmp_path / "after" / "metrics.json").read_text())["repeats"]
    values = [t.values[0] for t in repeats_of(storage)]
    assert repeats["trial"] == 0 and repeats["validation"]["n"] == 2
    assert repeats["validation"]["mean"] == pytest.approx(statistics.mean(values))
    assert "Seed repeats (`latencysolver confirm`, 2 new seeds" in (tmp_path / "after" / "README.md").read_text()
    assert main([*report, str(tmp_path / "after.html")]) == 0  # and the report has the repeats' table
    page = (tmp_path / "after.html").read_text()
    assert 'id="repeats-table"' in page and f"{statistics.mean(values):.3f} ± " in page


def test_confirm_refuses_a_sibling_it_did_not_make_and_leaves_it_as_it_was(searched, capsys):
    """A study named ``tiny:confirm`` that confirm did not make (a plain Optuna study, or one with a search study's
    records, as `run` made before it refused the name) is not adopted: no config rewritten, no trial added."""
    study, storage = searched
    plain = optuna.create_study(study_name="tiny:confirm", storage=storage, directions=study.directions)
    plain.set_user_attr("owner", "someone else")
    plain.enqueue_trial(study.trials[0].params)
    before = (plain.user_attrs, [(t.number, t.state, t.params) for t in plain.get_trials()])
    args = ["confirm", "--study", "tiny", "--storage", storage, "--trials", "0", "--seeds", "1", "--no-progress"]
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latencysolver: error: study 'tiny:confirm'"), err
    assert "not made by `latencysolver confirm` for study 'tiny'" in err[0]
    after = optuna.load_study(study_name="tiny:confirm", storage=storage)
    assert (after.user_attrs, [(t.number, t.state, t.params) for t in after.get_trials()]) == before

    for key, value in study.user_attrs.items():  # a search study's records, but not made by confirm
        plain.set_user_attr(key, value)
    before = (plain.user_attrs, [(t.number, t.state, t.params) for t in plain.get_trials()])
    assert main(args) == 1
    assert "not made by `latencysolver confirm`" in capsys.readouterr().err
    after = optuna.load_study(study_name="tiny:confirm", storage=storage)
    assert (after.user_attrs, [(t.number, t.state, t.params) for t in after.get_trials()]) == before


def test_the_sibling_confirm_makes_is_marked_with_its_search_study(searched):
    study, storage = searched
    sibling = sibling_study(study, storage)
    assert sibling.user_attrs["repeats_of"] == "tiny"
    assert sibling_study(study, storage).study_name == "tiny:confirm"  # its own sibling: taken up again


def test_another_teacher_is_refused_by_every_command_that_adds_results(searched, tiny_model_dir, capsys):
    """``run`` refuses to resume a study with another teacher; ``confirm``, ``remeasure`` and ``worker`` did not,
    and mixed that teacher's repeats and speed-ups into the study.  Refused in one line, the storage unchanged."""
    import hashlib

    from latencysolver.results.records import study_record

    study, storage = searched
    db = Path(make_url(storage).database)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    other = ["--teacher", str(tiny_model_dir), "--no-progress"]  # the untrained base model: a two-class classifier
    common = ["--study", "tiny", "--storage", storage]
    for command in (
        ["confirm", *common, "--trials", "0", "--seeds", "1"],
        ["remeasure", *common, "--trials", "0"],
        ["worker", *common],
    ):
        capsys.readouterr()
        assert main([*command, *other]) == 1, command
        err = [line for line in capsys.readouterr().err.strip().splitlines() if "warning" not in line]  # SQLite
        assert len(err) == 1 and err[0].startswith("latencysolver: error: study 'tiny' in "), (command, err)
        assert f"is bound to teacher {study_record(study).binding.teacher_key}, but --teacher " in err[0]
        assert repr(str(tiny_model_dir)) in err[0]
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before, command
    assert "tiny:confirm" not in [s.study_name for s in optuna.get_all_study_summaries(storage)]

    # the study's own teacher folder, given with --teacher, is its teacher
    own = ["--teacher", study_record(study).teacher.path, "--no-progress"]
    assert main(["remeasure", *common, "--trials", "0", *own]) == 0
    assert "0" in study_record(optuna.load_study(study_name="tiny", storage=storage)).remeasured
