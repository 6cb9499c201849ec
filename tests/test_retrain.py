"""``latencysolver retrain``: search cheap, retrain the winners, as trials of a sibling study ``NAME:retrain``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from latencysolver.cli import main
from latencysolver.results.records import trial_record
from latencysolver.results.repeats import repeat_seed
from latencysolver.search.retrain import DEFAULT_STEPS, enqueue_retrains, retrain_seeds
from latencysolver.stats import summarize
from tests.conftest import add_sibling_trial, write_study_yaml

STEPS = 5  # the tiny study distills for 3: a retrained trial that ran 3 ignored --steps


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_model_dir, synthetic_data_dir, session_cache):
    """A finished tiny study, usual recipes first, on the session's cache: (that cache, storage, its trials as
    run, a searched trial, a usual recipe)."""
    folder = tmp_path_factory.mktemp("retrain")
    path = write_study_yaml(folder, tiny_model_dir, synthetic_data_dir, n_trials=5, usual_recipes=True)
    assert main(["run", str(path), "--cache-dir", session_cache, "--no-progress"]) == 0
    storage = f"sqlite:///{folder / 'study.db'}"
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    searched = next(t for t in trials if trial_record(t).baseline is None and t.state == TrialState.COMPLETE)
    usual = next(t for t in trials if trial_record(t).baseline is not None)
    return session_cache, storage, trials, searched, usual


def retrain_args(cache: str, storage: str, *trials: int, steps: int = STEPS) -> list[str]:
    numbers = ",".join(map(str, trials))
    common = ["--cache-dir", cache, "--no-progress"]
    return ["retrain", "--study", "tiny", "--storage", storage, "--trials", numbers, "--steps", str(steps), *common]


@pytest.fixture(scope="module")
def retrained(searched):
    """``retrain`` run once on a searched trial and a usual recipe: (its stdout, the sibling's trials)."""
    import contextlib
    import io

    cache, storage, _, original, usual = searched
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(retrain_args(cache, storage, original.number, usual.number)) == 0
    return out.getvalue(), optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials()


def test_a_retrained_trial_is_its_search_trial_distilled_for_the_steps_asked(searched, retrained):
    _, _, _, original, _ = searched
    out, trials = retrained
    (trial,) = trials
    record, search = trial_record(trial), trial_record(original)
    assert trial.state == TrialState.COMPLETE
    assert (record.retrain_of, record.retrain_steps) == (original.number, STEPS)
    assert search.distill_steps == 3 and record.distill_steps == STEPS  # the long schedule, not distillation.steps
    assert trial.params == original.params and record.recipe == search.recipe  # the same recipe, seed included
    assert record.test_accuracy is not None and record.test_accuracy_interval is not None
    assert record.test_vs_teacher is not None and record.accuracy_interval is not None and record.vs_teacher
    assert record.repeat_of is None
    # the table: the search trial's validation and steps beside the retrained one's validation and test
    assert "Retrained recipes of study 'tiny'" in out
    assert f"{original.values[0]:.3f}" in out and f"{record.test_accuracy:.3f}" in out
    assert f"retrain: 2 recipes of study 'tiny' for {STEPS} steps each: 1 to run" in out


def test_the_search_study_never_sees_a_retrained_trial(searched, retrained):
    _, storage, before, _, _ = searched
    after = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert [(t.number, t.state, t.params, t.values) for t in after] == [
        (t.number, t.state, t.params, t.values) for t in before
    ]
    sibling = optuna.load_study(study_name="tiny:retrain", storage=storage)
    assert sibling.user_attrs["retrains_of"] == "tiny" and "repeats_of" not in sibling.user_attrs


def test_a_usual_recipe_has_nothing_to_retrain_and_is_skipped(searched, retrained):
    _, _, _, _, usual = searched
    out, trials = retrained
    assert f"retrain: trial {usual.number} is a usual recipe (the teacher as is, untrained): nothing to train" in out
    assert usual.number not in [trial_record(t).retrain_of for t in trials]


def test_a_retrained_trial_exports_and_its_card_gives_both_budgets(searched, retrained, tmp_path):
    cache, storage, _, original, _ = searched
    (trial,) = retrained[1]
    out = tmp_path / "export"
    args = ["export", "--study", "tiny:retrain", "--storage", storage, "--trial", str(trial.number)]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["retrain"] == {
        "search_study": "tiny",
        "search_trial": original.number,
        "search_steps": 3,
        "search_accuracy": original.values[0],
        "steps": STEPS,
        "distill_steps": STEPS,
        "seed": trial_record(original).recipe.seed,
    }
    assert metrics["validation"]["accuracy"] == trial.values[0]
    card = (out / "README.md").read_text()
    assert f"retrained for {STEPS} steps (search trial #{original.number}: 3 steps" in card
    assert "with the search trial's seed" in card
    # a search trial's card says nothing of retraining
    search = ["export", "--study", "tiny", "--storage", storage, "--trial", str(original.number), "--no-progress"]
    assert main([*search, "--out", str(tmp_path / "s")]) == 0
    assert "retrained for" not in (tmp_path / "s" / "README.md").read_text()


def test_retrain_again_runs_nothing_already_done(searched, retrained, capsys):
    cache, storage, _, original, usual = searched
    count = len(optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials())
    capsys.readouterr()
    assert main(retrain_args(cache, storage, original.number, usual.number)) == 0
    out = capsys.readouterr().out
    assert f"for {STEPS} steps each: 0 to run" in out and "nothing to run" in out
    assert len(optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials()) == count


def test_same_steps_as_the_search_reproduce_its_search_trial(searched, retrained):
    """The retrained trial keeps its search trial's seed and data order: at the search's own budget it ends at the
    search trial's loss (a new seed, as a repeat of ``confirm`` has, would not)."""
    cache, storage, _, original, _ = searched
    assert main(retrain_args(cache, storage, original.number, steps=3)) == 0
    trials = optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials()
    (again,) = [trial_record(t) for t in trials if trial_record(t).retrain_steps == 3]
    assert again.distill_steps == 3
    assert again.distill_final_loss == pytest.approx(trial_record(original).distill_final_loss)


def test_only_missing_or_interrupted_retrains_are_enqueued(searched):
    """Resuming enqueues each (search trial, steps) pair no trial holds, or holds only as an interrupted FAIL."""
    _, _, trials, original, usual = searched
    other = next(t for t in trials if t.number > original.number and trial_record(t).baseline is None)
    study = optuna.create_study(storage="sqlite://", directions=["maximize", "maximize"])
    held = {"retrain_of": original.number, "retrain_steps": STEPS, "seed": retrain_seeds(original, 1)[0]}
    add_sibling_trial(study, TrialState.COMPLETE, held)
    stopped = {"retrain_of": other.number, "retrain_steps": STEPS, "seed": retrain_seeds(other, 1)[0]}
    add_sibling_trial(study, TrialState.FAIL, stopped, interrupted=True)
    log: list[str] = []
    assert enqueue_retrains(study, [original, other, usual], STEPS, log.append) == 1  # the interrupted one
    assert enqueue_retrains(study, [original, other, usual], STEPS, log.append) == 0
    assert enqueue_retrains(study, [original], STEPS + 1, log.append) == 1  # another budget: another trial
    waiting = [trial_record(t) for t in study.get_trials() if t.state == TrialState.WAITING]
    assert [(r.retrain_of, r.retrain_steps) for r in waiting] == [(other.number, STEPS), (original.number, STEPS + 1)]
    assert study.user_attrs["config"]["n_trials"] == 3
    assert all("usual recipe" in line for line in log) and len(log) == 2
    # more seeds: the held retrain is the first seed; the second is confirm's first new seed, for each recipe
    assert enqueue_retrains(study, [original, other], STEPS, log.append, seeds=2) == 2
    waiting = [t for t in study.get_trials() if t.state == TrialState.WAITING][2:]
    assert [(trial_record(t).retrain_of, t.user_attrs["seed"]) for t in waiting] == [
        (original.number, repeat_seed(original.number, 1)),
        (other.number, repeat_seed(other.number, 1)),
    ]
    seed = trial_record(original).recipe.seed
    assert retrain_seeds(original, 3) == [seed, repeat_seed(original.number, 1), repeat_seed(original.number, 2)]
    assert enqueue_retrains(study, [original, other], STEPS, log.append, seeds=2) == 0


def test_seeds_retrain_a_recipe_with_new_seeds_and_print_their_mean(searched, retrained, capsys, tmp_path):
    """``--seeds 2``: the retrain already held (its search trial's seed) is the first; one more runs with a new
    seed, which changes the data order (another final loss); the table gains a seed-mean line."""
    cache, storage, _, original, _ = searched
    capsys.readouterr()
    assert main([*retrain_args(cache, storage, original.number), "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert f"retrain: 1 recipe x 2 seeds of study 'tiny' for {STEPS} steps each: 1 to run" in out
    sibling = optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials()
    mine = [t for t in sibling if trial_record(t).retrain_steps == STEPS]
    assert [t.state for t in mine] == [TrialState.COMPLETE] * 2
    assert [t.user_attrs["seed"] for t in mine] == retrain_seeds(original, 2)
    first, second = (trial_record(t) for t in mine)
    assert first.distill_final_loss != second.distill_final_loss
    validation = summarize([first.accuracy, second.accuracy]).describe()
    assert f"seed mean ± sd, trial {original.number}, {STEPS} steps, 2 seeds: validation {validation}, test " in out
    assert main([*retrain_args(cache, storage, original.number), "--seeds", "2"]) == 0
    assert "2 seeds of study 'tiny' for 5 steps each: 0 to run" in capsys.readouterr().out
    # the second seed's export says so
    out_dir = tmp_path / "second"
    export = ["export", "--study", "tiny:retrain", "--storage", storage, "--trial", str(mine[1].number)]
    assert main([*export, "--out", str(out_dir), "--no-progress"]) == 0
    assert (
        f"with a new seed ({repeat_seed(original.number, 1)}, `retrain --seeds`)" in (out_dir / "README.md").read_text()
    )


def test_run_refuses_a_name_that_ends_in_retrain(study_yaml, tmp_path, capsys):
    path = study_yaml(name="tiny:retrain")
    assert main(["run", str(path), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"latencysolver: error: {path}: name: 'tiny:retrain' ends in ':retrain'"), err
    assert "`latencysolver retrain`" in err[0]
    assert not (tmp_path / "study.db").exists() and not (tmp_path / "cache" / "teachers").exists()


def test_retrain_refuses_a_foreign_retrain_study_and_writes_nothing(searched, retrained, tmp_path, capsys):
    cache, storage, _, original, _ = searched
    db = tmp_path / "copy.db"
    shutil.copyfile(make_url(storage).database, db)
    copy = f"sqlite:///{db}"
    optuna.delete_study(study_name="tiny:retrain", storage=copy)
    plain = optuna.create_study(study_name="tiny:retrain", storage=copy, directions=["maximize", "maximize"])
    plain.set_user_attr("owner", "someone else")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(retrain_args(cache, copy, original.number)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latencysolver: error: study 'tiny:retrain'"), err
    assert "not made by `latencysolver retrain` for study 'tiny' (no retrains_of attribute)" in err[0]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    # and a retrain study is no search study to retrain
    on_sibling = retrain_args(cache, storage, original.number)
    on_sibling[on_sibling.index("tiny")] = "tiny:retrain"
    assert main(on_sibling) == 1
    assert "--study 'tiny:retrain' holds the retrained recipes of study 'tiny'" in capsys.readouterr().err
    assert main(retrain_args(cache, storage, original.number, steps=0)) == 1
    assert "--steps: expected a positive integer, got 0" in capsys.readouterr().err


def test_the_default_budget_is_1000_steps_and_help_says_so(capsys):
    from latencysolver.cli.parser import _RETRAIN_STEPS

    assert DEFAULT_STEPS == _RETRAIN_STEPS == 1000
    with pytest.raises(SystemExit):
        main(["retrain", "--help"])
    assert "default 1000" in capsys.readouterr().out


def test_a_worker_on_a_retrain_study_whose_trials_were_interrupted_says_what_to_run(study_yaml, tmp_path, capsys):
    """Nothing queued, some missing: a worker would run nothing and exit as if done; it names the command."""
    from latencysolver.config.study import config_to_dict, load_study_config
    from latencysolver.results.records import StudyRecord, write_study_record

    config = load_study_config(study_yaml())
    sibling = optuna.create_study(study_name="tiny:retrain", storage=config.storage, directions=["maximize"] * 2)
    write_study_record(sibling, StudyRecord(config={**config_to_dict(config), "n_trials": 3}, retrains_of="tiny"))
    for number, steps, state in ((0, 2000, TrialState.COMPLETE), (1, 2000, TrialState.FAIL), (2, 50, TrialState.FAIL)):
        attrs = {"retrain_of": number, "retrain_steps": steps}
        add_sibling_trial(sibling, state, attrs, interrupted=state == TrialState.FAIL)
    capsys.readouterr()
    args = ["worker", "--study", "tiny:retrain", "--storage", config.storage, "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--no-progress"]) == 1
    errors = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning:")]
    assert errors == [
        "latencysolver: error: --study 'tiny:retrain': 2 of its 3 retrained recipes were interrupted and none is "
        "queued, so a worker has nothing to run; `latencysolver retrain --study 'tiny' --trials 2 --steps 50` and "
        "`latencysolver retrain --study 'tiny' --trials 1 --steps 2000` (with this --storage) queues them again and "
        "runs them, and then workers can join"
    ]
    assert not (tmp_path / "cache").exists()


def test_an_elastic_recipe_is_retrained_per_trial_from_the_teacher(
    tmp_path, tiny_model_dir, synthetic_data_dir, session_cache
):
    """A slice of the elastic student recovers for ``recovery_steps``; retrained, the recipe is distilled alone from
    the teacher for ``--steps``, as a per-trial student (no slice)."""
    space = {"prune_ratio": 0.5, "prune_kind": "structured", "quant_dtype": "fp32", "recovery_steps": 0}
    elastic = {"steps": 3, "batch_size": 8, "random_subnetworks": 1, "importance": "gradient"}
    path = write_study_yaml(
        tmp_path,
        tiny_model_dir,
        synthetic_data_dir,
        n_trials=1,
        trial_mode="elastic",
        elastic=elastic,
        search_space=space,
    )
    common = ["--cache-dir", session_cache, "--no-progress"]
    assert main(["run", str(path), *common]) == 0
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    (original,) = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert trial_record(original).elastic is not None and trial_record(original).distill_steps == 0
    assert main(["retrain", "--study", "tiny", "--storage", storage, "--trials", "0", "--steps", "4", *common]) == 0
    (trial,) = optuna.load_study(study_name="tiny:retrain", storage=storage).get_trials()
    record = trial_record(trial)
    assert trial.state == TrialState.COMPLETE and record.elastic is None and record.distill_steps == 4
    assert record.recipe == trial_record(original).recipe


def test_rank_agreement_compares_the_cheap_ranking_with_both_retrained_splits(capsys):
    from latencysolver.cli.tables import print_retrained
    from latencysolver.results.records import TrialRecord
    from latencysolver.results.retrained import Retrained, rank_agreements, seed_summaries

    def row(number: int, cheap: float, val: float, test: float | None, state=TrialState.COMPLETE) -> Retrained:
        search = TrialRecord(number=number, state=TrialState.COMPLETE, values=(cheap, 2.0))
        again = TrialRecord(number=number, state=state, values=(val, 2.0), test_accuracy=test, distill_steps=9)
        return Retrained(number, 9, number, state, "", search, again)

    # cheap ranks 1..5; retrained validation swaps the first two (rho 0.9), test reverses all (rho -1)
    rows = [
        row(i, 0.60 + i / 100, v, t)
        for i, v, t in zip(range(5), (0.71, 0.70, 0.72, 0.73, 0.74), (5, 4, 3, 2, 1), strict=True)
    ]
    agreements = rank_agreements([*rows, row(9, 0.99, 0.10, 0.10, state=TrialState.FAIL)])  # a FAIL is left out
    assert isinstance(agreements, dict)
    assert agreements["validation"].rho == pytest.approx(0.9) and agreements["validation"].n == 5
    assert agreements["test"].rho == pytest.approx(-1.0)
    assert rank_agreements(rows[:3]) == "rank agreement: needs 4 retrained recipes, 3 finished"
    # a recipe retrained with several seeds ranks by their mean: trial 0's seeds average 0.745, now first on validation
    retrained_again = dataclasses.replace(rows[0].retrained, values=(0.78, 2.0))
    again = dataclasses.replace(rows[0], number=20, seed=7, retrained=retrained_again)
    averaged = rank_agreements([*rows, again])
    assert isinstance(averaged, dict) and averaged["validation"].n == 5
    assert averaged["validation"].rho == pytest.approx(0.0)  # ranks 5,1,2,3,4 against 1..5: sum d^2 20, 1 - 120/120
    (both,) = seed_summaries([*rows, again])
    assert (both.trial, both.steps, both.validation.n) == (0, 9, 2)
    assert both.validation.mean == pytest.approx(0.745) and both.validation.sd == pytest.approx(0.07 / 2**0.5)
    untested = rank_agreements([row(i, 0.6 + i / 100, 0.7 + i / 100, None) for i in range(4)])
    assert isinstance(untested, dict) and set(untested) == {"validation"}
    print_retrained("tiny", rows)
    out = capsys.readouterr().out
    assert "rank agreement, search validation against retrained validation: Spearman rho +0.90" in out
    assert "against retrained test: Spearman rho -1.00 [-1.00, -1.00] over 5 recipes" in out


def test_retrain_of_one_recipe_says_rank_agreement_needs_four(retrained):
    out, _ = retrained
    assert "rank agreement: needs 4 retrained recipes, 1 finished" in out
