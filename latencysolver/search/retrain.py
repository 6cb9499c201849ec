"""``latencysolver retrain``: search cheap, retrain the winners, as trials of a sibling study in the same storage.

A search distills every student for ``distillation.steps`` (a few hundred): enough to rank recipes, not what a
chosen one can reach.  ``retrain`` distills the chosen recipes again for ``--steps`` (default 1000) from the
teacher, over the train rows and the study's augmented rows (``data.augment``, as every student), with the seed
and data order of its search trial, and measures it with the search's protocol on validation and on the test
split (intervals, paired differences to the teacher).  In an elastic study the recipe is distilled per-trial from
the teacher, not sliced.  The retrained students are the trials of ``<name>:retrain`` (``results/siblings.py``):
each carries the search trial it retrains (user attr ``retrain_of``) and its steps (``retrain_steps``), so it
neither feeds the search's sampler nor sits on its front; ``latencysolver worker --study <name>:retrain`` runs them
on other machines, ``export --study <name>:retrain --trial K`` ships one, and a resumed ``retrain`` runs only the
(trial, steps, seed) retrains no trial holds yet (one stopped by Ctrl-C runs again).  ``seeds`` above 1 retrains
each recipe again with new seeds (``results.repeats.repeat_seed``, as ``confirm``'s repeats): one retrain, like one
search trial, is one draw of the data order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from latencysolver.errors import ConfigError
from latencysolver.results.attributes import baseline_of, retrain_attrs, retrain_of, seed_of
from latencysolver.results.records import trial_record
from latencysolver.results.repeats import repeat_seed
from latencysolver.results.retrained import Retrained, summarize_retrained
from latencysolver.results.siblings import RETRAIN
from latencysolver.results.storage import load_existing_study
from latencysolver.search import siblings
from latencysolver.search.preparation import RunOptions

Log = Callable[[str], None]

# About 9-24 minutes a recipe on a 2-core CPU (a 2-4 layer MiniLM student's step: 0.5-1.3 s there); 2,000 steps
# would take a 4-layer student about 45 minutes, and lifted a 2-layer one on validation but not on test
DEFAULT_STEPS = 1000


def retrain_seeds(original: FrozenTrial, seeds: int) -> list[int]:
    """The seeds of ``original``'s ``seeds`` retrains: its search trial's own, then ``confirm``'s new ones."""
    recipe = trial_record(original).recipe
    first = recipe.seed if recipe is not None else original.number  # a search trial's seed is its number
    return [first, *(repeat_seed(original.number, k) for k in range(1, seeds))]


def enqueue_retrains(
    sibling: optuna.Study, originals: Sequence[FrozenTrial], steps: int, log: Log = print, *, seeds: int = 1
) -> int:
    """Enqueue the retrains with ``steps`` that no trial of ``sibling`` holds yet (or only as an interrupted FAIL):
    ``seeds`` of each original, the first with its search trial's seed, the others with new ones; returns how
    many.  A usual recipe (the teacher as is, untrained) has nothing to train: skipped, with a line in ``log``."""
    wanted = []
    for original in originals:
        if baseline_of(original) is not None:
            log(f"retrain: trial {original.number} is a usual recipe (the teacher as is, untrained): nothing to train")
            continue
        for seed in retrain_seeds(original, seeds):
            attrs = retrain_attrs(original.number, steps, seed)
            wanted.append(siblings.Wanted((original.number, steps, seed), original.params, attrs))
    return siblings.enqueue_missing(sibling, wanted, lambda t: (*(retrain_of(t) or (None, None)), seed_of(t)))


def retrain(
    name: str,
    storage: str,
    *,
    trials: Sequence[int] | None = None,
    front: bool = False,
    steps: int = DEFAULT_STEPS,
    seeds: int = 1,
    options: RunOptions = RunOptions(),
    log: Log = print,
) -> list[Retrained]:
    """Retrain the chosen trials of study ``name`` for ``steps`` each, ``seeds`` times; returns each retrain's
    figures beside its search trial's."""
    from latencysolver.search.run import join_study

    for flag, value in (("--steps", steps), ("--seeds", seeds)):
        if value < 1:
            raise ConfigError(f"{flag}: expected a positive integer, got {value}", key=flag, value=value)
    study = siblings.open_search_study(RETRAIN, name, storage, options.teacher_path)
    originals = siblings.chosen_trials(study, trials, front, RETRAIN.command)
    sibling = siblings.sibling_study(RETRAIN, study, storage)
    added = enqueue_retrains(sibling, originals, steps, log, seeds=seeds)
    recipes = f"{len(originals)} recipe{'s' if len(originals) != 1 else ''}" + (
        f" x {seeds} seeds" if seeds > 1 else ""
    )
    log(f"retrain: {recipes} of study {name!r} for {steps} steps each: {added} to run (study {sibling.study_name!r})")
    join_study(sibling.study_name, storage, options, log)
    wanted = {(t.number, steps, seed) for t in originals for seed in retrain_seeds(t, seeds)}
    done = summarize_retrained(study, load_existing_study(sibling.study_name, storage))
    return [r for r in done if (r.trial, r.steps, r.seed) in wanted]
