"""Search: where Optuna drives the work.  ``preparation.py`` builds what every trial shares (data, encoded splits,
the teacher, what each student kind needs); ``suggest.py`` is the only code that calls ``trial.suggest_*``;
``objective.py`` runs one trial (its student by its kind, ``kinds/``; quantize, evaluate, time) and writes its
record; ``run.py`` creates, resumes or joins a study (storage checks first, hardware gating, the sampler);
``workers.py`` runs trials safely from many processes on one storage (heartbeats, retries, an exact trial
count)."""

from latencysolver.search.preparation import Prepared, RunOptions, prepare
from latencysolver.search.run import join_study, run_study
from latencysolver.search.suggest import suggest_recipe

__all__ = ["Prepared", "RunOptions", "join_study", "prepare", "run_study", "suggest_recipe"]
