"""latencysolver against what people do without it, on the same data, machine and run (issues 7 and 17).

    .venv/bin/python benchmarks/boolq_pareto.py [--study studies/boolq-pareto.yaml]
        [--data ../shared/data/boolq-dev-split] [--trials N] [--steps N] [--out benchmarks/results/boolq_pareto]
        [--storage URL] [--resume] [--skip-random] [--cache-dir DIR] [--teacher PATH] [--progress]
        [--sampler-seeds 0,1,2] [--confirm N] [--recipes RESULTS_JSON]

1. Loads the data and fine-tunes (or loads the cached) teacher: ``latencysolver.search.preparation.prepare``;
   encodes the test split too.
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
   table gains their mean ± sd on validation and test and of the speed-up.
5. Every row's 95% intervals (Wilson) on validation and test, its paired difference to the fp32 teacher on the
   same rows (Newcombe), on validation also to the ORT int8 teacher; hypervolume of each study's feasible trials
   in (validation accuracy, speed-up) above a fixed reference point (the validation majority-class rate, 1.0x),
   as mean ± sd over sampler seeds; the targets, each said met or not with its figures.

``--recipes RESULTS_JSON`` runs no search: the front recipes of an earlier run (its stored params, or their
descriptions read back) run as enqueued trials of ``NAME-recipes`` and each gets ``--confirm`` seeds (default 3):
the seed figures of a committed front without re-running its search.

Writes ``results.md``, ``results.json``, ``front.html`` and ``front.png`` into ``--out``; the studies live in
``--out/study.db`` (artifacts in ``--out/study-artifacts/``), made fresh on every run unless ``--resume``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna
from optuna.trial import FrozenTrial, TrialState

from latencysolver.config.knobs import KNOBS
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig, load_study_config
from latencysolver.data.batches import EncodedSplit, encode_split
from latencysolver.errors import LatencySolverError, StorageError
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import latency_inputs, measure_paired
from latencysolver.models.loading import count_parameters
from latencysolver.models.student import load_student, to_runnable
from latencysolver.results.attributes import repeat_of
from latencysolver.results.front import (
    completed_trials,
    difference_text,
    feasible_trials,
    pareto_trials,
    study_hypervolume,
)
from latencysolver.results.records import PREDICTIONS, trial_record
from latencysolver.results.repeats import confirm_study_name
from latencysolver.results.storage import artifact_store_of, download_trial
from latencysolver.search.confirm import confirm
from latencysolver.search.objective import model_size_bytes, objectives
from latencysolver.search.preparation import Prepared, RunOptions, prepare
from latencysolver.search.run import run_study
from latencysolver.stats import (
    Interval,
    PairedComparison,
    SeedSummary,
    accuracy_interval,
    correct_of,
    paired_difference,
    seed_pooled_difference,
    summarize,
)
from latencysolver.training.evaluate import predict_logits

# name -> (quant_dtype setting for to_runnable, what it is)
BASELINES: dict[str, tuple[str, str]] = {
    "fp32 torch teacher": ("fp32", "the fine-tuned teacher as is (torch eager, fp32)"),
    "ORT fp32 teacher": ("ort-fp32", "teacher exported to ONNX Runtime, fp32"),
    "ORT int8 teacher": (
        "ort-int8",
        "teacher in ONNX Runtime, dynamic int8, per-channel 7-bit weights (the Optimum recipe, reduce_range)",
    ),
    "torch int8 teacher": ("int8", "teacher with torch dynamic int8 (quantize_dynamic, per-channel)"),
}
# where each baseline's label goes in the plot: their points sit close together near 1-3x and the same accuracy
LABELS = {
    "fp32 torch teacher": "top center",
    "ORT fp32 teacher": "bottom center",
    "ORT int8 teacher": "top center",
    "torch int8 teacher": "middle right",
}
REFERENCE = "fp32 torch teacher"
INT8_BASELINE = "ORT int8 teacher"
TARGET_SPEEDUP = 8.0
MARGIN = 0.02  # non-inferiority margin on validation (2 points), one-sided at CONFIDENCE
CONFIDENCE = 0.95
TEST_POINTS = 2.0  # the seed-mean test accuracy within this many points of the teacher's
WALL_BUDGET_S = 3 * 3600
EPS = 1e-9


@dataclass
class Row:
    """One line of the table: a baseline or a front trial."""

    name: str
    recipe: str
    val_accuracy: float
    test_accuracy: float | None
    p50_ms: float
    speedup: float
    speedup_cv: float
    parameters: int
    size_bytes: int
    trial: int | None = None
    teacher_p50_ms: float | None = None  # the fp32 teacher's p50 in the same pairs
    params: dict[str, Any] | None = None  # a trial's Optuna params: what --recipes enqueues to run it again
    # 95% intervals (Interval.to_dict(); Wilson) and paired differences (PairedComparison.to_dict(); Newcombe)
    val_interval: dict[str, Any] | None = None
    test_interval: dict[str, Any] | None = None
    val_vs_teacher: dict[str, Any] | None = None  # against the fp32 torch teacher, on the same rows
    test_vs_teacher: dict[str, Any] | None = None
    val_vs_ort_int8: dict[str, Any] | None = None  # against the ORT int8 teacher (the Optimum recipe)
    repeats: dict[str, Any] | None = None  # --confirm / --recipes: RecipeRepeats.to_dict() of its seed repeats
    # the seed repeats' mean paired difference to the fp32 teacher with its 95% interval over rows
    # (stats.seed_pooled_difference; Interval.to_dict())
    repeats_val_vs_teacher: dict[str, Any] | None = None
    repeats_test_vs_teacher: dict[str, Any] | None = None
    val_predictions: list[int] | None = None  # per row; used for the paired figures, not written to results.json
    test_predictions: list[int] | None = None

    def record(self) -> dict[str, Any]:
        """The row as results.json stores it (predictions left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.endswith("_predictions")}


