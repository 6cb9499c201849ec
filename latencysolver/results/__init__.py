"""Results: what a study holds, read back.  ``records.py`` is the one module that knows Optuna's user-attr
keys: trials and studies become typed ``TrialRecord`` / ``StudyRecord`` values, and ``search`` writes through
it.  ``storage.py`` checks and opens the storage and the artifact store without writing; ``front.py`` is the
feasible Pareto front (feasibility from Optuna's constraints); ``selection.py`` the ``--best`` rules;
``report.py`` with ``figures.py`` the HTML page and the PNG; ``dashboard.py`` the study note and
optuna-dashboard."""

from latencysolver.results.front import feasible_trials, front_rows, hardware_warning, pareto_trials
from latencysolver.results.records import StudyRecord, TrialRecord, is_feasible, study_record, trial_record
from latencysolver.results.selection import Selection, select_best, select_under_latency
from latencysolver.results.storage import check_storage, load_existing_study, open_existing_study

__all__ = [
    "Selection",
    "StudyRecord",
    "TrialRecord",
    "check_storage",
    "feasible_trials",
    "front_rows",
    "hardware_warning",
    "is_feasible",
    "load_existing_study",
    "open_existing_study",
    "pareto_trials",
    "select_best",
    "select_under_latency",
    "study_record",
    "trial_record",
]
