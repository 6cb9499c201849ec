"""The CNN student with each issue-20 addition alone and all together: does any of them make it learn?

    .venv/bin/python benchmarks/cnn.py [--config studies/boolq-quick.yaml] [--data ../shared/data/boolq-dev-split]
        [--seeds 0,1,2] [--arms base,pair,representation,augment,all] [--augment 4] [--weight 1.0]
        [--out benchmarks/results/cnn] [--cache-dir DIR]

Each arm is the study's ``cnn:`` block with the three additions off (``base``), one of them on (``pair_aware:
true``, ``representation_weight``, ``augment``) or all three; each seed builds and distills the CNN as a trial does
(``students.train_student``, the seed drawing the CNN's weights and the data order), fp32 torch. Per arm: validation
and test accuracy of every seed with its Wilson interval and the paired difference to the teacher on the same rows,
the seed mean ± sd, and the paired speed-up over the fp32 teacher (seed 0; the shapes of all seeds are the same).
The target (issue 20): a CNN ≥ 15x the teacher's speed whose seed-mean accuracy is ≥ 3 points above the majority
class on validation and on test. Writes ``results.md`` and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from latencysolver.config.recipe import Recipe
from latencysolver.config.space import Fixed
from latencysolver.config.study import StudyConfig, load_study_config
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import latency_inputs, measure_paired
from latencysolver.results.scoring import markdown_table, score_model
from latencysolver.search.kinds import train_student
from latencysolver.search.preparation import RunOptions, prepare, scoring_splits, standalone_context

ARMS = ("base", "pair", "representation", "augment", "all")
COLUMNS = (
    "arm",
    "extra rows",
    "validation (mean ± sd over seeds)",
    "above majority",
    "test (mean ± sd)",
    "above majority",
    "speed-up",
    "seeds: validation [95%] / test [95%]",
)


def arm_config(config: StudyConfig, arm: str, augment: int, weight: float) -> StudyConfig:
    off = {"pair_aware": False, "representation_weight": 0.0, "augment": 0}  # each arm says all three
    changes: dict[str, Any] = {
        "base": off,
        "pair": {**off, "pair_aware": True},
        "representation": {**off, "representation_weight": weight},
        "augment": {**off, "augment": augment},
        "all": {"pair_aware": True, "representation_weight": weight, "augment": augment},
    }[arm]
    space = dataclasses.replace(config.search_space, architecture=Fixed("cnn"))  # prepare() builds the CNN's targets
    return dataclasses.replace(config, cnn=dataclasses.replace(config.cnn, **changes), search_space=space)


def run_arm(config: StudyConfig, seeds: list[int], options: RunOptions, tmp: Path) -> dict[str, Any]:
    prepared = prepare(config, options, log=lambda _: None)
    teacher, pad_id = prepared.teacher.model.eval(), prepared.pad_id
    splits, teacher_predictions = scoring_splits(prepared, config, options, log=lambda _: None)
    inputs = latency_inputs(prepared.validation, config.latency, pad_id)
    ctx = standalone_context(config, prepared, inputs, str(tmp))
    runs = []
    for seed in seeds:
        start = time.perf_counter()
        recipe = Recipe(architecture="cnn", temperature=2.0, alpha=0.5, seed=seed)
        model = train_student(ctx, recipe, reseed=True).model.eval()
        run: dict[str, Any] = {"seed": seed, "seconds": round(time.perf_counter() - start, 1)}
        for name, scored in score_model(model, splits, teacher_predictions, pad_id=pad_id).items():
            run[name] = scored.interval.to_dict()
            run[f"{name}_vs_teacher"] = scored.to_dict()["vs_teacher"]
        if not runs:
            run["speedup"] = measure_paired(model, teacher, inputs, config.latency).speedup
        runs.append(run)
        print(f"    seed {seed}: " + ", ".join(f"{n} {run[n]['estimate']:.3f}" for n in splits), flush=True)
    return {
        "majority": {n: max(s.labels.count(k) for k in set(s.labels)) / len(s) for n, s in splits.items()},
        "extra_rows": len(prepared.augmented.split) if prepared.augmented is not None else 0,
        "runs": runs,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def markdown(results: dict[str, Any], hardware: str) -> str:
    title = f"# The CNN student with each issue-20 addition (benchmarks/cnn.py)\n\nHost: {hardware}.\n\n"
    rows = []
    for arm, r in results.items():
        cells = []
        for split in ("validation", "test"):
            values = [run[split]["estimate"] for run in r["runs"] if split in run]
            cells += (
                ["—", "—"]
                if not values
                else [spread(values), f"{100 * (statistics.mean(values) - r['majority'][split]):+.1f} pts"]
            )
        seeds = "; ".join(
            " / ".join(
                f"{run[s]['estimate']:.3f} [{run[s]['low']:.3f}, {run[s]['high']:.3f}]"
                for s in ("validation", "test")
                if s in run
            )
            for run in r["runs"]
        )
        rows.append((arm, r["extra_rows"], *cells, f"{r['runs'][0]['speedup']:.1f}x", seeds))
    return title + markdown_table(COLUMNS, rows, left=len(COLUMNS))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "studies" / "boolq-quick.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--augment", type=int, default=4, help="pairs per train row in the augment arms")
    parser.add_argument("--weight", type=float, default=1.0, help="representation_weight in those arms")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cnn"))
    parser.add_argument("--cache-dir")
    args = parser.parse_args(argv)
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        parser.error(f"--arms: unknown arm {unknown[0]!r} (known: {', '.join(ARMS)})")
    base = load_study_config(args.config, data=args.data)
    hardware = hardware_fingerprint(base.latency.threads).describe()
    print(f"hardware: {hardware}", flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for arm in args.arms.split(","):
            print(f"  {arm}", flush=True)
            config = arm_config(base, arm, args.augment, args.weight)
            results[arm] = run_arm(config, seeds, RunOptions(cache_dir=args.cache_dir, progress=False), Path(tmp))
            text = markdown(results, hardware)  # after every arm, so an interrupted run keeps the finished arms
            (out / "results.md").write_text(text)
            (out / "results.json").write_text(
                json.dumps({"hardware": hardware, "arguments": vars(args), "arms": results}, indent=1)
            )
    print(text)
    return results


if __name__ == "__main__":
    main()
