"""``latencysolver confirm``: seed repeats of chosen recipes, as trials of a sibling study in the same storage.

A search keeps the trials whose one validation score came out high, so the front's scores overstate what its
recipes give (the winner's curse).  A repeat re-runs a recipe with a new ``Recipe.seed`` (the distillation data
order, LayerDrop, the stochastic skip choice) and measures it on validation and on the test split, paired with
the teacher's answers on the same rows.  Repeats are the trials of the study ``<name>:confirm``: each carries the
number of the search trial it repeats (user attr ``repeat_of``) and its seed, so they neither feed the search's
sampler nor sit on its front, and ``latencysolver worker --study <name>:confirm`` runs them on other machines like
any trial.  Resuming enqueues only the repeats that are missing (a repeat stopped by Ctrl-C runs again).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from latencysolver.errors import ConfigError, SelectionError, StorageError, shown
from latencysolver.results.front import get_trial, pareto_trials
from latencysolver.results.records import (
    StudyRecord,
    baseline_of,
    study_record,
    was_interrupted,
    write_study_record,
)
from latencysolver.results.repeats import RecipeRepeats, confirm_study_name, repeat_seed, summarize_repeats
from latencysolver.results.storage import find_study, load_existing_study, require_made_by_run, shown_url
from latencysolver.search.binding import check_given_teacher
from latencysolver.search.preparation import RunOptions

Log = Callable[[str], None]


def chosen_trials(study: optuna.Study, trials: Sequence[int] | None, front: bool) -> list[FrozenTrial]:
    """The search trials to repeat: ``trials`` by number (each COMPLETE), or the feasible Pareto front."""
    if front:
        chosen = sorted(pareto_trials(study), key=lambda t: t.number)
        if not chosen:
            raise SelectionError(f"study {study.study_name!r} has no completed feasible trials to confirm")
        return chosen
    return [get_trial(study, number) for number in trials or []]  # each one COMPLETE, or a one-line refusal


def sibling_study(study: optuna.Study, storage: str) -> optuna.Study:
    """``<name>:confirm`` in the same storage, with the search study's records (config, teacher, data, binding).

    Its ``repeats_of`` user attr, written first, marks it as the one ``confirm`` made for ``study``: a study of
    that name without it (a plain Optuna study, one a user made) is refused, never written to."""
    name = confirm_study_name(study.study_name)
    check_sibling(study, storage)
    sibling = optuna.create_study(study_name=name, storage=storage, directions=study.directions, load_if_exists=True)
    write_study_record(sibling, StudyRecord(repeats_of=study.study_name))
    if study.metric_names and sibling.metric_names != study.metric_names:
        with warnings.catch_warnings():  # "experimental since v3.2": stable in practice, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sibling.set_metric_names(study.metric_names)
    for key, value in study.user_attrs.items():
        if key not in ("sampler_seeds", "repeats_of"):
            sibling.set_user_attr(key, value)
    return sibling


def check_sibling(study: optuna.Study, storage: str) -> None:
    """Refuse an existing ``<name>:confirm`` that ``confirm`` did not make for ``study`` (no ``repeats_of`` naming
    it): its config would be rewritten and repeats added to someone else's trials."""
    name = confirm_study_name(study.study_name)
    existing = find_study(name, storage)
    if existing is None:
        return
    made_for = study_record(existing).repeats_of
    if made_for != study.study_name:
        raise StorageError(
            f"study {name!r} in {shown_url(storage)!r} was not made by `latencysolver confirm` for study "
            f"{study.study_name!r} ({'repeats_of: ' + repr(made_for) if made_for else 'no repeats_of attribute'}), "
            "so confirm neither adds repeats to it nor rewrites its records (that name is where the repeats go; "
            "move that study to another storage to confirm here)"
        )


def enqueue_repeats(sibling: optuna.Study, originals: Sequence[FrozenTrial], seeds: int) -> int:
    """Enqueue the repeats that no trial of ``sibling`` holds yet (or only as an interrupted FAIL); returns how
    many.  Sets the sibling's ``n_trials`` to every repeat asked for so far, so its workers stop there."""
    held, wanted = set(), set()
    for t in sibling.get_trials(deepcopy=False):
        pair = (t.user_attrs.get("repeat_of"), t.user_attrs.get("seed"))
        wanted.add(pair)
        if not was_interrupted(t):
            held.add(pair)
    added = 0
    for original in originals:
        for k in range(1, seeds + 1):
            pair = (original.number, repeat_seed(original.number, k))
            wanted.add(pair)
            if pair not in held:
                attrs: dict[str, Any] = {"repeat_of": pair[0], "seed": pair[1]}
                if baseline_of(original) is not None:  # a usual recipe: the teacher as is again, on the test rows
                    attrs["baseline"] = baseline_of(original)
                sibling.enqueue_trial(original.params, user_attrs=attrs)
                held.add(pair)
                added += 1
    config = dict(sibling.user_attrs.get("config") or {})
    config["n_trials"] = len(wanted)
    write_study_record(sibling, StudyRecord(config=config))
    return added


def confirm(
    name: str,
    storage: str,
    *,
    trials: Sequence[int] | None = None,
    front: bool = False,
    seeds: int = 3,
    options: RunOptions = RunOptions(),
    log: Log = print,
) -> list[RecipeRepeats]:
    """Repeat the chosen trials of study ``name`` with ``seeds`` new seeds each; returns every recipe's figures."""
    from latencysolver.search.run import join_study

    if seeds < 1:
        raise ConfigError(f"--seeds: expected a positive integer, got {seeds}", key="--seeds", value=seeds)
    study = load_existing_study(name, storage)
    require_made_by_run(study, storage, to_run_trials=True)
    if study_is_a_confirm_study(study):
        raise ConfigError(f"--study {shown(name)} holds seed repeats already; name the search study", key="--study")
    originals = chosen_trials(study, trials, front)
    check_given_teacher(study, storage, options.teacher_path)  # before the sibling is made or a repeat enqueued
    sibling = sibling_study(study, storage)
    added = enqueue_repeats(sibling, originals, seeds)
    log(
        f"confirm: {len(originals)} recipes x {seeds} seeds of study {name!r}: {added} repeats to run "
        f"(study {sibling.study_name!r})"
    )
    join_study(sibling.study_name, storage, options, log)
    wanted = {t.number for t in originals}
    return [r for r in summarize_repeats(study, load_existing_study(sibling.study_name, storage)) if r.trial in wanted]


def study_is_a_confirm_study(study: optuna.Study) -> bool:
    return bool(study.user_attrs.get("repeats_of"))
