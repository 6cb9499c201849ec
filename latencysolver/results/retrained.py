"""Retrained recipes read back: each beside the search trial it retrains, both budgets side by side.

``latencysolver retrain`` (``search/retrain.py``) writes them as trials of the sibling study ``<name>:retrain``;
``retrain`` itself and ``export``'s card read them through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from latencysolver.config.recipe import Recipe
from latencysolver.results.attributes import retrain_of, seed_of
from latencysolver.results.front import get_trial
from latencysolver.results.records import TrialRecord, trial_record, was_interrupted
from latencysolver.results.repeats import summary_or_none
from latencysolver.results.siblings import RETRAIN
from latencysolver.stats import MIN_RECIPES, PairedComparison, RankAgreement, SeedSummary, rank_agreement, summarize


@dataclass(frozen=True)
class Retrained:
    """One retrained recipe: the search trial's record and the retrained trial's (``number`` in the sibling)."""

    trial: int  # the search trial
    steps: int  # what it was retrained for
    number: int
    state: TrialState
    recipe: str
    search: TrialRecord
    retrained: TrialRecord
    seed: int | None = None  # the retrain's seed (the search trial's own for the first)


@dataclass(frozen=True)
class RetrainedSeeds:
    """One recipe retrained with several seeds at one budget: the seed mean ± sd of what each retrain measured."""

    trial: int
    steps: int
    validation: SeedSummary
    test: SeedSummary | None
    test_vs_teacher: SeedSummary | None  # each retrain's paired difference to the teacher on test
    speedup: SeedSummary | None

    def describe(self) -> str:
        parts = [f"validation {self.validation.describe()}"]
        parts += [f"test {self.test.describe()}"] if self.test else []
        if self.test_vs_teacher:
            parts.append(f"test vs teacher {self.test_vs_teacher.describe(scale=100, digits=1)} points")
        parts += [f"speed-up {self.speedup.describe(digits=2, suffix='x')}"] if self.speedup else []
        return f"trial {self.trial}, {self.steps} steps, {self.validation.n} seeds: " + ", ".join(parts)


def summarize_retrained(study: optuna.Study, sibling: optuna.Study) -> list[Retrained]:
    """One ``Retrained`` per (search trial, steps, seed) that ``sibling`` holds, in that order: its COMPLETE trial,
    else its latest (interrupted ones left out: they are missing, and a resumed ``retrain`` runs them again)."""
    latest: dict[tuple[int, int, int], FrozenTrial] = {}
    for t in sibling.get_trials(deepcopy=False):
        key = retrain_of(t)
        if key is None or was_interrupted(t):
            continue
        seed = seed_of(t)
        full = (*key, -1 if seed is None else seed)
        held = latest.get(full)
        if held is None or held.state != TrialState.COMPLETE:
            latest[full] = t
    return [_retrained(study, t) for _, t in sorted(latest.items())]


def seed_summaries(retrained: list[Retrained]) -> list[RetrainedSeeds]:
    """Per (search trial, steps) with at least two finished retrains: their seed mean ± sd."""
    groups: dict[tuple[int, int], list[TrialRecord]] = {}
    for r in retrained:
        if r.state == TrialState.COMPLETE and r.retrained.accuracy is not None:
            groups.setdefault((r.trial, r.steps), []).append(r.retrained)
    out = []
    for (trial, steps), records in sorted(groups.items()):
        if len(records) < 2:
            continue
        differences = [
            PairedComparison.from_dict(r.test_vs_teacher).difference
            for r in records
            if isinstance(r.test_vs_teacher, dict)
        ]
        out.append(
            RetrainedSeeds(
                trial=trial,
                steps=steps,
                validation=summarize([r.accuracy for r in records if r.accuracy is not None]),
                test=summary_or_none([r.test_accuracy for r in records if r.test_accuracy is not None]),
                test_vs_teacher=summary_or_none(differences),
                speedup=summary_or_none([r.speedup for r in records if r.speedup is not None]),
            )
        )
    return out


def _retrained(study: optuna.Study, t: FrozenTrial) -> Retrained:
    key = retrain_of(t)
    assert key is not None  # summarize_retrained keeps only these
    search = trial_record(get_trial(study, key[0]))
    return Retrained(
        trial=key[0],
        steps=key[1],
        number=t.number,
        state=t.state,
        recipe=Recipe.from_dict(search.recipe_dict).describe() if search.recipe_dict else "",
        search=search,
        retrained=trial_record(t),
        seed=seed_of(t),
    )


def rank_agreements(retrained: list[Retrained]) -> dict[str, RankAgreement] | str:
    """Whether the search's cheap validation scores rank the recipes as their retrained scores do: Spearman's rho
    against the retrained validation accuracy (the same rows, so their noise is shared) and against the retrained
    test accuracy (rows neither budget chose on); a recipe retrained with several seeds by their mean.  A line
    saying why not where fewer than 4 recipes finished."""
    scored: dict[str, list[tuple[float, float]]] = {}
    for split in ("validation", "test"):
        by_trial: dict[int, tuple[float, list[float]]] = {}
        for r in retrained:
            value = r.retrained.accuracy if split == "validation" else r.retrained.test_accuracy
            if r.state == TrialState.COMPLETE and r.search.accuracy is not None and value is not None:
                by_trial.setdefault(r.trial, (r.search.accuracy, []))[1].append(value)
        scored[split] = [(cheap, sum(values) / len(values)) for cheap, values in by_trial.values()]
    if len(scored["validation"]) < MIN_RECIPES:
        return f"rank agreement: needs {MIN_RECIPES} retrained recipes, {len(scored['validation'])} finished"
    return {
        split: rank_agreement([cheap for cheap, _ in pairs], [again for _, again in pairs])
        for split, pairs in scored.items()
        if len(pairs) >= MIN_RECIPES
    }


def retrain_figures(sibling: optuna.Study, trial: FrozenTrial, storage: BaseStorage | str) -> dict[str, Any] | None:
    """Both budgets of ``trial`` when it is a retrained recipe of a ``retrain`` study (for the export card);
    None for any other trial.  The search trial's figures are None where its study is no longer in ``storage``."""
    key, search = retrain_of(trial), RETRAIN.made_for(sibling)
    if key is None or search is None:
        return None
    original = _search_record(search, key[0], storage)
    return {
        "search_study": search,
        "search_trial": key[0],
        "search_steps": original.distill_steps if original else None,
        "search_accuracy": original.accuracy if original else None,
        "steps": key[1],
        "distill_steps": trial_record(trial).distill_steps,  # fewer than steps: stopped at the accuracy floor
        "seed": seed_of(trial),
    }


def _search_record(name: str, number: int, storage: BaseStorage | str) -> TrialRecord | None:
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return None
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    return trial_record(trials[number]) if 0 <= number < len(trials) else None
