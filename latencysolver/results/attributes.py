"""How a trial was enqueued and what it reports while it runs, under Optuna's user-attr keys.

``records.py`` reads and writes a trial's measurements and a study's records; this module holds the rest of what
is stored by key: the attrs a trial is enqueued with (a usual recipe's ``baseline``, a seed repeat's ``repeat_of``
and ``seed``, a retrain's ``retrain_of`` and ``retrain_steps``), the rungs a running trial reports, and a trial
copied with re-measured figures.  Together the two are the only modules that name a stored key
(tests/test_layout.py checks it).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import optuna
from optuna.trial import FrozenTrial

BASELINE = "baseline"
REPEAT_OF = "repeat_of"
SEED = "seed"
RETRAIN_OF = "retrain_of"
RETRAIN_STEPS = "retrain_steps"
RUNGS = "rungs"  # a list of search/rungs.py RungDecision.to_dict(), one per rung reached


def baseline_of(trial: optuna.Trial | FrozenTrial) -> str | None:
    """The quant_dtype of a usual-recipe trial (enqueued with it), None for a searched one."""
    value = trial.user_attrs.get(BASELINE)
    return value if isinstance(value, str) else None


def repeat_of(trial: optuna.Trial | FrozenTrial) -> int | None:
    """The search trial a seed repeat of ``latencysolver confirm`` repeats, None for any other trial."""
    return _int_attr(trial, REPEAT_OF)


def seed_of(trial: optuna.Trial | FrozenTrial) -> int | None:
    """The seed a trial was enqueued with (``confirm``, ``retrain``); None: a search trial (its number is its seed)."""
    return _int_attr(trial, SEED)


def retrain_of(trial: optuna.Trial | FrozenTrial) -> tuple[int, int] | None:
    """A trial of ``latencysolver retrain``: (the search trial it retrains, its distillation steps); else None."""
    number, steps = _int_attr(trial, RETRAIN_OF), _int_attr(trial, RETRAIN_STEPS)
    return (number, steps) if number is not None and steps is not None else None


def _int_attr(trial: optuna.Trial | FrozenTrial, key: str) -> int | None:
    value = trial.user_attrs.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def enqueue_baseline(study: optuna.Study, quant_dtype: str) -> None:
    """A usual-recipe trial: no parameters to sample, the teacher as is in ``quant_dtype``."""
    study.enqueue_trial({}, user_attrs=baseline_attrs(quant_dtype), skip_if_exists=False)


def baseline_attrs(quant_dtype: str) -> dict[str, Any]:
    return {BASELINE: quant_dtype}


def repeat_attrs(number: int, seed: int, baseline: str | None) -> dict[str, Any]:
    """What a seed repeat of search trial ``number`` is enqueued with (read back by ``repeat_of``, ``seed_of``;
    a usual recipe's repeat keeps its ``baseline``)."""
    attrs: dict[str, Any] = {REPEAT_OF: number, SEED: seed}
    return {**attrs, **baseline_attrs(baseline)} if baseline is not None else attrs


def retrain_attrs(number: int, steps: int, seed: int) -> dict[str, Any]:
    """What a retrain of search trial ``number`` with ``steps`` is enqueued with (read back by ``retrain_of``)."""
    return {RETRAIN_OF: number, RETRAIN_STEPS: steps, SEED: seed}


def reported_rungs(trial: FrozenTrial) -> list[dict[str, Any]]:
    """The rungs a trial (running or finished) has reported so far; [] for none."""
    return list(trial.user_attrs.get(RUNGS) or ())


def write_rungs(trial: optuna.Trial, reported: list[dict[str, Any]]) -> None:
    """Every rung reached so far, rewritten at each rung: the other trials read them while this one runs."""
    trial.set_user_attr(RUNGS, reported)


def with_measurements(
    trial: FrozenTrial, figures: dict[str, Any], latency_value: float | None, constraint_changes: dict[str, float]
) -> FrozenTrial:
    """A copy of ``trial`` with ``figures`` over its measured attrs, ``latency_value`` as its second objective
    (when given), and each named constraint moved by its change; the stored trial is left as it is.

    Optuna's ``set_constraint`` keeps each constraint as the system attr ``constraints:NAME``, which
    ``FrozenTrial.constraints`` reads back; a constraint the trial does not hold stays absent."""
    copy = deepcopy(trial)  # the stored trial (shared by get_trials(deepcopy=False)) stays as it is
    copy.user_attrs = {**trial.user_attrs, **figures}
    if latency_value is not None:
        copy.values = [copy.values[0], latency_value]
    for name, change in constraint_changes.items():
        key = f"constraints:{name}"
        if key in copy.system_attrs:
            copy.system_attrs[key] = copy.system_attrs[key] + change
    return copy
