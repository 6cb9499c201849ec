"""What ``confirm`` and ``retrain`` share: chosen search trials re-run as enqueued trials of a sibling study.

The sibling (``results/siblings.py``: ``NAME:confirm``, ``NAME:retrain``) lives in the search study's storage with
the search study's records (config, teacher, data, binding), so ``latencysolver worker --study NAME:retrain`` runs
its trials on any machine like a search trial.  Its workers run enqueued trials only: nothing is sampled there,
and the search study's sampler never sees them.  Each wanted trial has a key (``confirm``: the search trial and
the seed; ``retrain``: the search trial and the steps); a resumed command enqueues the keys that no trial holds
yet, or only as an interrupted FAIL, so finished work is never repeated.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from latencysolver.errors import ConfigError, SelectionError, StorageError, shown
from latencysolver.results.front import get_trial, pareto_trials
from latencysolver.results.records import StudyRecord, study_record, was_interrupted, write_study_record
from latencysolver.results.siblings import SIBLINGS, Sibling
from latencysolver.results.storage import find_study, load_existing_study, require_made_by_run, shown_url
from latencysolver.search.binding import check_given_teacher


@dataclass(frozen=True)
class Wanted:
    """One trial a sibling should hold: its key, and the parameters and user attrs it is enqueued with."""

    key: Hashable
    params: dict[str, Any]
    attrs: dict[str, Any]


def open_search_study(kind: Sibling, name: str, storage: str, teacher_path: str | None) -> optuna.Study:
    """The search study ``name``, checked for ``kind``'s command: made by ``run``, not itself a sibling, and the
    ``--teacher`` given (if any) its own.  Nothing is written."""
    study = load_existing_study(name, storage)
    require_made_by_run(study, storage, to_run_trials=True)
    search = study_record(study).sibling_of
    if search is not None:
        holds = next((k.holds for k in SIBLINGS if k.made_for(study)), "checks")
        raise ConfigError(
            f"--study {shown(name)} holds the {holds} of study {shown(search)}; name the search study "
            f"(`latencysolver {kind.command} --study {shown(search)}`)",
            key="--study",
        )
    check_given_teacher(study, storage, teacher_path)  # before the sibling is made or a trial enqueued
    return study


def chosen_trials(study: optuna.Study, trials: Sequence[int] | None, front: bool, command: str) -> list[FrozenTrial]:
    """The search trials to re-run: ``trials`` by number (each COMPLETE), or the feasible Pareto front."""
    if front:
        chosen = sorted(pareto_trials(study), key=lambda t: t.number)
        if not chosen:
            raise SelectionError(f"study {study.study_name!r} has no completed feasible trials to {command}")
        return chosen
    return [get_trial(study, number, "--trials") for number in trials or []]  # each one COMPLETE, or a one-line refusal


def sibling_study(kind: Sibling, study: optuna.Study, storage: str) -> optuna.Study:
    """``kind``'s sibling of ``study`` in the same storage, with the search study's records.

    Its marker (``repeats_of``, ``retrains_of``), written first, says ``kind``'s command made it for ``study``: a
    study of that name without it (a plain Optuna study, one a user made) is refused, never written to."""
    check_sibling(kind, study, storage)
    sibling = optuna.create_study(
        study_name=kind.name(study.study_name), storage=storage, directions=study.directions, load_if_exists=True
    )
    write_study_record(sibling, kind.mark(study.study_name))
    if study.metric_names and sibling.metric_names != study.metric_names:
        with warnings.catch_warnings():  # "experimental since v3.2": stable in practice, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sibling.set_metric_names(study.metric_names)
    # not copied: the search's sampler seeds, any marker, and re-timings keyed by the search's trial numbers
    private: dict[str, Any] = {"sampler_seeds": None, "remeasured": None, **{k.marker: None for k in SIBLINGS}}
    write_study_record(sibling, dataclasses.replace(study_record(study), **private))
    return sibling


def check_sibling(kind: Sibling, study: optuna.Study, storage: str) -> None:
    """Refuse an existing sibling of ``kind``'s name that ``kind``'s command did not make for ``study``: its config
    would be rewritten and trials added to someone else's."""
    name = kind.name(study.study_name)
    existing = find_study(name, storage)
    if existing is None:
        return
    made_for = kind.made_for(existing)
    if made_for != study.study_name:
        marker = f"{kind.marker}: {made_for!r}" if made_for else f"no {kind.marker} attribute"
        raise StorageError(
            f"study {name!r} in {shown_url(storage)!r} was not made by `latencysolver {kind.command}` for study "
            f"{study.study_name!r} ({marker}), so {kind.command} neither adds trials to it nor rewrites its records "
            f"(that name is where the {kind.holds} go; move that study to another storage to {kind.command} here)"
        )


def enqueue_missing(sibling: optuna.Study, wanted: Sequence[Wanted], key_of: Callable[[FrozenTrial], Hashable]) -> int:
    """Enqueue each wanted trial whose key no trial of ``sibling`` holds yet (or only as an interrupted FAIL);
    returns how many.  Sets the sibling's ``n_trials`` to every key asked for so far, so its workers stop there."""
    held, keys = set(), set()
    for t in sibling.get_trials(deepcopy=False):
        keys.add(key_of(t))
        if not was_interrupted(t):
            held.add(key_of(t))
    added = 0
    for w in wanted:
        keys.add(w.key)
        if w.key not in held:
            sibling.enqueue_trial(w.params, user_attrs=w.attrs)
            held.add(w.key)
            added += 1
    config = dict(study_record(sibling).config or {})
    config["n_trials"] = len(keys)
    write_study_record(sibling, StudyRecord(config=config))
    return added
