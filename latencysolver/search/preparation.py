"""What a study (or a benchmark) needs before its first trial: the data, loaded and encoded; the fine-tuned
teacher with its train logits; the test split for seed repeats; the teacher's baseline latency on this machine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from latencysolver.cache import cache_root
from latencysolver.config.study import LatencyConfig, StudyConfig
from latencysolver.data.augment import (
    SENTENCE_KINDS,
    Vocabulary,
    applicable_kinds,
    augment,
    embedding_neighbours,
    vocabulary_words,
)
from latencysolver.data.batches import EncodedSplit, encode_split
from latencysolver.data.text import YES_NO, TextData, configured
from latencysolver.devices import resolve_device, training_placement
from latencysolver.latency.hardware import HardwareFingerprint, hardware_fingerprint
from latencysolver.latency.protocol import measure_latency
from latencysolver.models.augmented import label_rows
from latencysolver.models.loading import check_max_length, load_model_config, load_tokenizer
from latencysolver.models.teacher import Teacher, prepare_teacher, teacher_representations
from latencysolver.results.records import TeacherRecord
from latencysolver.results.storage import AtomicArtifactStore
from latencysolver.search.context import AugmentedRows, Prepared, RunOptions, TrialContext, trial_context
from latencysolver.search.kinds import KINDS
from latencysolver.training.evaluate import predict_logits

Log = Callable[[str], None]


def baseline_reference_ms(
    teacher: TeacherRecord | None, model: torch.nn.Module, inputs: list, config: LatencyConfig, key: str
) -> float:
    """The teacher's p50 that trials' paired teacher p50s are checked against (``latency/stability.py``): the one
    ``run`` recorded when this machine has the same hardware fingerprint ``key``, else measured here now."""
    if teacher is not None and teacher.hardware_key == key and teacher.latency_p50_ms:
        return teacher.latency_p50_ms
    return measure_latency(model, inputs, config).p50_ms


# ------------------------------------------------------------------------------------------------ run


def study_hardware(config: StudyConfig) -> HardwareFingerprint:
    """The fingerprint of this machine for ``config``: latency timed on ``latency.device``, students trained on
    ``training.device``."""
    return hardware_fingerprint(config.latency.threads, config.latency.device, str(training_placement(config).device))


def prepare(
    config: StudyConfig,
    options: RunOptions = RunOptions(),
    log: Log = print,
    check_data: Callable[[TextData], None] | None = None,
) -> Prepared:
    """Load and encode the data, then fine-tune (or load the cached) teacher, then let each student kind prepare
    what it needs (in elastic mode: train or load the elastic student); writes nothing to storage.

    ``check_data`` sees the data as soon as it is loaded: it may refuse it before the teacher is trained."""
    placement = training_placement(config)  # a CUDA device this machine lacks: refused before anything runs
    resolve_device(config.latency.device, file=config.config_file, key="latency.device", auto=False)
    data = configured(config.data)
    classes = "" if data.label_names == YES_NO else f", classes {', '.join(data.label_names)}"
    log(
        f"data: {data.source}: {len(data.train)} train / {len(data.validation)} validation rows "
        f"(majority class {data.validation.majority_rate():.1%} of validation{classes})"
    )
    if check_data is not None:
        check_data(data)
    root = cache_root(options.cache_dir)
    tokenizer = load_tokenizer(config.model)
    check_max_length(
        config.data.max_length, tokenizer, load_model_config(config.model), f"{config.config_file}: ", "data.max_length"
    )
    pad_id = tokenizer.pad_token_id or 0
    log(f"training: on {placement.describe()}")
    train, validation = (
        encode_split(split, tokenizer, config.data.max_length, root, config.model)
        for split in (data.train, data.validation)
    )
    teacher = prepare_teacher(
        config,
        train,
        data.train.fingerprint(),
        root,
        teacher_path=options.teacher_path,
        pad_id=pad_id,
        progress=options.progress,
        log=log,
        labels=data.label_names,
    )
    cnn = "cnn" in config.search_space.values_of("architecture")
    prepared = Prepared(
        augmented=prepare_augmented(config, data, teacher, tokenizer, pad_id, root, options, log, cnn=cnn),
        data=data,
        train=train,
        validation=validation,
        teacher=teacher,
        tokenizer=tokenizer,
        pad_id=pad_id,
        cache_root=root,
    )
    for kind in KINDS.values():  # the elastic student, the CNN's targets: what each kind needs once per study
        prepared = kind.prepare(config, prepared, options, log)
    return prepared


def prepare_augmented(
    config: StudyConfig,
    data: TextData,
    teacher: Teacher,
    tokenizer: Any,
    pad_id: int,
    root: Path,
    options: RunOptions,
    log: Log,
    *,
    cnn: bool,
) -> AugmentedRows | None:
    """``data.augment`` rows for every student; else, when the space has the CNN, ``cnn.augment`` rows for the CNN
    alone (its sentence-level generators, seeded by ``cnn_distillation.seed``); None when neither is set.  Built
    here (seconds), labelled by the teacher once (cached; a worker uses the study's copy)."""
    settings = config.data
    if settings.augment:
        factor, seed, every_student = settings.augment, settings.augment_seed, True
        kinds = applicable_kinds(settings.augment_kinds, data.train.text_pair is not None)
    elif cnn and config.cnn.augment:
        factor, seed, every_student, kinds = config.cnn.augment, config.cnn_distillation.seed, False, SENTENCE_KINDS
    else:
        return None
    vocabulary = None
    if {"neighbour", "mask"} & set(kinds):
        embeddings = teacher.model.get_input_embeddings().weight  # type: ignore[operator]  # a transformers model
        neighbours = (
            embedding_neighbours(tokenizer, embeddings, vocabulary_words(data.train)) if "neighbour" in kinds else {}
        )
        vocabulary = Vocabulary(neighbours, getattr(tokenizer, "mask_token", None))
    rows = augment(data.train, factor, seed=seed, kinds=kinds, vocabulary=vocabulary)
    whom = "every student" if every_student else "the CNN"
    log(
        f"augment: {len(rows)} teacher-labelled rows from the {len(data.train)} train rows "
        f"({', '.join(kinds)}), for {whom}"
    )
    if not rows:  # no row had anything to vary
        return None
    placement = training_placement(config)
    encoded = encode_split(rows, tokenizer, config.data.max_length, root, config.model)
    labelled = label_rows(
        teacher,
        encoded,
        rows.fingerprint(),
        root,
        pad_id=pad_id,
        progress=options.progress,
        device=placement.device,
        path=Path(options.augmented_path) if options.augmented_path else None,
    )
    if labelled.seconds is not None:
        log(f"augment: labelled by the teacher in {labelled.seconds / 60:.1f} min -> {labelled.path}")
    representations = None
    if cnn and config.cnn.representation_weight > 0:
        representations = teacher_representations(
            teacher,
            encoded,
            root,
            rows.fingerprint(),
            pad_id=pad_id,
            progress=options.progress,
            device=placement.device,
        )
    return AugmentedRows(
        split=dataclasses.replace(encoded, labels=tuple(labelled.logits.argmax(dim=-1).tolist())),
        logits=labelled.logits,
        representations=representations,
        every_student=every_student,
        key=labelled.key,
        path=labelled.path,
    )


def prepare_test_split(
    prepared: Prepared, config: StudyConfig, options: RunOptions, log: Log
) -> tuple[EncodedSplit, torch.Tensor] | None:
    """Seed repeats are checked on the test split: it encoded, and the teacher's answers on it (for pairing)."""
    if prepared.data.test is None:
        log(f"note: {prepared.data.source} has no test split: the repeats are measured on validation only")
        return None
    test = encode_split(
        prepared.data.test, prepared.tokenizer, config.data.max_length, prepared.cache_root, config.model
    )
    logits = predict_logits(
        prepared.teacher.model, test, pad_id=prepared.pad_id, desc="teacher test evaluate", progress=options.progress
    )
    return test, logits.argmax(dim=-1)


def scoring_splits(
    prepared: Prepared, config: StudyConfig, options: RunOptions, log: Log
) -> tuple[dict[str, EncodedSplit], dict[str, list[int]]]:
    """What a benchmark scores a model on against the teacher (``results.scoring.score_model``): the validation
    split and, when the data has one, the test split (``prepare_test_split``), with the teacher's predictions
    on each, keyed ``"validation"`` and ``"test"``."""
    validation = predict_logits(
        prepared.teacher.model.eval(), prepared.validation, pad_id=prepared.pad_id, progress=options.progress
    )
    splits = {"validation": prepared.validation}
    teacher = {"validation": validation.argmax(dim=-1).tolist()}
    tested = prepare_test_split(prepared, config, options, log)
    if tested is not None:
        splits["test"], teacher["test"] = tested[0], tested[1].tolist()
    return splits, teacher


def standalone_context(config: StudyConfig, prepared: Prepared, inputs: list, folder: str) -> TrialContext:
    """For benchmarks that build students exactly as trials do, outside any study: the prepared teacher, splits,
    and kinds, latency rows ``inputs``, and an artifact store in ``folder`` (unused by ``train_student``)."""
    prepared.teacher.model.eval()
    return trial_context(config, prepared, inputs, AtomicArtifactStore(folder), study_hardware(config), progress=False)
