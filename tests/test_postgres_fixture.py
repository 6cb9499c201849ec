"""The ``postgres_url`` fixture: a fresh, empty PostgreSQL database that Optuna can use from several handles.

Skipped without ``LATENCYSOLVER_TEST_POSTGRES`` (``make test`` sets it when it can start a server; .ci/run always
does, and sets ``LATENCYSOLVER_REQUIRE_POSTGRES=1`` so that the skip becomes a failure there).
"""

from __future__ import annotations

import optuna
import sqlalchemy as sa


def test_database_is_reachable_and_empty(postgres_url):
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def test_each_test_gets_its_own_database(postgres_url):
    # a study made by another test would show up here if the databases were shared
    assert optuna.get_all_study_summaries(storage=postgres_url) == []


def test_optuna_study_round_trip(postgres_url):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="fixture-check", storage=postgres_url, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(lambda trial: trial.suggest_float("x", -1.0, 1.0) ** 2, n_trials=3)

    again = optuna.load_study(study_name="fixture-check", storage=postgres_url)
    trials = again.get_trials(deepcopy=False)
    assert len(trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.value for t in trials] == [t.value for t in study.get_trials(deepcopy=False)]
