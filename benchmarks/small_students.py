"""Can small students learn from little data?  The three recipes of elastic_slices.py distilled alone with today's
logit distillation, with teacher-labelled augmented rows (``data.augment``), with the layer-wise losses
(``hidden_weight``, ``attention_weight``), and with both, over seeds.

    .venv/bin/python benchmarks/small_students.py [--config studies/boolq-pareto.yaml]
        [--data ../shared/data/boolq-dev-split] [--recipes 1,2,3] [--settings today,pairs,layer-wise,both]
        [--seeds 0,1,2] [--steps 300] [--augment 8] [--layer-weight 1.0] [--cache-dir DIR]
        [--out benchmarks/results/small_students]

Each run is one student (``students.train_student`` in per-trial mode, exactly as a trial, with the run's seed),
converted to its backend and scored on validation and test against the fp32 teacher on the same rows.  Runs are
appended to ``results.json`` as they finish, and a run already there is not run again, so an interrupted benchmark
resumes where it stopped.  ``results.md`` summarises each (recipe, setting, steps) in ``results.json``, whatever
the steps of this invocation: the seed-mean test accuracy
± sd, and the seed-pooled paired difference to the teacher over all held-out rows (validation + test) with its
one-sided 95% lower bound.  The speed-up is measured once per recipe (it depends on the architecture only).
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
from latencysolver.config.study import StudyConfig, load_study_config
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import latency_inputs, measure_paired
from latencysolver.models.student import to_runnable
from latencysolver.results.scoring import markdown_table, predicted_classes
from latencysolver.search.kinds import train_student, untrained_student
from latencysolver.search.preparation import RunOptions, prepare, scoring_splits, standalone_context
from latencysolver.stats import correct_of, seed_pooled_difference, summarize

# the same three recipes in elastic_slices.py, small_students.py and layerwise_cost.py: their results compare
RECIPES = {
    name: Recipe(**fields)
    for name, fields in yaml.safe_load((REPO / "benchmarks" / "slice_recipes.yaml").read_text()).items()
}

SETTINGS = ("today", "pairs", "layer-wise", "both")


def _numbers(text: str, name: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        return [int(n) for n in text.split(",") if n]
    except ValueError:
        parser.error(f"--{name} {text}: expected integers, comma-separated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "studies" / "boolq-pareto.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--recipes", default="1,2,3", help="; ".join(f"{i} {n}" for i, n in enumerate(RECIPES, 1)))
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"some of {', '.join(SETTINGS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300, help="distillation steps of each student")
    parser.add_argument("--augment", type=int, default=8, help="data.augment of the 'pairs' and 'both' settings")
    parser.add_argument("--layer-weight", type=float, default=1.0, help="hidden_weight and attention_weight")
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "small_students"))
    args = parser.parse_args()
    numbers = _numbers(args.recipes, "recipes", parser)
    if not numbers or not all(1 <= n <= len(RECIPES) for n in numbers):
        parser.error(f"--recipes {args.recipes}: expected numbers from 1 to {len(RECIPES)}")
    settings = [s for s in args.settings.split(",") if s]
    if not settings or any(s not in SETTINGS for s in settings):
        parser.error(f"--settings {args.settings}: expected some of {', '.join(SETTINGS)}")
    seeds = _numbers(args.seeds, "seeds", parser)
    if args.steps < 1 or args.augment < 1 or not seeds:
        parser.error("--steps and --augment must be >= 1, --seeds not empty")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    done = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": [], "speedups": {}}

    base = load_study_config(args.config, data=args.data)
    hardware = hardware_fingerprint(base.latency.threads).describe()
    print(f"hardware: {hardware}", flush=True)
    done["hardware"] = hardware
    for setting in dict.fromkeys("pairs" if s in ("pairs", "both") else "today" for s in settings):
        config = _config(base, args.steps, args.augment if setting == "pairs" else 0)
        prepared = prepare(config, RunOptions(cache_dir=args.cache_dir, progress=False))
        _run_setting(args, config, prepared, settings, seeds, numbers, done, results_path, hardware)
    text = markdown(done)
    (out / "results.md").write_text(text)
    print(text)


def _config(base: StudyConfig, steps: int, augment: int) -> StudyConfig:
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, augment=augment),
        distillation=dataclasses.replace(base.distillation, steps=steps),
    )


def _run_setting(args, config, prepared, settings, seeds, numbers, done, results_path, hardware) -> None:
    """Every run of the settings that use this ``prepared`` (with or without the augmented rows)."""
    pairs = config.data.augment > 0
    mine = [s for s in settings if (s in ("pairs", "both")) == pairs]
    teacher, pad_id = prepared.teacher.model.eval(), prepared.pad_id
    splits, teacher_predictions = scoring_splits(prepared, config, RunOptions(progress=False), log=print)
    done["teacher"] = {
        name: [int(c) for c in correct_of(teacher_predictions[name], split.labels)] for name, split in splits.items()
    }
    inputs = latency_inputs(prepared.validation, config.latency, pad_id)
    keys = {(r["recipe"], r["setting"], r["seed"], r["steps"]) for r in done["runs"]}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = standalone_context(config, prepared, inputs, tmp)
        for i, (name, recipe) in enumerate(RECIPES.items(), 1):
            if i not in numbers:
                continue
            if name not in done["speedups"]:
                shape = untrained_student(ctx, recipe)[0]
                runnable = to_runnable(
                    shape, recipe.quant_dtype, inputs[0], Path(tmp) / f"s{i}", config.latency.threads
                )
                done["speedups"][name] = measure_paired(runnable, teacher, inputs, config.latency).speedup
            for setting in mine:
                for seed in seeds:
                    if (name, setting, seed, args.steps) in keys:
                        continue
                    weight = args.layer_weight if setting in ("layer-wise", "both") else 0.0
                    run = dataclasses.replace(recipe, seed=seed, hidden_weight=weight, attention_weight=weight)
                    start = time.perf_counter()
                    student = train_student(ctx, run, reseed=True)
                    seconds = time.perf_counter() - start
                    folder = Path(tmp) / f"r{i}{setting}{seed}"
                    runnable = to_runnable(student.model, recipe.quant_dtype, inputs[0], folder, config.latency.threads)
                    row = {"recipe": name, "setting": setting, "seed": seed, "steps": args.steps, "seconds": seconds}
                    row["augment"] = config.data.augment
                    row["layer_weight"] = weight
                    for split_name, split in splits.items():
                        predicted = predicted_classes(runnable, split, pad_id)
                        row[split_name] = [int(c) for c in correct_of(predicted, split.labels)]
                    done["runs"].append(row)
                    results_path.write_text(json.dumps(done))
                    accuracy = {s: sum(row[s]) / len(row[s]) for s in splits}
                    print(
                        f"{name} / {setting} / seed {seed}: validation {accuracy['validation']:.3f}, "
                        f"test {accuracy['test']:.3f} ({seconds:.0f} s)",
                        flush=True,
                    )


def markdown(done: dict) -> str:
    """One table of every (recipe, setting, steps) group in ``done``, in the order the runs finished."""
    teacher = done["teacher"]
    held_out = teacher["validation"] + teacher["test"]
    lines = [
        f"# Small students: augmented rows and layer-wise losses\n\nHost: {done.get('hardware', '?')}.  "
        "Accuracy: seed mean ± sd (one seed's Wilson 95% interval on 500 rows is "
        f"about ±4 points); vs teacher: the seed-pooled paired difference over the {len(held_out)} held-out rows "
        "(validation + test), in points, with its 95% interval and one-sided 95% lower bound.  Teacher: validation "
        f"{_mean(teacher['validation']):.3f}, test {_mean(teacher['test']):.3f}.\n",
    ]
    columns = (
        "recipe",
        "speed-up",
        "setting",
        "steps",
        "seeds",
        "validation",
        "test",
        "vs teacher (held-out)",
        "lower bound",
    )
    table = []
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in done["runs"]:
        groups.setdefault((r["recipe"], r["setting"], r["steps"]), []).append(r)
    for (recipe, setting, steps), runs in groups.items():
        validation = summarize([_mean(r["validation"]) for r in runs])
        test = summarize([_mean(r["test"]) for r in runs])
        difference = seed_pooled_difference([r["validation"] + r["test"] for r in runs], held_out)
        lower = seed_pooled_difference([r["validation"] + r["test"] for r in runs], held_out, confidence=0.90).low
        table.append(
            (
                *(recipe, f"{done['speedups'].get(recipe, float('nan')):.2f}x", setting, steps, len(runs)),
                f"{validation.mean:.3f} ± {validation.sd:.3f}",
                f"{test.mean:.3f} ± {test.sd:.3f}",
                f"{100 * difference.estimate:+.1f} [{100 * difference.low:+.1f}, {100 * difference.high:+.1f}]",
                f"{100 * lower:+.1f}",
                f"{sum(r['seconds'] for r in runs) / len(runs):.0f}",
            )
        )
    return "\n".join(lines) + "\n" + markdown_table((*columns, "s/run"), table, left=10)


def _mean(values: list[int]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    main()