@dataclass
class Target:
    name: str
    met: bool | None  # None: not measured
    detail: str


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


# ------------------------------------------------------------------------------------------------ setup


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default=str(REPO / "studies" / "boolq-pareto.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--trials", type=int, help="trial budget of each study (default: the YAML's n_trials)")
    parser.add_argument("--steps", type=int, help="distillation steps per trial (default: the YAML's)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "boolq_pareto"))
    parser.add_argument("--storage", help="Optuna storage URL (default: a fresh sqlite:///OUT/study.db)")
    parser.add_argument("--resume", action="store_true", help="continue the studies already in the storage")
    parser.add_argument("--skip-random", action="store_true", help="no random-search study (quick looks)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--teacher", help="fine-tuned teacher folder (default: the study's cached teacher)")
    parser.add_argument("--progress", action="store_true", help="show progress bars while training")
    parser.add_argument(
        "--sampler-seeds",
        type=_seed_list,
        help="sampler seeds, comma-separated (default: the YAML's): one study per sampler and seed; hypervolume "
        "mean ± sd over them",
    )
    parser.add_argument(
        "--confirm",
        type=int,
        default=0,
        metavar="N",
        help="N seed repeats of each front recipe (latencysolver confirm)",
    )
    parser.add_argument(
        "--recipes",
        metavar="RESULTS_JSON",
        help="no search: run the front recipes of an earlier results.json (study NAME-recipes) and confirm each "
        "with --confirm seeds (default 3)",
    )
    args = parser.parse_args(argv)
    if args.confirm < 0:
        parser.error(f"--confirm: expected a count >= 0, got {args.confirm}")
    if args.recipes and not args.confirm:
        args.confirm = 3
    return args


def _seed_list(text: str) -> list[int]:
    seeds = [int(part) for part in text.split(",") if part.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(text)
    return seeds


def load_config(args: argparse.Namespace, out: Path) -> StudyConfig:
    config = load_study_config(
        args.study, data=args.data, n_trials=args.trials, storage=args.storage or f"sqlite:///{out / 'study.db'}"
    )
    if args.steps is not None:
        if args.steps < 1:
            raise LatencySolverError(f"--steps: expected a positive integer, got {args.steps!r}")
        config = dataclasses.replace(config, distillation=dataclasses.replace(config.distillation, steps=args.steps))
    return config


def random_config(config: StudyConfig) -> StudyConfig:
    """The same study with random search: same objective, space, budget, seed and storage, another name."""
    return dataclasses.replace(
        config, name=f"{config.name}-random", sampler=dataclasses.replace(config.sampler, name="random")
    )


def seeded(config: StudyConfig, sampler: str, seed: int, first: bool) -> StudyConfig:
    """The study of one arm: ``sampler`` with ``seed``.  The first seed keeps the plain names (NAME and
    NAME-random, as before sampler seeds existed); the others get ``-seed<k>``."""
    name = config.name + ("-random" if sampler == "random" else "") + ("" if first else f"-seed{seed}")
    return dataclasses.replace(config, name=name, sampler=dataclasses.replace(config.sampler, name=sampler, seed=seed))


def load_recipes(path: str, space: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The front of an earlier run's results.json, as (its name, Optuna params) per recipe: the stored params
    where the run recorded them, else read back from the recipe's description (``Recipe.describe``; temperature
    and alpha to its 2 decimals) for the searched knobs of ``space``."""
    try:
        front = json.loads(Path(path).read_text())["front"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LatencySolverError(f"--recipes {path!r}: not a results.json with a 'front' list ({exc})") from None
    recipes = []
    for row in front:
        params = row.get("params") or params_from_description(row["recipe"])
        searched = {k: v for k, v in params.items() if isinstance(space.get(k), dict)}
        recipes.append((row["name"], searched))
    if not recipes:
        raise LatencySolverError(f"--recipes {path!r}: its front is empty")
    return recipes


def params_from_description(text: str) -> dict[str, Any]:
    """``prune=0.30(str) ort-int8 skip=0.50(det) rank=0.5 T=7.65 alpha=0.82`` -> the Optuna params of every knob
    that recipe samples (``Recipe.from_description``; a knob it leaves inactive, such as ``prune_kind`` at ratio 0,
    has none), in the search space's form (``rank: off``)."""
    recipe = Recipe.from_description(text).to_dict()
    params: dict[str, Any] = {}
    for spec in KNOBS:  # architecture first: the others' activity depends on it
        if not spec.inactive_when(params):
            params[spec.name] = spec.to_yaml(recipe[spec.name])
    return params


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


# ------------------------------------------------------------------------------------------------ measuring


def predictions(model: Any, split: EncodedSplit | None, pad_id: int) -> list[int] | None:
    if split is None:
        return None
    return predict_logits(model, split, pad_id=pad_id, progress=False).argmax(dim=-1).tolist()


def accuracy_of(predicted: list[int] | None, split: EncodedSplit | None) -> float | None:
    if predicted is None or split is None:
        return None
    return float(correct_of(predicted, list(split.labels)).mean())


def measure_baselines(
    prepared: Prepared, test: EncodedSplit | None, config: StudyConfig, workdir: Path, clock: Clock
) -> list[Row]:
    teacher = prepared.teacher.model.eval()
    inputs = latency_inputs(prepared.validation, config.latency, prepared.pad_id)
    rows = []
    for name, (setting, what) in BASELINES.items():
        runnable = to_runnable(teacher, setting, inputs[0], workdir / setting, config.latency.threads)
        paired = measure_paired(runnable, teacher, inputs, config.latency)
        val, tested = (
            predictions(runnable, prepared.validation, prepared.pad_id),
            predictions(runnable, test, prepared.pad_id),
        )
        rows.append(
            Row(
                name=name,
                recipe=what,
                val_accuracy=accuracy_of(val, prepared.validation),
                test_accuracy=accuracy_of(tested, test),
                val_predictions=val,
                test_predictions=tested,
                p50_ms=paired.model.p50_ms,
                speedup=paired.speedup,
                speedup_cv=paired.speedup_cv,
                parameters=count_parameters(teacher),
                size_bytes=model_size_bytes(runnable),
                teacher_p50_ms=paired.reference.p50_ms,
            )
        )
        clock.say(
            f"baseline {name}: validation {rows[-1].val_accuracy:.3f}, p50 {rows[-1].p50_ms:.2f} ms, "
            f"{rows[-1].speedup:.2f}x"
        )
    return rows


def front_rows(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    test: EncodedSplit | None,
    pad_id: int,
    threads: int,
    trials: list[FrozenTrial] | None = None,
) -> list[Row]:
    """Each feasible front trial (or each of ``trials``) as its trial recorded it, plus its test predictions from
    its stored student and its validation predictions from its stored ``predictions.json``."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in trials if trials is not None else pareto_trials(study):
            a = trial_record(t)
            folder = download_trial(artifact_store_of(study), storage, t, Path(tmp) / str(t.number))
            model = load_student(folder, threads=threads).model
            tested = predictions(model, test, pad_id)
            rows.append(
                Row(
                    name=f"trial {t.number}",
                    recipe=Recipe.from_dict(a.recipe_dict).describe(),
                    val_accuracy=t.values[0],
                    test_accuracy=accuracy_of(tested, test),
                    val_predictions=json.loads((folder / PREDICTIONS).read_text())["predictions"],
                    test_predictions=tested,
                    params=dict(t.params),
                    p50_ms=a.latency_p50_ms,
                    speedup=a.speedup,
                    speedup_cv=a.speedup_cv,
                    parameters=a.parameters,
                    size_bytes=a.size_bytes,
                    trial=t.number,
                    teacher_p50_ms=a.reference_p50_ms,
                )
            )
    return rows


def pool_repeats(
    front: list[Row],
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    prepared: Prepared,
    test: EncodedSplit | None,
    teacher: Row,
    threads: int,
) -> None:
    """Each front recipe's seed repeats pooled against the fp32 teacher on the same rows: validation from each
    repeat's stored predictions, test from its stored student run here (``stats.seed_pooled_difference``)."""
    sibling = optuna.load_study(study_name=confirm_study_name(study.study_name), storage=storage)
    finished = sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    splits = {"val": prepared.validation, "test": test}
    with tempfile.TemporaryDirectory() as tmp:
        for row in front:
            mine = [t for t in finished if repeat_of(t) == row.trial]
            if not mine:
                continue
            seen: dict[str, list[list[int]]] = {"val": [], "test": []}
            for t in mine:
                folder = download_trial(artifact_store_of(sibling), storage, t, Path(tmp) / f"{row.trial}-{t.number}")
                seen["val"].append(json.loads((folder / PREDICTIONS).read_text())["predictions"])
                if test is not None:
                    seen["test"].append(predictions(load_student(folder, threads=threads).model, test, prepared.pad_id))
            for key, split in splits.items():
                reference = getattr(teacher, f"{key}_predictions")
                if split is None or reference is None or not seen[key]:
                    continue
                labels = list(split.labels)
                pooled = seed_pooled_difference(
                    [correct_of(p, labels) for p in seen[key]], correct_of(reference, labels)
                )
                setattr(row, f"repeats_{key}_vs_teacher", pooled.to_dict())


# ------------------------------------------------------------------------------------------------ targets


def _points(delta: float) -> str:
    return f"{delta * 100:+.1f} pts"


def add_statistics(rows: list[Row], validation: EncodedSplit, test: EncodedSplit | None) -> None:
    """Each row's 95% accuracy intervals, and its paired differences on the same rows to the fp32 torch teacher
    (validation and test) and to the ORT int8 teacher (validation)."""
    by_name = {r.name: r for r in rows}
    teacher, int8 = by_name[REFERENCE], by_name.get(INT8_BASELINE)
    for split, key in ((validation, "val"), (test, "test")):
        if split is None:
            continue
        labels = list(split.labels)
        reference = correct_of(getattr(teacher, f"{key}_predictions"), labels)
        for r in rows:
            predicted = getattr(r, f"{key}_predictions")
            if predicted is None:
                continue
            correct = correct_of(predicted, labels)
            setattr(r, f"{key}_interval", accuracy_interval(correct).to_dict())
            if r is not teacher:
                setattr(r, f"{key}_vs_teacher", paired_difference(correct, reference).to_dict())
            if key == "val" and int8 is not None and r is not int8 and int8.val_predictions is not None:
                r.val_vs_ort_int8 = paired_difference(correct, correct_of(int8.val_predictions, labels)).to_dict()


def _bound(paired: dict[str, Any] | None) -> float | None:
    """The one-sided lower confidence bound of a paired difference (None when not measured)."""
    return PairedComparison.from_dict(paired).lower_bound(CONFIDENCE) if paired else None


def seed_figure(row: Row, key: str, single: float | None) -> tuple[float | None, int]:
    """A recipe's seed-mean figure (``validation``, ``test``, ``speedup``) and how many seeds it is over: its
    repeats' when --confirm ran them, else the search trial's own value (one seed)."""
    summary = (row.repeats or {}).get(key)
    if summary:
        return summary["mean"], summary["n"]
    return single, 1


def speed_target(front: list[Row], teacher: Row) -> Target:
    name = (
        f"a front recipe >= {TARGET_SPEEDUP:g}x faster than the fp32 teacher whose seed-mean test accuracy is within "
        f"{TEST_POINTS:g} points of the teacher's and whose paired difference on validation is non-inferior at "
        f"margin {MARGIN * 100:g} (one-sided {CONFIDENCE:.0%} bound above -{MARGIN * 100:g} points)"
    )
    if not front:
        return Target(name, False, "the front is empty")
    verdicts = []
    for r in front:
        speed, _ = seed_figure(r, "speedup", r.speedup)
        test_mean, n = seed_figure(r, "test", r.test_accuracy)
        bound = _bound(r.val_vs_teacher)
        checks = {
            "fast": speed is not None and speed >= TARGET_SPEEDUP,
            "test": test_mean is not None
            and teacher.test_accuracy is not None
            and test_mean >= teacher.test_accuracy - TEST_POINTS / 100 - EPS,
            "validation": bound is not None and bound > -MARGIN,
        }
        test_text = (
            "no test split"
            if test_mean is None or teacher.test_accuracy is None
            else (
                f"test {test_mean:.3f} ({n} seed{'s' if n > 1 else ''}; {_points(test_mean - teacher.test_accuracy)})"
            )
        )
        bound_text = "not measured" if bound is None else f"{bound * 100:+.1f} pts"
        verdicts.append(
            (
                sum(checks.values()),
                speed or 0.0,
                r,
                f"{r.name}: {speed:.1f}x, {test_text}, validation bound {bound_text}",
            )
        )
    qualifying = [v for v in verdicts if v[0] == 3]
    if qualifying:
        best = max(qualifying, key=lambda v: v[1])
        return Target(name, True, f"{best[3]}; {best[1] - TARGET_SPEEDUP:.1f}x above {TARGET_SPEEDUP:g}x")
    closest = max(verdicts, key=lambda v: (v[0], v[1]))
    unsure = "" if closest[2].repeats else " (test on one seed: pass --confirm N for the seed mean)"
    return Target(name, False, f"no recipe passes all three; closest: {closest[3]}{unsure}")


def int8_target(front: list[Row], baseline: Row) -> Target:
    name = (
        f"a front recipe faster than the {baseline.name} and non-inferior to it on validation (paired, one-sided "
        f"{CONFIDENCE:.0%} bound above -{MARGIN * 100:g} points)"
    )
    rows = [(r, _bound(r.val_vs_ort_int8)) for r in front]
    faster = [(r, b) for r, b in rows if r.speedup > baseline.speedup]
    qualifying = [(r, b) for r, b in faster if b is not None and b > -MARGIN]
    if qualifying:
        r, b = max(qualifying, key=lambda rb: rb[0].speedup)
        return Target(
            name,
            True,
            f"{r.name}: {r.speedup:.2f}x vs {baseline.speedup:.2f}x, validation {r.val_accuracy:.3f} vs "
            f"{baseline.val_accuracy:.3f}, bound {b * 100:+.1f} pts",
        )
    if not faster:
        return Target(name, False, f"no front recipe is faster than its {baseline.speedup:.2f}x")
    r, b = max(faster, key=lambda rb: rb[1] if rb[1] is not None else -1.0)
    bound = "not measured" if b is None else f"{b * 100:+.1f} pts"
    return Target(
        name,
        False,
        f"of the faster recipes, {r.name} comes closest: validation {r.val_accuracy:.3f} vs "
        f"{baseline.val_accuracy:.3f}, bound {bound} (needs > -{MARGIN * 100:g})",
    )


def hypervolume_target(sampler: str, main: list[float], random: list[float]) -> Target:
    """The sampler against random search over sampler seeds: a lead smaller than the larger sd is no lead."""
    name = f"{sampler} beats random search on hypervolume, by more than the spread over sampler seeds"
    if not random:
        return Target(name, None, "random search skipped (--skip-random)")
    m, r = summarize(main), summarize(random)
    lead = m.mean - r.mean
    spread = max(m.sd, r.sd)
    figures = f"{m.describe(digits=4)} vs {r.describe(digits=4)} over {m.n} seed(s) each, lead {lead:+.4f}"
    if m.n < 2 or r.n < 2:
        return Target(name, None, f"{figures}: one seed has no spread, so no lead can be called (--sampler-seeds)")
    if lead > spread:
        return Target(name, True, f"{figures} > sd {spread:.4f}")
    return Target(name, False, f"{figures}: no lead (not above the sd {spread:.4f})")


def wall_target(seconds: float, budget: str) -> Target:
    left = WALL_BUDGET_S - seconds
    margin = f"{left / 60:.0f} min to spare" if left >= 0 else f"{-left / 60:.0f} min over"
    return Target(
        f"whole benchmark within {WALL_BUDGET_S // 3600} hours",
        left >= 0,
        f"{seconds / 60:.1f} min ({margin}); budget: {budget}",
    )


def noise_warning(rows: list[Row], spread: float = 1.5) -> str | None:
    """The fp32 teacher's p50 should read about the same in every pair; when it does not, the machine was busy.

    Paired ratios cancel noise that slows both models alike, but not CPU contention that slows torch's OpenMP
    threads far more than onnxruntime's (seen here: the teacher at 919 ms next to ONNX Runtime, 30 ms alone).
    """
    seen = {r.name: r.teacher_p50_ms for r in rows if r.teacher_p50_ms}
    if len(seen) < 2 or max(seen.values()) <= spread * min(seen.values()):
        return None
    low, high = min(seen, key=seen.get), max(seen, key=seen.get)
    return (
        f"warning: the fp32 teacher's paired p50 ranged {seen[low]:.1f} ms ({low}) to {seen[high]:.1f} ms "
        f"({high}): the machine's speed changed during the run (other jobs, or a shared host); compare "
        "speed-ups, not milliseconds, and expect them to move more than their ±CV between runs"
    )


# ------------------------------------------------------------------------------------------------ output


COLUMNS = (
    "",
    "recipe",
    "val acc [95% CI]",
    "val vs teacher (pts)",
    "test acc [95% CI]",
    "test vs teacher (pts)",
    "p50 ms",
    "speed-up (paired)",
    "params",
    "size MB",
)
REPEAT_COLUMNS = (
    "seeds",
    "val, seed mean ± sd",
    "test, seed mean ± sd",
    "val vs teacher, seed-pooled (pts) [95% CI]",
    "test vs teacher, seed-pooled (pts) [95% CI]",
    "speed-up, seeds",
)


def _accuracy_text(value: float | None, interval: dict[str, Any] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} {Interval.from_dict(interval).describe(estimate=False)}" if interval else f"{value:.3f}"


def _difference(paired: dict[str, Any] | None) -> str:
    return difference_text(PairedComparison.from_dict(paired)) if paired else "–"


def cells(row: Row) -> tuple[str, ...]:
    return (
        row.name,
        row.recipe,
        _accuracy_text(row.val_accuracy, row.val_interval),
        _difference(row.val_vs_teacher),
        _accuracy_text(row.test_accuracy, row.test_interval),
        _difference(row.test_vs_teacher),
        f"{row.p50_ms:.2f}",
        f"{row.speedup:.2f}x ±{row.speedup_cv:.0%}",
        f"{row.parameters:,}",
        f"{row.size_bytes / 1e6:.1f}",
    )


def repeat_cells(row: Row) -> tuple[str, ...]:
    """The seed repeats' columns (``--confirm``): mean ± sd over seeds; "–" for a baseline."""
    r = row.repeats
    if not r:
        return ("–",) * len(REPEAT_COLUMNS)

    def summary(key: str, **style: Any) -> str:
        return SeedSummary.from_dict(r[key]).describe(**style) if r.get(key) else "n/a"

    def pooled(raw: dict[str, Any] | None) -> str:
        if not raw:
            return "n/a"
        i = Interval.from_dict(raw)
        return f"{100 * i.estimate:+.1f} [{100 * i.low:+.1f}, {100 * i.high:+.1f}]"

    return (
        f"{r['finished']}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
        summary("validation"),
        summary("test"),
        pooled(row.repeats_val_vs_teacher),
        pooled(row.repeats_test_vs_teacher),
        summary("speedup", digits=2, suffix="x"),
    )


def summary_lines(results: dict[str, Any]) -> list[str]:
    hv = results["hypervolume"]
    ref = hv["reference_point"]
    lines = [
        (
            f"hypervolume of the feasible trials in (validation accuracy ↑, speed-up ↑) above the reference "
            f"point (accuracy {ref['accuracy']:.3f} = validation majority class, speed-up {ref['speedup']:.1f}x):"
        )
    ]
    for sampler, arms in hv["by_sampler"].items():
        values = [a["hypervolume"] for a in arms]
        spread = f" — mean {summarize(values).describe(digits=4)}" if len(values) > 1 else ""
        each = ", ".join(
            f"seed {a['seed']}: {a['hypervolume']:.4f} ({a['feasible']}/{a['trials']} feasible)" for a in arms
        )
        lines.append(f"  {sampler}: {each}{spread}")
    if not hv["by_sampler"].get("random"):
        lines.append("  random search: not run")
    for t in results["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "not decided"}[t["met"]]
        lines.append(f"target: {t['name']}: {verdict} — {t['detail']}")
    lines.append(f"wall time: {results['wall_seconds'] / 60:.1f} min; budget: {results['budget']}")
    if results["noise_warning"]:
        lines.append(results["noise_warning"])
    return lines


def print_results(rows: list[Row], results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    repeats = any(r.repeats for r in rows)
    table = Table(title=f"BoolQ: baselines and the Pareto front of study {results['study']['name']!r}")
    for i, column in enumerate(COLUMNS + (REPEAT_COLUMNS if repeats else ())):
        table.add_column(column, justify="left" if i < 2 else "right")
    for i, row in enumerate(rows):
        table.add_row(*cells(row), *(repeat_cells(row) if repeats else ()), end_section=i == len(BASELINES) - 1)
    Console(width=260).print(table)
    for line in summary_lines(results):  # plain lines: rich would wrap them at its width
        print(line, flush=True)


def markdown(rows: list[Row], results: dict[str, Any]) -> str:
    columns = COLUMNS + (REPEAT_COLUMNS if any(r.repeats for r in rows) else ())
    head = "| " + " | ".join(columns) + " |\n| --- | --- |" + " ---: |" * (len(columns) - 2) + "\n"
    body = "".join(
        "| " + " | ".join(cells(r) + (repeat_cells(r) if len(columns) > len(COLUMNS) else ())) + " |\n" for r in rows
    )
    protocol = results["protocol"]
    notes = (
        f"Data: {results['data']['source']} ({results['data']['train']} train / {results['data']['validation']} "
        f"validation / {results['data']['test']} test rows). Latency: {protocol}.\n"
        f"Hardware: {results['hardware']}. Run {results['date']}.\n"
    )
    return f"# BoolQ: latencysolver against its baselines\n\n{notes}\n{head}{body}\n" + "".join(
        f"  - {line.strip()}\n" if line.startswith("  ") else f"- {line}\n" for line in summary_lines(results)
    )


def figure(
    study: optuna.Study,
    random_study: optuna.Study | None,
    front: list[Row],
    baselines: list[Row],
    reference: tuple[float, float],
):
    import plotly.graph_objects as go

    def trials(s: optuna.Study) -> list[FrozenTrial]:
        return s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def hover(t: FrozenTrial) -> str:
        return f"trial {t.number}<br>{Recipe.from_dict(trial_record(t).recipe_dict).describe()}"

    fig = go.Figure()
    main = trials(study)
    fig.add_trace(
        go.Scatter(
            x=[t.values[1] for t in main],
            y=[t.values[0] for t in main],
            mode="markers",
            name=f"{study.study_name}: all trials",
            opacity=0.35,
            text=[hover(t) for t in main],
            marker={"color": "#1f77b4", "size": 8},
        )
    )
    if random_study is not None:
        rand = trials(random_study)
        fig.add_trace(
            go.Scatter(
                x=[t.values[1] for t in rand],
                y=[t.values[0] for t in rand],
                mode="markers",
                name=f"{random_study.study_name}: all trials",
                opacity=0.6,
                text=[hover(t) for t in rand],
                marker={"color": "#ff7f0e", "size": 8, "symbol": "x"},
            )
        )
    ordered = sorted(front, key=lambda r: r.speedup)
    fig.add_trace(
        go.Scatter(
            x=[r.speedup for r in ordered],
            y=[r.val_accuracy for r in ordered],
            mode="lines+markers",
            line={"shape": "vh", "color": "#1f77b4"},
            marker={"size": 11, "color": "#1f77b4", "line": {"width": 1, "color": "black"}},
            name="Pareto front (feasible), 95% CI",
            text=[f"{r.name}<br>{r.recipe}" for r in ordered],
            error_y=_error_bars(ordered),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[r.speedup for r in baselines],
            y=[r.val_accuracy for r in baselines],
            mode="markers+text",
            text=[r.name for r in baselines],
            textposition=[LABELS.get(r.name, "top center") for r in baselines],
            marker={"symbol": "diamond", "size": 12, "color": "black"},
            name="baselines",
            error_y=_error_bars(baselines),
        )
    )
    teacher = baselines[0]
    fig.add_hline(
        y=teacher.val_accuracy - MARGIN,
        line_dash="dot",
        line_color="green",
        annotation_text=f"teacher - {MARGIN * 100:g} points (the non-inferiority margin)",
        annotation_position="bottom left",
    )
    fig.add_vline(
        x=TARGET_SPEEDUP,
        line_dash="dot",
        line_color="green",
        annotation_text=f"{TARGET_SPEEDUP:g}x",
        annotation_position="top left",
    )
    fig.add_hline(
        y=reference[0],
        line_dash="dash",
        line_color="grey",
        annotation_text="majority class (hypervolume reference)",
        annotation_position="bottom right",
    )
    fastest = max(
        [r.speedup for r in baselines + front]
        + [TARGET_SPEEDUP]
        + [t.values[1] for s in (study, random_study) if s is not None for t in trials(s)]
    )
    fig.update_xaxes(range=[0, fastest * 1.15])  # room for the labels of the fastest points
    fig.update_layout(
        title="BoolQ validation accuracy vs paired speed-up over the fp32 torch teacher (batch 1)",
        xaxis_title="speed-up over the fp32 torch teacher (paired, batch 1)",
        yaxis_title="validation accuracy",
        template="plotly_white",
        width=1000,
        height=600,
    )
    return fig


def _error_bars(rows: list[Row]) -> dict[str, Any]:
    """Each row's 95% validation interval as an asymmetric vertical error bar (0 where not measured)."""
    lows = [Interval.from_dict(r.val_interval).low if r.val_interval else r.val_accuracy for r in rows]
    highs = [Interval.from_dict(r.val_interval).high if r.val_interval else r.val_accuracy for r in rows]
    return {
        "type": "data",
        "symmetric": False,
        "array": [h - r.val_accuracy for h, r in zip(highs, rows, strict=True)],
        "arrayminus": [r.val_accuracy - lo for lo, r in zip(lows, rows, strict=True)],
        "thickness": 1,
        "color": "#555555",
    }


def write_plot(fig, out: Path, clock: Clock) -> str | None:
    """front.html (self-contained, works offline) and front.png via kaleido; a warning line if the PNG fails."""
    fig.write_html(str(out / "front.html"), include_plotlyjs=True)
    try:
        fig.write_image(str(out / "front.png"), width=1000, height=600, scale=2)
    # kaleido needs Chrome/Chromium (Debian: /usr/bin/chromium) and raises its own error types; the HTML is written
    except Exception as exc:  # noqa: BLE001
        (out / "front.png").unlink(missing_ok=True)
        warning = f"warning: front.png not written (kaleido: {type(exc).__name__}: {str(exc).strip()[:200]})"
        clock.say(warning)
        return warning
    return None


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    clock = Clock()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, out, clock)
    except LatencySolverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace, out: Path, clock: Clock) -> dict[str, Any]:
    config = load_config(args, out)
    seeds = args.sampler_seeds or [config.sampler.seed]
    samplers = [config.sampler.name] + ([] if args.skip_random or args.recipes else ["random"])
    arms = [seeded(config, sampler, seed, i == 0) for i, seed in enumerate(seeds) for sampler in samplers]
    if args.recipes:
        recipes = load_recipes(args.recipes, config.search_space.to_dict())
        arms = []
    names = [a.name for a in arms] + ([f"{config.name}-recipes"] if args.recipes else [])
    fresh_storage(args, out, names + [f"{n}:confirm" for n in names], config.storage)
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
    clock.say(f"benchmark: study {config.name!r} ({config.config_file}), {budget}; out {out}")

    prepared = prepare(config, options, log=clock.say)
    test = (
        encode_split(prepared.data.test, prepared.tokenizer, config.data.max_length, prepared.cache_root, config.model)
        if prepared.data.test is not None
        else None
    )
    if test is None:
        clock.say(f"warning: {config.data.source} has no test split: test accuracies are left out")
    clock.done("data and teacher")

    with tempfile.TemporaryDirectory() as tmp:
        baselines = measure_baselines(prepared, test, config, Path(tmp), clock)
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
    if args.recipes:  # say which recipe of the earlier run each trial runs again
        for row, (name, _) in zip(front, recipes, strict=False):
            row.name = f"{name}, run again as trial {row.trial}"
    clock.done("test predictions of the front")
    if args.confirm and front:
        repeats = confirm(
            study.study_name,
            config.storage,
            trials=[r.trial for r in front],
            seeds=args.confirm,
            options=options,
            log=clock.say,
        )
        by_trial = {r.trial: r.to_dict() for r in repeats}
        for row in front:
            row.repeats = by_trial.get(row.trial)
        clock.done(f"{args.confirm} seed repeats of {len(front)} recipes")
        pool_repeats(front, study, storage, prepared, test, baselines[0], config.latency.threads)
        clock.done("seed-pooled paired differences")
    rows = baselines + front
    add_statistics(rows, prepared.validation, test)

    majority = prepared.data.validation.majority_rate()
    reference = (majority, 1.0)
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
    fig = figure(study, random_study, front, baselines, reference)
    plot_warning = write_plot(fig, out, clock)
    clock.done("plot")

    wall = clock.elapsed()
    by_name = {b.name: b for b in baselines}
    targets = [speed_target(front, by_name[REFERENCE]), int8_target(front, by_name[INT8_BASELINE])]
    if not args.recipes:
        hv = {k: [a["hypervolume"] for a in v] for k, v in by_sampler.items()}
        targets.append(hypervolume_target(config.sampler.name, hv[config.sampler.name], hv.get("random", [])))
    targets.append(wall_target(wall, budget))
    results = _results(
        config,
        prepared,
        test,
        rows,
        front,
        study,
        reference,
        by_sampler,
        targets,
        wall,
        budget,
        clock,
        plot_warning,
        args,
    )
    print_results(rows, results)
    (out / "results.md").write_text(markdown(rows, results), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    clock.say(f"wrote {out / 'results.md'}, results.json, front.html" + ("" if plot_warning else ", front.png"))
    return results


def _results(
    config: StudyConfig,
    prepared: Prepared,
    test: EncodedSplit | None,
    rows: list[Row],
    front: list[Row],
    study: optuna.Study,
    reference: tuple[float, float],
    by_sampler: dict[str, list[dict[str, Any]]],
    targets: list[Target],
    wall: float,
    budget: str,
    clock: Clock,
    plot_warning: str | None,
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
            f"the same rows; non-inferior: one-sided {CONFIDENCE:.0%} lower bound above -{MARGIN:g}"
        ),
        "hypervolume": {
            "reference_point": {"accuracy": reference[0], "speedup": reference[1]},
            "by_sampler": by_sampler,
        },
        "targets": [dataclasses.asdict(t) for t in targets],
        "wall_seconds": round(wall, 1),
        "phases_seconds": clock.phases,
        "budget": budget,
        "plot_warning": plot_warning,
        "noise_warning": noise_warning(rows),
    }


if __name__ == "__main__":
    main()
