"""Is a slice of the elastic student as good as the same recipe distilled alone? (issue 18)

    .venv/bin/python benchmarks/elastic_slices.py [--config studies/boolq-elastic.yaml]
        [--data ../shared/data/boolq-dev-split] [--recovery 0,50] [--alone-steps 300,600] [--recipes 1,2,3]
        [--cache-dir DIR] [--out benchmarks/results/elastic_slices]

Trains (or loads the cached) elastic student of the study, then for each recipe below: the slice as the elastic
student left it and after each ``--recovery`` number of distillation steps (``students.train_student`` in elastic
mode, exactly as a trial), and the same recipe distilled alone from the teacher for each ``--alone-steps``
(``students.train_student`` in per-trial mode; the elastic training's own step count is the equal-steps
comparison).  Each student is converted to its backend and scored on validation and test (Wilson 95% intervals,
paired difference to the fp32 teacher on the same rows), and timed paired against the fp32 torch teacher.
Writes ``results.md`` and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


import yaml

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import load_study_config
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import latency_inputs, measure_paired
from latencysolver.models.elastic import trained_steps, training_seconds
from latencysolver.models.student import to_runnable
from latencysolver.results.scoring import markdown_table, score_model
from latencysolver.search.kinds import train_student, untrained_student
from latencysolver.search.preparation import RunOptions, prepare, scoring_splits, standalone_context

# the same three recipes in elastic_slices.py, small_students.py and layerwise_cost.py: their results compare
RECIPES = {
    name: Recipe(**fields)
    for name, fields in yaml.safe_load((REPO / "benchmarks" / "slice_recipes.yaml").read_text()).items()
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "studies" / "boolq-elastic.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--recovery", default="0,50", help="recovery steps of the slices, comma-separated")
    parser.add_argument("--alone-steps", default="300,600", help="distillation steps of the recipes alone ('' none)")
    parser.add_argument(
        "--recipes",
        default=",".join(str(i) for i in range(1, len(RECIPES) + 1)),
        help="which recipes, by number: " + "; ".join(f"{i} {name}" for i, name in enumerate(RECIPES, 1)),
    )
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "elastic_slices"))
    args = parser.parse_args()
    numbers = [int(n) for n in args.recipes.split(",")] if args.recipes.replace(",", "").isdigit() else []
    if not numbers or not all(1 <= n <= len(RECIPES) for n in numbers):
        parser.error(f"--recipes {args.recipes}: expected numbers from 1 to {len(RECIPES)}, comma-separated")
    chosen = {name: recipe for i, (name, recipe) in enumerate(RECIPES.items(), 1) if i in numbers}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    config = load_study_config(args.config, data=args.data)
    if config.trial_mode != "elastic":  # before the teacher is loaded
        parser.error(f"--config {args.config}: trial_mode is {config.trial_mode}, not elastic: nothing to slice")
    protocol = config.latency
    hardware = hardware_fingerprint(protocol.threads).describe()
    print(f"hardware: {hardware}", flush=True)
    options = RunOptions(cache_dir=args.cache_dir, progress=False)
    prepared = prepare(config, options)
    assert prepared.elastic is not None  # checked below load_study_config
    teacher, pad_id = prepared.teacher.model.eval(), prepared.pad_id
    splits, teacher_predictions = scoring_splits(prepared, config, options, log=print)
    inputs = latency_inputs(prepared.validation, protocol, pad_id)
    rows: list[dict] = []

    def score(name: str, kind: str, model, recipe: Recipe, seconds: float, folder: Path) -> None:
        runnable = to_runnable(model, recipe.quant_dtype, inputs[0], folder, protocol.threads)
        row = {"recipe": name, "student": kind, "seconds": round(seconds, 1)}
        for split_name, scored in score_model(runnable, splits, teacher_predictions, pad_id=pad_id).items():
            row[split_name] = scored.interval.to_dict()
            row[f"{split_name}_vs_teacher"] = scored.to_dict()["vs_teacher"]
        row["speedup"] = measure_paired(runnable, teacher, inputs, protocol).speedup
        rows.append(row)
        print(f"  {name} / {kind}: {describe(row)}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        ctx = standalone_context(config, prepared, inputs, str(tmp))
        for name, recipe in chosen.items():
            for steps in (int(s) for s in args.recovery.split(",") if s):
                start = time.perf_counter()
                sliced = dataclasses.replace(recipe, recovery_steps=steps)
                model = train_student(ctx, sliced, start=untrained_student(ctx, sliced)[0]).model
                score(
                    name,
                    f"elastic slice, recovery {steps}",
                    model,
                    recipe,
                    time.perf_counter() - start,
                    Path(tmp) / f"e{steps}{name[:1]}",
                )
            for steps in (int(s) for s in args.alone_steps.split(",") if s):
                start = time.perf_counter()
                alone = dataclasses.replace(
                    ctx,
                    elastic=None,
                    config=dataclasses.replace(
                        config, distillation=dataclasses.replace(config.distillation, steps=steps)
                    ),
                )
                model = train_student(alone, recipe).model
                score(
                    name,
                    f"distilled alone, {steps} steps",
                    model,
                    recipe,
                    time.perf_counter() - start,
                    Path(tmp) / f"a{steps}{name[:1]}",
                )

    elastic_seconds = training_seconds(prepared.elastic.path)
    text = markdown(rows, hardware, trained_steps(prepared.elastic.path), elastic_seconds)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {
                "hardware": hardware,
                "elastic": dataclasses.asdict(config.elastic),
                "elastic_training_seconds": elastic_seconds,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(text)


def interval(a: dict) -> str:
    return f"{a['estimate']:.3f} [{a['low']:.3f}, {a['high']:.3f}]"


def describe(row: dict) -> str:
    return (
        f"validation {interval(row['validation'])}, test {interval(row['test'])}, {row['speedup']:.2f}x, "
        f"{row['seconds']:.0f} s"
    )


def markdown(rows: list[dict], hardware: str, elastic_steps: int | None, elastic_seconds: float | None) -> str:
    minutes = "?" if elastic_seconds is None else f"{elastic_seconds / 60:.0f}"
    title = (
        f"# Elastic slices against the same recipes distilled alone\n\nHost: {hardware}.  Elastic student: "
        f"{elastic_steps} steps, trained once in {minutes} min.  Accuracy with its Wilson 95% interval; the "
        "difference to the fp32 teacher on the same rows with its paired 95% interval (Newcombe), in points.\n\n"
    )
    table = []
    for r in rows:
        cells = []
        for split in ("validation", "test"):
            d = r[f"{split}_vs_teacher"]
            band = d["difference_interval"]
            cells += [
                interval(r[split]),
                f"{100 * d['difference']:+.1f} [{100 * band['low']:+.1f}, {100 * band['high']:+.1f}]",
            ]
        table.append((r["recipe"], r["student"], *cells, f"{r['speedup']:.2f}x", f"{r['seconds']:.0f}"))
    columns = ("recipe", "student", "validation", "vs teacher", "test", "vs teacher", "speed-up", "seconds")
    return title + markdown_table(columns, table, left=len(columns))


if __name__ == "__main__":
    main()
