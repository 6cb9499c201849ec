"""``latencysolver confirm``: seed repeats of chosen recipes, as trials of a sibling study in the same storage.

A search keeps the trials whose one validation score came out high, so the front's scores overstate what its
recipes give (the winner's curse).  A repeat re-runs a recipe with a new ``Recipe.seed`` (the distillation data
order, LayerDrop, the stochastic skip choice) and measures it on validation and on the test split, paired with
the teacher's answers on the same rows.  Repeats are the trials of the study ``<name>:confirm``: each carries the
number of the search trial it repeats (user attr ``repeat_of``) and its seed, so they neither feed the search's
sampler nor sit on its front, and ``latencysolver worker --study <name>:confirm`` runs them on other machines like
any trial.  A usual recipe (the teacher as is) is repeated once whatever ``seeds`` says: no seed changes its
answers.  Resuming enqueues only the repeats that are missing (a repeat stopped by Ctrl-C runs again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from latencysolver.errors import ConfigError
from latencysolver.results.attributes import baseline_of, repeat_attrs, repeat_of, seed_of
from latencysolver.results.repeats import RecipeRepeats, repeat_seed, summarize_repeats
from latencysolver.results.siblings import CONFIRM
from latencysolver.results.storage import load_existing_study
from latencysolver.search import siblings
from latencysolver.search.preparation import RunOptions

Log = Callable[[str], None]


def sibling_study(study: optuna.Study, storage: str) -> optuna.Study:
    """``<name>:confirm`` in the same storage, marked ``repeats_of`` (``siblings.sibling_study``)."""
    return siblings.sibling_study(CONFIRM, study, storage)


def repeats_of(original: FrozenTrial, seeds: int) -> int:
    """How many repeats a recipe needs: ``seeds``, or one for a usual recipe (the teacher as is, untrained),
    whose answers no seed changes; its one repeat measures it on the test rows and times it again."""
    return 1 if baseline_of(original) is not None else seeds


def enqueue_repeats(sibling: optuna.Study, originals: Sequence[FrozenTrial], seeds: int) -> int:
    """Enqueue the repeats that no trial of ``sibling`` holds yet (or only as an interrupted FAIL); returns how
    many.  Sets the sibling's ``n_trials`` to every repeat asked for so far, so its workers stop there."""
    wanted = []
    for original in originals:
        for k in range(1, repeats_of(original, seeds) + 1):
            seed = repeat_seed(original.number, k)
            # a usual recipe's repeat keeps its baseline: the teacher as is again, on the test rows
            attrs = repeat_attrs(original.number, seed, baseline_of(original))
            wanted.append(siblings.Wanted((original.number, seed), original.params, attrs))
    return siblings.enqueue_missing(sibling, wanted, lambda t: (repeat_of(t), seed_of(t)))


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
    study = siblings.open_search_study(CONFIRM, name, storage, options.teacher_path)
    originals = siblings.chosen_trials(study, trials, front, CONFIRM.command)
    sibling = sibling_study(study, storage)
    added = enqueue_repeats(sibling, originals, seeds)
    usual = ", ".join(str(t.number) for t in originals if repeats_of(t, seeds) < seeds)
    log(
        f"confirm: {len(originals)} recipes x {seeds} seeds of study {name!r}: {added} repeats to run "
        f"(study {sibling.study_name!r})"
        + (f"; usual recipes (the teacher as is, untrained) once each: trials {usual}" if usual else "")
    )
    join_study(sibling.study_name, storage, options, log)
    wanted = {t.number for t in originals}
    return [r for r in summarize_repeats(study, load_existing_study(sibling.study_name, storage)) if r.trial in wanted]
