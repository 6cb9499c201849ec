"""benchmarks/pareto.py's rows: the baselines measured here, the front trials read back from their artifacts, their
seed repeats and retrained versions, and every row scored against the teachers (``results.scoring``).

A helper of pareto.py only: no other benchmark imports it (shared code lives in the package).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from latencysolver.config.knobs import KNOBS
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig
from latencysolver.data.batches import EncodedSplit
from latencysolver.errors import LatencySolverError
from latencysolver.latency.protocol import latency_inputs, measure_paired
from latencysolver.models.loading import count_parameters
from latencysolver.models.student import load_student, to_runnable
from latencysolver.results.attributes import repeat_of
from latencysolver.results.front import pareto_trials
from latencysolver.results.records import PREDICTIONS, trial_record
from latencysolver.results.repeats import confirm_study_name
from latencysolver.results.retrained import Retrained
from latencysolver.results.scoring import predicted_classes, score
from latencysolver.results.storage import artifact_store_of, download_trial
from latencysolver.search.objective import model_size_bytes
from latencysolver.search.preparation import Prepared
from latencysolver.stats import correct_of, seed_pooled_difference

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
REFERENCE = "fp32 torch teacher"
INT8_BASELINE = "ORT int8 teacher"
SPLIT_KEYS = {"validation": "val", "test": "test"}  # a split's name -> its prefix in Row's fields


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
    repeats_heldout_vs_teacher: dict[str, Any] | None = None  # the same over validation + test rows together
    # --retrain: {"steps", "trial", "validation", "test", "speedup", "test_vs_teacher"} of its retrained trial
    retrained: dict[str, Any] | None = None
    val_predictions: list[int] | None = None  # per row; used for the paired figures, not written to results.json
    test_predictions: list[int] | None = None

    def record(self) -> dict[str, Any]:
        """The row as results.json stores it (predictions left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.endswith("_predictions")}


def _accuracy(predicted: list[int] | None, split: EncodedSplit | None) -> float | None:
    return None if predicted is None or split is None else score(predicted, split.labels).accuracy


def measure_baselines(
    prepared: Prepared, splits: dict[str, EncodedSplit], config: StudyConfig, workdir: Path, log
) -> list[Row]:
    """The teacher as each of ``BASELINES``: scored on ``splits`` and timed against the fp32 torch teacher."""
    teacher = prepared.teacher.model.eval()
    inputs = latency_inputs(prepared.validation, config.latency, prepared.pad_id)
    test = splits.get("test")
    rows = []
    for name, (setting, what) in BASELINES.items():
        runnable = to_runnable(teacher, setting, inputs[0], workdir / setting, config.latency.threads)
        paired = measure_paired(runnable, teacher, inputs, config.latency)
        val = predicted_classes(runnable, prepared.validation, prepared.pad_id)
        tested = predicted_classes(runnable, test, prepared.pad_id) if test is not None else None
        rows.append(
            Row(
                name=name,
                recipe=what,
                val_accuracy=score(val, prepared.validation.labels).accuracy,
                test_accuracy=_accuracy(tested, test),
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
        row = rows[-1]
        log(f"baseline {name}: validation {row.val_accuracy:.3f}, p50 {row.p50_ms:.2f} ms, {row.speedup:.2f}x")
    return rows


def _student_predictions(folder: Path, test: EncodedSplit | None, pad_id: int, threads: int) -> list[int] | None:
    """The test predictions of the student stored in ``folder`` (the model as it ran, quantization included)."""
    return None if test is None else predicted_classes(load_student(folder, threads=threads).model, test, pad_id)


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
            tested = _student_predictions(folder, test, pad_id, threads)
            rows.append(
                Row(
                    name=f"trial {t.number}",
                    recipe=Recipe.from_dict(a.recipe_dict).describe(),
                    val_accuracy=t.values[0],
                    test_accuracy=_accuracy(tested, test),
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
    splits: dict[str, EncodedSplit],
    pad_id: int,
    teacher: Row,
    threads: int,
) -> None:
    """Each front recipe's seed repeats pooled against the fp32 teacher on the same rows: validation from each
    repeat's stored predictions, test from its stored student run here (``stats.seed_pooled_difference``), and
    both splits' rows together (the held-out rows the speed target judges non-inferiority on)."""
    sibling = optuna.load_study(study_name=confirm_study_name(study.study_name), storage=storage)
    finished = sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    test = splits.get("test")
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
                    seen["test"].append(predicted_classes(load_student(folder, threads=threads).model, test, pad_id))
            correct: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}
            for name, split in splits.items():
                key = SPLIT_KEYS[name]
                reference = getattr(teacher, f"{key}_predictions")
                if reference is None or not seen[key]:
                    continue
                labels = list(split.labels)
                correct[key] = ([correct_of(p, labels) for p in seen[key]], correct_of(reference, labels))
                setattr(row, f"repeats_{key}_vs_teacher", seed_pooled_difference(*correct[key]).to_dict())
            if len(correct) == 2:  # both splits, each from every repeat in ``mine``
                (val, val_teacher), (tested, test_teacher) = correct["val"], correct["test"]
                both = [np.concatenate(pair) for pair in zip(val, tested, strict=True)]
                held_out = seed_pooled_difference(both, np.concatenate([val_teacher, test_teacher]))
                row.repeats_heldout_vs_teacher = held_out.to_dict()


def add_retrained(front: list[Row], retrained: list[Retrained]) -> None:
    """Each front row's retrained version (``latencysolver retrain``), as its trial in the sibling recorded it."""
    by_trial = {r.trial: r for r in retrained if r.state == TrialState.COMPLETE}
    for row in front:
        r = by_trial.get(row.trial) if row.trial is not None else None
        if r is not None:
            row.retrained = {
                "steps": r.steps,
                "trial": r.number,
                "validation": r.retrained.accuracy,
                "test": r.retrained.test_accuracy,
                "speedup": r.retrained.speedup,
                "test_vs_teacher": r.retrained.test_vs_teacher,
            }


def add_statistics(rows: list[Row], splits: dict[str, EncodedSplit]) -> None:
    """Each row's 95% accuracy intervals, and its paired differences on the same rows to the fp32 torch teacher
    (validation and test) and to the ORT int8 teacher (validation): ``results.scoring.score``."""
    by_name = {r.name: r for r in rows}
    teacher, int8 = by_name[REFERENCE], by_name.get(INT8_BASELINE)
    for name, split in splits.items():
        key = SPLIT_KEYS[name]
        reference = getattr(teacher, f"{key}_predictions")
        for r in rows:
            predicted = getattr(r, f"{key}_predictions")
            if predicted is None:
                continue
            scored = score(predicted, split.labels, None if r is teacher else reference)
            setattr(r, f"{key}_interval", scored.interval.to_dict())
            setattr(r, f"{key}_vs_teacher", scored.to_dict()["vs_teacher"])
            if key == "val" and int8 is not None and r is not int8 and int8.val_predictions is not None:
                r.val_vs_ort_int8 = score(predicted, split.labels, int8.val_predictions).to_dict()["vs_teacher"]


# ------------------------------------------------------------------------------------------------ --recipes


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
