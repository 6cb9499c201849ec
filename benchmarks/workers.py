"""What does the study's storage cost per trial?  SQLite vs PostgreSQL, and PostgreSQL with 1, 2, 4 workers.

    .venv/bin/python benchmarks/workers.py [--postgres URL] [--trials 200] [--workers 1,2,4]
                                                    [--worker-trials 200] [--sampler random|nsga2]

The objective is trivial (no model at all): it suggests the six parameters of the search space and sets the
same user attributes ``latencysolver.search.objective.run_trial`` sets on a finished trial (recipe, F1, latency
figures, hardware fingerprint, parameter counts, kept layers, ...), so what is timed is Optuna plus storage.

1. Overhead: ``--trials`` trials with ``study.optimize`` in one process on in-memory storage (the floor: Optuna
   and the sampler alone), SQLite (a file in a temporary directory) and PostgreSQL; prints total seconds and
   milliseconds per trial.
2. Workers: on PostgreSQL, ``--worker-trials`` trials in all split over 1, 2 and 4 worker processes, each
   ``optuna.load_study`` + ``optimize`` as ``latencysolver run`` workers do; prints wall seconds (from the
   moment all workers are connected until the last finishes) and trials per hour.

PostgreSQL comes from ``--postgres`` or ``LATENCYSOLVER_TEST_POSTGRES`` (``.ci/postgres.sh start`` makes a
throwaway server on 127.0.0.1:55432, with fsync off: a real server with durable commits is slower per write).
Without one, only the in-memory and SQLite rows are printed.  Studies are made under unique names and deleted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid

import optuna
from optuna.trial import TrialState

from latencysolver.config.recipe import Recipe
from latencysolver.results.records import TrialRecord, write_recipe, write_trial_record

OBJECTIVE_NAMES = ("accuracy", "speedup")


def objective(trial: optuna.Trial) -> tuple[float, float]:
    """Suggests like latencysolver's search space and records the attributes a real trial records."""
    prune = trial.suggest_categorical("prune_ratio", [0.0, 0.25, 0.5])
    dtype = trial.suggest_categorical("quant_dtype", ["fp32", "bf16", "int8", "ort-int8"])
    skip = trial.suggest_categorical("skip_prob", [0.0, 0.34, 0.5])
    rank = trial.suggest_categorical("rank", ["off", 64, 128])
    temperature = trial.suggest_float("temperature", 1.0, 5.0)
    alpha = trial.suggest_float("alpha", 0.2, 0.9)
    layers = [i for i in range(6) if i % 3 != 2 or skip == 0.0]
    speedup = (1.0 + 4 * prune + 2 * skip) * (1.0 if dtype == "fp32" else 2.0)
    accuracy = 0.7 - 0.05 * prune - 0.04 * skip + 0.001 * temperature
    write_recipe(
        trial,
        Recipe(
            prune_ratio=prune,
            prune_kind="structured",
            quant_dtype=dtype,
            skip_prob=skip,
            rank=None if rank == "off" else rank,
            temperature=temperature,
            alpha=alpha,
        ),
    )
    write_trial_record(
        trial,
        TrialRecord(
            number=trial.number,
            state=TrialState.RUNNING,
            f1=accuracy + 0.08,
            latency_p50_ms=19.0 / speedup,
            latency_p90_ms=21.0 / speedup,
            latency_cv=0.01,
            speedup=speedup,
            speedup_cv=0.012,
            reference_p50_ms=19.0,
            hardware={
                "cpu_model": "AMD EPYC",
                "cpu_flags": ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"],
                "logical_cpus": 2,
                "threads": 2,
                "device": "cpu",
                "torch": "2.13.0+cpu",
                "onnxruntime": "1.31.1",
                "transformers": "5.24.0",
                "python": "3.11.7",
            },
            hardware_key="7222e4459ff6",
            parameters=17_392_898,
            nonzero_parameters=17_000_000,
            size_bytes=53_400_000,
            layers=len(layers),
            kept_layers=tuple(layers),
            distill_steps=200,
            distill_final_loss=0.31,
            degenerate=False,
            seconds=0.0,
            constraints={"min_accuracy": 0.62 - accuracy, "max_latency_ms": 0.0},
        ),
    )
    return accuracy, speedup


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def create_study(storage: str | optuna.storages.BaseStorage, sampler: str) -> optuna.Study:
    return optuna.create_study(
        study_name=f"storage-overhead-{uuid.uuid4().hex[:10]}",
        storage=storage,
        directions=["maximize", "maximize"],
        sampler=make_sampler(sampler, 0),
    )


