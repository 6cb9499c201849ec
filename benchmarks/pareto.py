"""latencysolver against what people do without it, on one study's data, machine and run.

    .venv/bin/python benchmarks/pareto.py --config studies/boolq-pareto.yaml --data ../shared/data/boolq-dev-split
        [--out DIR] [--title NAME] [--trials N] [--steps N] [--storage URL] [--resume] [--skip-random]
        [--cache-dir DIR] [--teacher PATH] [--progress] [--sampler-seeds 0,1,2] [--confirm N] [--retrain STEPS]
        [--recipes RESULTS_JSON] [--target-speedup X] [--margin POINTS] [--test-points POINTS] [--wall-hours H]

``make bench-boolq`` and ``make bench-sst2`` run it on the two studies.

1. Loads the data and fine-tunes (or loads the cached) teacher: ``search.preparation.prepare``; the test split
   encoded and scored by the teacher too (``scoring_splits``).
2. Baselines, in this process and with the study's latency protocol: the teacher as it is (fp32 torch), in
   ONNX Runtime fp32, in ONNX Runtime with dynamic int8 (per-channel; what Hugging Face Optimum's one-command
   recipe does), and with torch's dynamic int8.  Each is converted by ``student.to_runnable``, scored on
   validation and test, and timed by ``latency.measure_paired`` against the fp32 torch teacher.
3. For each sampler seed (``--sampler-seeds``, default the YAML's): the study (``run_study``, the YAML's sampler)
   and the same study with ``RandomSampler`` and the same trial budget (``NAME-random``; seeds after the first
   add ``-seed<k>``), all in one storage.
4. For each feasible Pareto-front trial of the first seed's study: validation accuracy, p50 and paired speed-up
   as the trial recorded them, and test predictions measured here on the student loaded back from the trial's
   artifacts (``student.load_student``: the model as it ran, quantization included).  With ``--confirm N``,
   ``latencysolver confirm`` re-runs each front recipe with N new seeds (sibling study ``NAME:confirm``) and the
   table gains their mean ± sd on validation and test and of the speed-up.  With ``--retrain STEPS``,
   ``latencysolver retrain`` distills each front recipe again for STEPS (sibling ``NAME:retrain``) and the table
   gains its validation and test accuracy.
5. Every row's 95% intervals (Wilson) on validation and test, its paired difference to the fp32 teacher on the
   same rows (Newcombe), on validation also to the ORT int8 teacher (``results.scoring.score``); hypervolume of
   each study's feasible trials in (validation accuracy, speed-up) above a fixed reference point (the validation
   majority-class rate, 1.0x), as mean ± sd over sampler seeds; the targets, each said met or not.

``--recipes RESULTS_JSON`` runs no search: the front recipes of an earlier run (its stored params, or their
descriptions read back) run as enqueued trials of ``NAME-recipes`` and each gets ``--confirm`` seeds (default 3).

Writes ``results.md``, ``results.json``, ``front.html`` and ``front.png`` into ``--out`` (default
``benchmarks/results/<study name>``); the studies live in ``--out/study.db`` (artifacts in
``--out/study-artifacts/``), made fresh on every run unless ``--resume``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "benchmarks"))  # its helpers, pareto_*.py (a script run directly has them already)

import optuna
from pareto_measure import (
    BASELINES,
    INT8_BASELINE,
    REFERENCE,
    Row,
    add_retrained,
    add_statistics,
    front_rows,
    load_recipes,
    measure_baselines,
    pool_repeats,
)
from pareto_report import figure, markdown, print_results, write_plot
from pareto_targets import Goals, Target, hypervolume_target, int8_target, noise_warning, speed_target, wall_target

from latencysolver.config.study import StudyConfig, load_study_config
from latencysolver.errors import LatencySolverError, StorageError
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.results.front import completed_trials, feasible_trials, study_hypervolume
from latencysolver.search.confirm import confirm
from latencysolver.search.objective import objectives
from latencysolver.search.preparation import Prepared, RunOptions, prepare, scoring_splits
from latencysolver.search.retrain import retrain
from latencysolver.search.run import run_study


class Clock:
    """One progress line per phase, with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = {}
        self._last = self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.0f}s] {message}", flush=True)

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round(now - self._last, 1)
        self._last = now
        self.say(f"{phase}: done in {self.phases[phase]:.0f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", "--study", dest="config", default=str(REPO / "studies" / "boolq-pareto.yaml"), help="the study YAML"
    )
    parser.add_argument("--data", help="data folder (default: the study's data.source)")
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<study name>)")
    parser.add_argument("--title", help="the data set's name in titles (default: the data folder's name)")
    parser.add_argument("--trials", type=int, help="trial budget of each study (default: the YAML's n_trials)")
    parser.add_argument("--steps", type=int, help="distillation steps per trial (default: the YAML's)")
    parser.add_argument("--storage", help="Optuna storage URL (default: a fresh sqlite:///OUT/study.db)")
    parser.add_argument("--resume", action="store_true", help="continue the studies already in the storage")
    parser.add_argument("--skip-random", action="store_true", help="no random-search study (quick looks)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--teacher", help="fine-tuned teacher folder (default: the study's cached teacher)")
    parser.add_argument("--progress", action="store_true", help="show progress bars while training")
    parser.add_argument("--sampler-seeds", type=_seed_list, help="sampler seeds, comma-separated (default: the YAML's)")
    parser.add_argument("--confirm", type=int, default=0, metavar="N", help="N seed repeats of each front recipe")
    parser.add_argument("--retrain", type=int, default=0, metavar="STEPS", help="retrain each front recipe (0: no)")
    parser.add_argument("--recipes", metavar="RESULTS_JSON", help="no search: run an earlier run's front recipes")
    goals = Goals()
    parser.add_argument("--target-speedup", type=float, default=goals.speedup, help="the speed target's x")
    parser.add_argument("--margin", type=float, default=goals.margin * 100, help="non-inferiority margin, points")
    parser.add_argument("--test-points", type=float, default=goals.test_points, help="test within this of teacher")
    parser.add_argument("--wall-hours", type=float, default=goals.wall_hours, help="the wall-time target")
    args = parser.parse_args(argv)
    for name in ("confirm", "retrain"):
        if getattr(args, name) < 0:
            parser.error(f"--{name}: expected a count >= 0, got {getattr(args, name)}")
    if args.recipes and not args.confirm:
        args.confirm = 3
    return args


