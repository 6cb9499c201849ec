"""The sibling studies that ``confirm`` and ``retrain`` keep beside a search study, in the same storage.

``NAME:confirm`` holds seed repeats of chosen recipes, ``NAME:retrain`` the same recipes distilled again on a long
schedule.  Each is marked by a study user attr naming its search study (``StudyRecord.repeats_of`` /
``retrains_of``); ``run`` refuses the suffixes, so no search study takes one of these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from latencysolver.results.records import StudyRecord, study_record


@dataclass(frozen=True)
class Sibling:
    command: str  # the latencysolver subcommand that makes it
    suffix: str
    marker: str  # the StudyRecord field that names its search study
    holds: str  # what its trials are, in words

    def name(self, search: str) -> str:
        return f"{search}{self.suffix}"

    def made_for(self, study: optuna.Study) -> str | None:
        """The search study whose sibling of this kind ``study`` is (None: not made by this command)."""
        value = getattr(study_record(study), self.marker)
        return value if isinstance(value, str) else None

    def mark(self, search: str) -> StudyRecord:
        marker: dict[str, Any] = {self.marker: search}
        return StudyRecord(**marker)


CONFIRM = Sibling("confirm", ":confirm", "repeats_of", "seed repeats")
RETRAIN = Sibling("retrain", ":retrain", "retrains_of", "retrained recipes")
SIBLINGS = (CONFIRM, RETRAIN)


def reserved_by(name: str) -> Sibling | None:
    """The kind of sibling study whose suffix ``name`` ends in: a name ``run`` must not take."""
    return next((kind for kind in SIBLINGS if name.endswith(kind.suffix)), None)
