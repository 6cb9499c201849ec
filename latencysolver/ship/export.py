"""Ship one trial: its stored student (no retraining), the tokenizer, an ONNX file and a model card, in one folder.

    model.safetensors, config.json, student.json   the student as stored by its trial (``latencysolver.load``)
    tokenizer files                                the teacher's tokenizer
    model.onnx                                     ort-* trials: the graph the trial measured (its artifact);
                                                   torch trials: the fp32 student exported now, and quantized to
                                                   per-channel dynamic int8 when the trial is int8 (bf16/fp16
                                                   trials get an fp32 graph: ONNX Runtime has no fast CPU
                                                   kernels for them)
    predictions.json, latency_samples.json         the trial's validation predictions and raw latency samples
    metrics.json, README.md                        validation (from the search) and test (measured here)
                                                   accuracy/F1, latency with its hardware fingerprint, recipe,
                                                   teacher and data

Everything is written to a staging folder beside ``out`` first and moved in at the end, so a failure (an ONNX
export that raises, a missing artifact) leaves no half-written export behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from latencysolver.data.text import BOOLQ, YES_NO, recorded_schema
from latencysolver.errors import DataError, StorageError, first_line
from latencysolver.files import check_writable, writing
from latencysolver.models.loading import load_tokenizer
from latencysolver.models.student import ONNX_FILE, STUDENT_JSON, WEIGHTS, load_fp32_student
from latencysolver.results.front import difference_text
from latencysolver.results.records import (
    PREDICTIONS,
    StudyRecord,
    TeacherRecord,
    TrialRecord,
    present,
    study_record,
    trial_record,
)
from latencysolver.results.storage import artifact_store_of
from latencysolver.ship.card import card
from latencysolver.ship.onnx_files import write_onnx
from latencysolver.ship.remote_code import write_remote_code
from latencysolver.stats import Interval, PairedComparison, accuracy_interval, correct_of, paired_difference

REQUIRED = (WEIGHTS, STUDENT_JSON, PREDICTIONS)
METRICS = "metrics.json"
CARD = "README.md"
NOT_COMPARABLE = "accuracies on a local split of the BoolQ dev set are not comparable to published BoolQ dev accuracies"
# ONNX operators that only a quantized graph has (dynamic int8 from onnxruntime.quantization, or QDQ / QLinear)

Log = Callable[[str], None]


def export_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    out: str | Path,
    artifacts: str | None = None,
    *,
    storage: BaseStorage | str,
    data: str | None = None,
    selection: dict[str, Any] | None = None,
    progress: bool = True,
    log: Log = lambda _: None,
    repeats: dict[str, Any] | None = None,
    retrain: dict[str, Any] | None = None,
) -> Path:
    """Write ``trial`` of ``study`` to ``out``; ``data`` overrides the study's data source for the test split.

    ``selection`` (rule and reason, from ``latencysolver.selection``) is recorded in the card, and so are
    ``repeats`` (``confirm``'s seed repeats of the recipe) and ``retrain`` (both budgets of a trial of ``retrain``);
    ``log`` gets one line per thing the export measured.
    """
    out = check_writable(out, "--out", folder=True)  # under a file, read-only: refused before any work
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / STUDENT_JSON).is_file())):
        raise StorageError(f"--out {str(out)!r}: folder exists and is not an earlier export; pick an empty one")
    store = artifact_store_of(study, artifacts)
    metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=optuna.storages.get_storage(storage))}
    missing = [name for name in REQUIRED if name not in metas]
    record = trial_record(trial)
    if record.recipe is None:
        raise StorageError(
            f"trial {trial.number}: recipe {record.recipe_dict!r} is missing or unreadable"
            + (f": {record.recipe_error}" if record.recipe_error else "")
        )
    recipe = record.recipe
    if recipe.backend == "onnxruntime" and ONNX_FILE not in metas:
        missing.append(ONNX_FILE)
    if missing:
        raise StorageError(f"trial {trial.number}: artifact {missing[0]!r} is missing from the study's artifact store")
    check_artifact_files(store, metas, trial.number, artifacts or study_record(study).artifact_dir)
    with writing(out, "--out"):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-export-", dir=out.parent))
    try:
        with writing(out, "--out"):  # the trial's files copied out of the artifact store
            for name, meta in metas.items():  # the student's own files (+ model.onnx), predictions, latency samples
                download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(staging / name))
        teacher = study_record(study).teacher or TeacherRecord()
        source = teacher.path if Path(teacher.path or "").is_dir() else teacher.base_model
        if source is None:
            raise StorageError(f"study {study.study_name!r}: user attr 'teacher' names no path or base_model")
        tokenizer = load_tokenizer(source)
        with writing(out, "--out"):
            tokenizer.save_pretrained(staging)
            record_tokenizer(staging, tokenizer)
            onnx = write_onnx(staging, recipe, tokenizer)
            if recipe.architecture != "cnn":  # from_pretrained(folder, trust_remote_code=True) rebuilds it
                write_remote_code(staging, load_fp32_student(staging))
        log(f"onnx: {ONNX_FILE} is {onnx['precision']} ({onnx['how']})")
        test, onnx_test, why_not = evaluate_test(study, staging, data, progress)
        if test is None:
            log(f"test: not measured: {why_not}")
        else:
            vs = PairedComparison.from_dict(test["vs_teacher"]) if test.get("vs_teacher") else None
            log(
                f"test: accuracy {test['accuracy']:.3f} "
                f"{Interval.from_dict(test['accuracy_interval']).describe(estimate=False)}, F1 {test['f1']:.3f} on "
                f"{test['rows']} rows of {test['source']} (majority class {test['majority_rate']:.1%})"
                + (f"; vs the teacher on the same rows {difference_text(vs)} points (paired)" if vs else "")
                + f" [{test['seconds']:.1f}s]"
            )
        if onnx_test is not None:
            onnx["test"] = onnx_test
            if "agreement_with_model" in onnx_test:
                log(
                    f"onnx on test: accuracy {onnx_test['accuracy']:.3f}, F1 {onnx_test['f1']:.3f}; same answer as "
                    f"the exported model on {onnx_test['agreement_with_model']:.1%} of rows"
                )
        metrics = _metrics(study, trial, onnx, test, why_not, selection)
        metrics["repeats"] = repeats  # `latencysolver confirm`'s seed repeats of this recipe, when it ran
        if retrain is not None:  # a trial of `latencysolver retrain`: its steps and its search trial's
            metrics["retrain"] = retrain
        columns, classes = recorded_schema(json.loads((staging / STUDENT_JSON).read_text()))
        metrics["columns"], metrics["classes"] = dataclasses.asdict(columns), list(classes)
        if columns != BOOLQ or classes != YES_NO:  # the BoolQ dev-set note is about BoolQ only
            metrics["data"].pop("note", None)
        with writing(out, "--out"):
            (staging / METRICS).write_text(json.dumps(metrics, indent=2))
            (staging / CARD).write_text(card(metrics))
            out.mkdir(parents=True, exist_ok=True)
            for path in sorted(staging.iterdir()):  # renames in one folder: they need no space
                os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def check_artifact_files(store: FileSystemArtifactStore, metas: dict[str, Any], number: int, folder: Any) -> None:
    """Every file the trial recorded is in the artifact folder (a ``StorageError`` naming the first that is not)."""
    order = [*(name for name in REQUIRED if name in metas), *sorted(set(metas) - set(REQUIRED))]
    for name in order:
        try:
            store.open_reader(metas[name].artifact_id).close()
        except (ArtifactNotFound, OSError):
            raise StorageError(
                f"artifact folder {str(folder)!r}: trial {number}'s {name!r} (artifact id "
                f"{metas[name].artifact_id}) is not there; pass --artifacts with the study's artifact folder"
            ) from None


def record_tokenizer(folder: Path, tokenizer: Any) -> None:
    """Add the shipped tokenizer's fingerprint to ``student.json``: ``latencysolver.load`` refuses any other."""
    from latencysolver.ship.inference import TOKENIZER_KEY, tokenizer_fingerprint

    path = folder / STUDENT_JSON
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StorageError(f"trial artifact {STUDENT_JSON}: unreadable: {first_line(exc)}") from None
    info[TOKENIZER_KEY] = tokenizer_fingerprint(tokenizer)
    path.write_text(json.dumps(info, indent=2))


# ------------------------------------------------------------------------------------------------ ONNX


def evaluate_test(
    study: optuna.Study, folder: Path, data: str | None, progress: bool
) -> tuple[dict | None, dict | None, str | None]:
    """Accuracy and F1 of the export in ``folder`` (``latencysolver.load``) on the test split of ``data`` (else
    the study's source), and of its ``model.onnx`` when that is a different model (torch trials).

    Returns (test, onnx_test, reason): ``reason`` says why ``test`` is None.  An explicit ``data`` that cannot
    be loaded is an error; the study's own source missing here (another machine) only leaves the test out.
    """
    from latencysolver.config.convert import build
    from latencysolver.config.study import DataConfig
    from latencysolver.data.batches import encode_pairs
    from latencysolver.data.text import configured
    from latencysolver.models.onnx_backend import load_onnx
    from latencysolver.ship.inference import load
    from latencysolver.training.evaluate import predict_logits, scores

    record = study_record(study)
    source = data or (record.data.source if record.data else None)
    if not source:
        return None, None, "the study records no data source (pass --data)"
    stored = (record.config or {}).get("data") or {}
    limit = None if data else stored.get("limit_test")
    data_config = build(DataConfig, {k: v for k, v in stored.items() if k in ("columns", "labels")}, "the study")
    try:
        loaded = configured(data_config, source, limit_test=limit)
    except DataError as exc:
        if data:
            raise
        return None, None, f"the study's data {source!r} cannot be loaded here ({exc}); pass --data"
    if loaded.test is None:
        return None, None, f"{source} has no test split"
    split = loaded.test
    start = time.perf_counter()
    clf = load(folder)
    encoded = encode_pairs(clf.tokenizer, split.text, split.text_pair, clf.max_length, labels=split.label)
    pad_id = clf.tokenizer.pad_token_id or 0
    logits = predict_logits(clf.model, encoded, pad_id=pad_id, desc="test evaluate", progress=progress)
    quality = scores(logits, encoded.labels)
    labels = list(encoded.labels)
    correct = correct_of(logits.argmax(-1).tolist(), labels)
    teacher = _teacher_test_predictions(record, encoded, pad_id, progress)
    test = {
        "accuracy": quality.accuracy,
        "accuracy_interval": accuracy_interval(correct).to_dict(),
        "vs_teacher": (
            paired_difference(correct, correct_of(teacher, labels)).to_dict() if teacher is not None else None
        ),
        "f1": quality.f1,
        "rows": len(split),
        "source": str(source),
        "majority_rate": split.majority_rate(),
        "limit": limit,
        "evaluated": "latencysolver.load(export)",
        "seconds": round(time.perf_counter() - start, 2),
    }
    if clf.recipe.backend == "onnxruntime":
        return test, {"same_as_model": True}, None
    onnx_logits = predict_logits(
        load_onnx(folder / ONNX_FILE), encoded, pad_id=pad_id, desc="onnx test evaluate", progress=progress
    )
    onnx_quality = scores(onnx_logits, encoded.labels)
    agreement = (onnx_logits.argmax(-1) == logits.argmax(-1)).float().mean().item()
    return test, {"accuracy": onnx_quality.accuracy, "f1": onnx_quality.f1, "agreement_with_model": agreement}, None


def _teacher_test_predictions(record: StudyRecord, encoded: Any, pad_id: int, progress: bool) -> list[int] | None:
    """The study's teacher on the same test rows (for the paired difference), when its folder is on this machine."""
    from latencysolver.models.loading import load_classifier
    from latencysolver.training.evaluate import predict_logits

    path = record.teacher.path if record.teacher else None
    if not path or not Path(path).is_dir():
        return None
    teacher = load_classifier(path)
    logits = predict_logits(teacher, encoded, pad_id=pad_id, desc="teacher test evaluate", progress=progress)
    return logits.argmax(-1).tolist()


# ------------------------------------------------------------------------------------------------ metrics, card


def _hardware(record: TrialRecord) -> dict[str, Any] | None:
    if not isinstance(record.hardware, dict):
        return None
    fingerprint = record.fingerprint()
    if fingerprint is None:  # recorded by another version: keep what it says
        return {"describe": None, "key": record.hardware_key, "fingerprint": record.hardware}
    return {
        "describe": fingerprint.describe(),
        "key": record.hardware_key or fingerprint.key,
        "fingerprint": fingerprint.to_dict(),
    }


def _metrics(
    study: optuna.Study,
    trial: FrozenTrial,
    onnx: dict,
    test: dict | None,
    why_not: str | None,
    selection: dict[str, Any] | None,
) -> dict:
    a, s = trial_record(trial), study_record(study)
    data = present(s.data)
    data["note"] = NOT_COMPARABLE
    metrics = {
        "study": study.study_name,
        "trial": trial.number,
        "selection": selection,
        "objectives": {
            "names": study.metric_names,
            "directions": [d.name.lower() for d in study.directions],
            "values": list(trial.values),
        },
        "validation": {
            "accuracy": trial.values[0],
            "accuracy_interval": a.accuracy_interval,
            "vs_teacher": a.vs_teacher,
            "f1": a.f1,
            "rows": data.get("validation_rows"),
            "measured": "during the search, on the trial's own model",
        },
        "test": test,
        "latency": {
            "p50_ms": a.latency_p50_ms,
            "p90_ms": a.latency_p90_ms,
            "cv": a.latency_cv,
            "speedup_vs_teacher": a.speedup,
            "speedup_cv": a.speedup_cv,
            "teacher_p50_ms_paired": a.reference_p50_ms,
            **(s.latency or {}),
            "hardware": _hardware(a),
        },
        "onnx": onnx,
        "parameters": a.parameters,
        "nonzero_parameters": a.nonzero_parameters,
        "size_bytes": a.size_bytes,
        "layers": a.layers,
        "recipe": a.recipe_dict,
        "teacher": dataclasses.asdict(s.teacher) if s.teacher else None,
        "data": data,
    }
    if test is None:
        metrics["test_unavailable"] = why_not
    return metrics
