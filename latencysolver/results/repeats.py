"""Seed repeats read back: each repeated recipe's search-time figures beside its repeats' mean ± sd.

``latencysolver confirm`` (``search/confirm.py``) writes the repeats as trials of the sibling study
``<name>:confirm``; ``export``'s card, the report and ``confirm`` itself read them through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from latencysolver.config.recipe import Recipe
from latencysolver.results.attributes import repeat_of
from latencysolver.results.front import get_trial
from latencysolver.results.records import trial_record, was_interrupted
from latencysolver.results.siblings import CONFIRM
from latencysolver.stats import PairedComparison, SeedSummary, summarize

SUFFIX = CONFIRM.suffix


REPEAT_SEED_BASE = 1_000_000  # above any search trial's number: a repeat never reuses the search's own seed


def repeat_seed(trial_number: int, k: int) -> int:
    """The seed of repeat ``k`` (1, 2, ...) of search trial ``trial_number``: distinct for every pair."""
    return REPEAT_SEED_BASE + 1000 * trial_number + k


def is_new_seed(seed: int | None) -> bool:
    """``seed`` is a repeat's (``repeat_seed``), not a search trial's own: its data order is drawn from it."""
    return seed is not None and seed >= REPEAT_SEED_BASE


def confirm_study_name(name: str) -> str:
    return CONFIRM.name(name)


@dataclass(frozen=True)
class RecipeRepeats:
    """One recipe: its search-time figures and the seed repeats' mean ± sd."""

    trial: int
    recipe: str
    search_accuracy: float  # the validation score the search selected it by
    search_speedup: float | None
    validation: SeedSummary | None  # None: no repeat finished
    test: SeedSummary | None
    speedup: SeedSummary | None
    test_vs_teacher: SeedSummary | None  # the repeats' paired differences to the teacher on test
    finished: int
    failed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON for an export's metrics: the summaries as ``SeedSummary.to_dict()`` (None where absent)."""
        out: dict[str, Any] = {
            "trial": self.trial,
            "recipe": self.recipe,
            "search_accuracy": self.search_accuracy,
            "search_speedup": self.search_speedup,
            "finished": self.finished,
            "failed": self.failed,
        }
        for key in ("validation", "test", "speedup", "test_vs_teacher"):
            summary = getattr(self, key)
            out[key] = summary.to_dict() if summary else None
        return out


def summarize_repeats(study: optuna.Study, sibling: optuna.Study | None) -> list[RecipeRepeats]:
    """One ``RecipeRepeats`` per search trial that has repeats, in trial order."""
    if sibling is None:
        return []
    groups: dict[int, list[FrozenTrial]] = {}
    for t in sibling.get_trials(deepcopy=False):
        number = repeat_of(t)
        if number is not None and not was_interrupted(t):
            groups.setdefault(number, []).append(t)
    out = []
    for number in sorted(groups):
        original = get_trial(study, number)
        done = [t for t in groups[number] if t.state == TrialState.COMPLETE]
        records = [trial_record(t) for t in done]
        original_record = trial_record(original)
        differences = [p.difference for r in records if (p := _paired(r.test_vs_teacher)) is not None]
        out.append(
            RecipeRepeats(
                trial=number,
                recipe=Recipe.from_dict(original_record.recipe_dict).describe() if original_record.recipe_dict else "",
                search_accuracy=original.values[0],
                search_speedup=original_record.speedup,
                validation=summary_or_none([t.values[0] for t in done]),
                test=summary_or_none([r.test_accuracy for r in records if r.test_accuracy is not None]),
                speedup=summary_or_none([r.speedup for r in records if r.speedup is not None]),
                test_vs_teacher=summary_or_none(differences),
                finished=len(done),
                failed=sum(t.state == TrialState.FAIL for t in groups[number]),
            )
        )
    return out


def summary_or_none(values: list[float]) -> SeedSummary | None:
    """``summarize(values)``, or None for no values (no seed finished, or none measured this figure)."""
    return summarize(values) if values else None


def _paired(raw: object) -> PairedComparison | None:
    return PairedComparison.from_dict(raw) if isinstance(raw, dict) else None


def find_repeats(study: optuna.Study, storage: BaseStorage | str) -> list[RecipeRepeats]:
    """The repeat figures of ``study``'s trials, when ``confirm`` ran on it ([] otherwise); reads only."""
    name = confirm_study_name(study.study_name)
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return []
    return summarize_repeats(study, optuna.load_study(study_name=name, storage=storage))