def time_storage(storage: str | optuna.storages.BaseStorage, trials: int, sampler: str) -> float:
    study = create_study(storage, sampler)
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    seconds = time.perf_counter() - start
    assert len(study.trials) == trials
    if isinstance(storage, str):
        optuna.delete_study(study_name=study.study_name, storage=storage)
    return seconds


def worker(url: str, study_name: str, n_trials: int, seed: int, sampler: str, barrier, results) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=url, sampler=make_sampler(sampler, seed))
    study.trials  # noqa: B018 - connects the storage before the clock starts
    barrier.wait()
    study.optimize(objective, n_trials=n_trials)
    results.put(time.perf_counter())


def time_workers(url: str, workers: int, total: int, sampler: str) -> tuple[int, float]:
    study = create_study(url, sampler)
    ctx = mp.get_context("spawn")  # no SQLAlchemy engine or connection crosses a fork
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    share = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    procs = [
        ctx.Process(target=worker, args=(url, study.study_name, n, i + 1, sampler, barrier, results))
        for i, n in enumerate(share)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    start = time.perf_counter()
    ends = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a worker exited with {proc.exitcode}")
    finished = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    optuna.delete_study(study_name=study.study_name, storage=url)
    return finished, max(ends) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LATENCYSOLVER_TEST_POSTGRES", ""),
        help="postgresql+psycopg:// URL (default: $LATENCYSOLVER_TEST_POSTGRES)",
    )
    parser.add_argument("--trials", type=int, default=200, help="trials per storage in the overhead table")
    parser.add_argument("--workers", default="1,2,4", help="worker-process counts to time on PostgreSQL")
    parser.add_argument("--worker-trials", type=int, default=200, help="trials in all, per worker count")
    parser.add_argument(
        "--sampler",
        choices=["random", "nsga2"],
        default="random",
        help="random isolates the storage; nsga2 (the default sampler of studies) adds its reads",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    print(
        f"optuna {optuna.__version__}, sampler {args.sampler}, {len(os.sched_getaffinity(0))} CPUs; "
        f"trivial 2-objective trial with run_trial's 19 user attrs and 2 constraints"
    )
    print(f"{'storage':<12} {'trials':>6} {'total s':>8} {'ms/trial':>9}")
    rows = [("in-memory", optuna.storages.InMemoryStorage())]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("sqlite", f"sqlite:///{tmp}/bench.db"))
        if args.postgres:
            rows.append(("postgresql", args.postgres))
        for name, storage in rows:
            seconds = time_storage(storage, args.trials, args.sampler)
            print(f"{name:<12} {args.trials:>6} {seconds:>8.2f} {1000 * seconds / args.trials:>9.2f}", flush=True)

    if not args.postgres:
        print("no PostgreSQL (--postgres or LATENCYSOLVER_TEST_POSTGRES): worker-process timings skipped")
        return
    print()
    print(f"{'workers':>7} {'trials':>6} {'wall s':>7} {'trials/hour':>12}   (PostgreSQL, worker processes)")
    for workers in (int(w) for w in args.workers.split(",")):
        finished, wall = time_workers(args.postgres, workers, args.worker_trials, args.sampler)
        print(f"{workers:>7} {finished:>6} {wall:>7.2f} {3600 * finished / wall:>12,.0f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
