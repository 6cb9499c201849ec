"""Do cheap trials rank recipes as their retrained versions do?  A study searched at its cheap budget, then every
searched recipe retrained at the long one (``latencysolver retrain``), and Spearman's rho of the two rankings.

    .venv/bin/python benchmarks/retrain_ranking.py [--config studies/boolq-pareto-narrowed.yaml]
        [--data ../shared/data/boolq-dev-split] [--trials 11] [--steps 1000] [--min-recipes 8]
        [--model M] [--cache-dir DIR] [--out benchmarks/results/retrain_ranking]

Both halves are the package's own commands on one SQLite file in ``--out`` (``study.db``), so the benchmark
resumes where it stopped: ``run`` finishes the trials the study still lacks, ``retrain`` runs only the recipes its
sibling study does not hold yet.  ``retrain``'s table and its rank-agreement lines (search validation against
retrained validation, and against retrained test) go to ``retrain.txt``; ``results.json`` keeps each recipe's three
scores and the seconds each half took.  The usual recipes (the teacher as is) have nothing to train and are not
ranked; the searched trials that finished must number at least ``--min-recipes``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna
from optuna.trial import TrialState

from latencysolver.cli import main as cli
from latencysolver.config.study import load_study_config
from latencysolver.results.attributes import baseline_of
from latencysolver.results.retrained import rank_agreements, summarize_retrained
from latencysolver.results.siblings import RETRAIN


def _cli(args: list[str], transcript: Path) -> float:
    """Run one latencysolver command in process, its output echoed and kept in ``transcript``; its seconds."""
    start, out = time.perf_counter(), io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(args)
    transcript.write_text(out.getvalue())
    print(out.getvalue(), end="")
    if code != 0:
        sys.exit(f"latencysolver {args[0]} exited {code}: see {transcript}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "studies" / "boolq-pareto-narrowed.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--trials", type=int, default=11, help="the study's n_trials (usual recipes included)")
    parser.add_argument("--steps", type=int, default=1000, help="the retrain budget")
    parser.add_argument("--min-recipes", type=int, default=8)
    parser.add_argument("--model")
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "retrain_ranking"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    common = ["--storage", storage, "--no-progress"]
    common += ["--cache-dir", args.cache_dir] if args.cache_dir else []
    name = load_study_config(args.config, data=args.data).name

    run = [args.config, "--data", args.data, "--trials", str(args.trials), *common]
    searched_s = _cli(["run", *run, *(["--model", args.model] if args.model else [])], out / "run.txt")
    study = optuna.load_study(study_name=name, storage=storage)
    recipes = [t.number for t in study.get_trials() if t.state == TrialState.COMPLETE and baseline_of(t) is None]
    if len(recipes) < args.min_recipes:
        sys.exit(f"{len(recipes)} searched trials finished, --min-recipes {args.min_recipes}: raise --trials")
    trials = ",".join(map(str, recipes))
    retrain = ["retrain", "--study", name, "--trials", trials, "--steps", str(args.steps), *common]
    retrained_s = _cli(retrain, out / "retrain.txt")

    sibling = optuna.load_study(study_name=RETRAIN.name(name), storage=storage)
    retrained = [r for r in summarize_retrained(study, sibling) if r.steps == args.steps]
    agreements = rank_agreements(retrained)
    results = {
        "config": args.config,
        "steps": args.steps,
        "seconds": {"run": searched_s, "retrain": retrained_s},
        "recipes": [
            {
                "trial": r.trial,
                "seed": r.seed,  # more than one per trial where `retrain --seeds` ran on the same storage
                "recipe": r.recipe,
                "search_steps": r.search.distill_steps,
                "search_validation": r.search.accuracy,
                "retrained_validation": r.retrained.accuracy,
                "retrained_test": r.retrained.test_accuracy,
                "speedup": r.retrained.speedup,
            }
            for r in retrained
        ],
        "rank_agreement": agreements
        if isinstance(agreements, str)
        else {
            split: {"n": a.n, "rho": a.rho, "interval": a.interval and a.interval.to_dict()}
            for split, a in agreements.items()
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out / 'results.json'}; the table and the rank agreement: {out / 'retrain.txt'}")


if __name__ == "__main__":
    main()