def _seed_list(text: str) -> list[int]:
    seeds = [int(part) for part in text.split(",") if part.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(text)
    return seeds


def goals_of(args: argparse.Namespace) -> Goals:
    return Goals(args.target_speedup, args.margin / 100, args.test_points, wall_hours=args.wall_hours)


def load_config(args: argparse.Namespace) -> tuple[StudyConfig, Path]:
    """The study, its storage in ``--out`` (default: benchmarks/results/<name>), and that folder (made)."""
    name = load_study_config(args.config, data=args.data).name
    out = Path(args.out or REPO / "benchmarks" / "results" / name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{out / 'study.db'}"
    config = load_study_config(args.config, data=args.data, n_trials=args.trials, storage=storage)
    if args.steps is not None:
        if args.steps < 1:
            raise LatencySolverError(f"--steps: expected a positive integer, got {args.steps!r}")
        config = dataclasses.replace(config, distillation=dataclasses.replace(config.distillation, steps=args.steps))
    return config, out


def seeded(config: StudyConfig, sampler: str, seed: int, first: bool) -> StudyConfig:
    """The study of one arm: ``sampler`` with ``seed``.  The first seed keeps the plain names (NAME, and
    NAME-random for random search beside another sampler); the others get ``-seed<k>``."""
    compared = sampler != config.sampler.name
    name = config.name + ("-random" if compared else "") + ("" if first else f"-seed{seed}")
    return dataclasses.replace(config, name=name, sampler=dataclasses.replace(config.sampler, name=sampler, seed=seed))


def samplers_of(config: StudyConfig, args: argparse.Namespace) -> list[str]:
    """The study's sampler, and random search beside it unless skipped, recipes are re-run, or it is random."""
    skip = args.skip_random or args.recipes or config.sampler.name == "random"
    return [config.sampler.name] + ([] if skip else ["random"])


def run_recipes(
    config: StudyConfig, recipes: list[tuple[str, dict[str, Any]]], options: RunOptions, log
) -> optuna.Study:
    """Study NAME-recipes: one trial per recipe, enqueued with its params, run with the study's own seed."""
    config = dataclasses.replace(config, name=f"{config.name}-recipes", n_trials=len(recipes))
    _, directions = objectives(config.latency.objective)
    study = optuna.create_study(
        study_name=config.name, storage=config.storage, directions=directions, load_if_exists=True
    )
    if not study.get_trials(deepcopy=False):
        for name, params in recipes:
            study.enqueue_trial(params, user_attrs={"recipe_from": name})
    return run_study(config, options, log=log)


def fresh_storage(args: argparse.Namespace, out: Path, names: list[str], storage_url: str) -> None:
    """Unless --resume: remove the default SQLite file and its artifacts; refuse to reuse a given storage."""
    if args.resume:
        return
    if args.storage is None:
        (out / "study.db").unlink(missing_ok=True)
        shutil.rmtree(out / "study-artifacts", ignore_errors=True)
        return
    existing = set(optuna.get_all_study_names(storage_url))
    taken = [n for n in names if n in existing]
    if taken:
        raise StorageError(
            f"--storage {args.storage!r} already has study {taken[0]!r}; pass --resume to continue "
            "it or use another storage"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        return run(args, Clock())
    except LatencySolverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    config, out = load_config(args)
    goals = goals_of(args)
    seeds = args.sampler_seeds or [config.sampler.seed]
    samplers = samplers_of(config, args)
    arms = [seeded(config, sampler, seed, i == 0) for i, seed in enumerate(seeds) for sampler in samplers]
    recipes = load_recipes(args.recipes, config.search_space.to_dict()) if args.recipes else []
    arms = [] if args.recipes else arms
    names = [a.name for a in arms] + ([f"{config.name}-recipes"] if args.recipes else [])
    fresh_storage(args, out, names + [f"{n}:{kind}" for n in names for kind in ("confirm", "retrain")], config.storage)
    options = RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher, progress=args.progress)
    if args.recipes:
        budget = f"{len(recipes)} recipes from {args.recipes} x (1 + {args.confirm} seeds)"
    else:
        budget = (
            f"{config.n_trials} trials per study x {len(arms)} ({', '.join(samplers)}; sampler seeds "
            f"{', '.join(map(str, seeds))})"
            + (f", then {args.confirm} seed repeats of each front recipe" if args.confirm else "")
        )
    budget += f", {config.distillation.steps} distillation steps per trial"
    budget += f", each front recipe retrained for {args.retrain} steps" if args.retrain else ""
    clock.say(f"benchmark: study {config.name!r} ({config.config_file}), {budget}; out {out}")

    prepared = prepare(config, options, log=clock.say)
    splits, _ = scoring_splits(prepared, config, options, log=clock.say)
    test = splits.get("test")
    clock.done("data and teacher")
    with tempfile.TemporaryDirectory() as tmp:
        baselines = measure_baselines(prepared, splits, config, Path(tmp), clock.say)
    clock.done("baselines")

    studies: dict[str, optuna.Study] = {}
    for arm in arms:
        studies[arm.name] = run_study(arm, options, log=clock.say)
        clock.done(f"study {arm.name}")
    if args.recipes:
        study = run_recipes(config, recipes, options, clock.say)
        clock.done(f"study {study.study_name}")
    else:
        study = studies[config.name]
    random_study = studies.get(f"{config.name}-random")

    storage = optuna.storages.RDBStorage(config.storage)
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    chosen = completed_trials(study) if args.recipes else None
    front = front_rows(study, storage, test, prepared.pad_id, config.latency.threads, trials=chosen)
    for row, (name, _) in zip(front, recipes, strict=False):  # --recipes: which earlier recipe each runs again
        row.name = f"{name}, run again as trial {row.trial}"
    clock.done("test predictions of the front")
    trials = [r.trial for r in front if r.trial is not None]
    if args.confirm and front:
        repeats = confirm(
            study.study_name, config.storage, trials=trials, seeds=args.confirm, options=options, log=clock.say
        )
        by_trial = {r.trial: r.to_dict() for r in repeats}
        for row in front:
            row.repeats = by_trial.get(row.trial)
        clock.done(f"{args.confirm} seed repeats of {len(front)} recipes")
        pool_repeats(front, study, storage, splits, prepared.pad_id, baselines[0], config.latency.threads)
        clock.done("seed-pooled paired differences")
    if args.retrain and front:
        retrained = retrain(
            study.study_name, config.storage, trials=trials, steps=args.retrain, options=options, log=clock.say
        )
        add_retrained(front, retrained)
        clock.done(f"{len(front)} recipes retrained for {args.retrain} steps")
    rows = baselines + front
    add_statistics(rows, splits)

    reference = (prepared.data.validation.majority_rate(), 1.0)
    by_sampler: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        s = studies[arm.name]
        by_sampler.setdefault(arm.sampler.name, []).append(
            {
                "study": arm.name,
                "seed": arm.sampler.seed,
                "hypervolume": study_hypervolume(s, reference),
                "feasible": len(feasible_trials(s)),
                "trials": len(s.get_trials(deepcopy=False)),
            }
        )
    title = args.title or Path(config.data.source).name
    fig = figure(study, random_study, front, baselines, reference, goals, title)
    plot_warning = write_plot(fig, out, clock.say)
    clock.done("plot")

    wall = clock.elapsed()
    by_name = {b.name: b for b in baselines}
    targets = [speed_target(front, by_name[REFERENCE], goals), int8_target(front, by_name[INT8_BASELINE], goals)]
    if not args.recipes and config.sampler.name != "random":  # no sampler to compare with random search
        hv = {k: [a["hypervolume"] for a in v] for k, v in by_sampler.items()}
        targets.append(hypervolume_target(config.sampler.name, hv[config.sampler.name], hv.get("random", [])))
    targets.append(wall_target(wall, budget, goals))
    results = _results(config, prepared, test, rows, front, study, reference, by_sampler, targets, goals, args)
    results.update(
        data=results["data"] | {"name": title},
        wall_seconds=round(wall, 1),
        phases_seconds=clock.phases,
        budget=budget,
        plot_warning=plot_warning,
    )
    print_results(rows, results)
    (out / "results.md").write_text(markdown(rows, results), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    clock.say(f"wrote {out / 'results.md'}, results.json, front.html" + ("" if plot_warning else ", front.png"))
    return results


def _results(
    config: StudyConfig,
    prepared: Prepared,
    test: Any,
    rows: list[Row],
    front: list[Row],
    study: optuna.Study,
    reference: tuple[float, float],
    by_sampler: dict[str, list[dict[str, Any]]],
    targets: list[Target],
    goals: Goals,
    args: argparse.Namespace,
) -> dict[str, Any]:
    lat = config.latency
    data = prepared.data
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "arguments": {k: v for k, v in vars(args).items()},
        "study": {
            "name": study.study_name,
            "config_file": config.config_file,
            "sampler": config.sampler.name,
            "seed": config.sampler.seed,
            "trials": len(study.get_trials(deepcopy=False)),
            "n_trials": config.n_trials,
            "sampler_seeds": args.sampler_seeds or [config.sampler.seed],
            "distillation_steps": config.distillation.steps,
            "search_space": config.search_space.to_dict(),
            "storage": config.storage,
        },
        "data": {
            "source": data.source,
            "train": len(data.train),
            "validation": len(data.validation),
            "test": len(test) if test is not None else 0,
            "validation_majority_rate": data.validation.majority_rate(),
            "test_majority_rate": data.test.majority_rate() if data.test is not None else None,
        },
        "teacher": {"path": str(prepared.teacher.path), "key": prepared.teacher.key},
        "protocol": (
            f"batch 1, {lat.threads} threads, {lat.rows} seeded validation rows (seed {lat.seed}), "
            f"{lat.warmup} warm-up and {lat.repeats} timed passes; speed-up paired call by call against "
            "the fp32 torch teacher (median ratio)"
        ),
        "hardware": hardware_fingerprint(lat.threads).describe(),
        "baselines": [r.record() | {"setting": BASELINES[r.name][0]} for r in rows if r.trial is None],
        "front": [r.record() for r in front],
        "statistics": (
            f"95% intervals: Wilson, per split; paired differences: Newcombe's interval for paired proportions on "
            f"the same rows; non-inferior: one-sided {goals.confidence:.0%} lower bound above -{goals.margin:g}"
        ),
        "goals": dataclasses.asdict(goals),
        "hypervolume": {
            "reference_point": {"accuracy": reference[0], "speedup": reference[1]},
            "by_sampler": by_sampler,
        },
        "targets": [dataclasses.asdict(t) for t in targets],
        "noise_warning": noise_warning(rows),
    }


if __name__ == "__main__":
    main()
