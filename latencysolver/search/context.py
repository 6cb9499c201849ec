"""What every trial of a study shares (``TrialContext``), built in one place (``trial_context``) from what the study
prepared once (``Prepared``: data, teacher, and what each student kind prepared), and what a trial's training
hands back (``TrainedStudent``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig
from latencysolver.data.batches import EncodedSplit
from latencysolver.data.text import TextData
from latencysolver.latency.hardware import HardwareFingerprint
from latencysolver.latency.protocol import throughput_inputs
from latencysolver.models.elastic import ElasticStudent
from latencysolver.models.teacher import Teacher
from latencysolver.results.storage import AtomicArtifactStore


@dataclass(frozen=True)
class RunOptions:
    """How ``run``, ``worker`` and the sibling commands prepare a study on this machine."""

    cache_dir: str | None = None
    teacher_path: str | None = None
    progress: bool = True
    workers: int = 1  # local worker processes `run` starts (1: trials run in this process)
    # trial_mode elastic: the study's elastic student, copied from its artifact store (``worker``); not retrained
    elastic_path: str | None = None
    # data.augment: the teacher's labels of the augmented rows, copied from the study's artifact store (``worker``)
    augmented_path: str | None = None


@dataclass(frozen=True)
class AugmentedRows:
    """The rows built from the train rows (data/augment.py), labelled by the teacher: its logits (the split's
    labels are their argmax, for the hard-label term) and, with the CNN's representation loss, its pooled
    representations.  Added to the distillation of every student (``data.augment``), or of the CNN alone
    (``cnn.augment``); never evaluated on."""

    split: EncodedSplit
    logits: torch.Tensor
    representations: torch.Tensor | None = None
    every_student: bool = True
    key: str = ""  # the labels' cache key (models/augmented.py)
    path: Path | None = None  # their cache folder: what the study's artifact store shares with workers

    def applies_to(self, recipe: Recipe) -> bool:
        """Whether the rows join the distillation of ``recipe``'s student."""
        return self.every_student or recipe.architecture == "cnn"


@dataclass
class Prepared:
    """What a study (or a benchmark) needs before its first trial: data, encoded splits and the teacher, and what
    each student kind prepared once (``search/kinds``)."""

    data: TextData
    train: EncodedSplit
    validation: EncodedSplit
    teacher: Teacher
    tokenizer: Any
    pad_id: int
    cache_root: Path
    elastic: ElasticStudent | None = None  # the elastic kind's (trial_mode elastic)
    augmented: AugmentedRows | None = None  # data.augment (or cnn.augment, for the CNN only)
    # the CNN kind's: the teacher's pooled representation of each train row (cnn.representation_weight > 0)
    train_representations: torch.Tensor | None = None
    kinds: dict[str, Any] = field(default_factory=dict)  # any other kind's, by its name


@dataclass
class TrialContext:
    """What every trial of a study shares; built once per ``run`` (``trial_context``)."""

    config: StudyConfig
    teacher_model: torch.nn.Module
    teacher_train_logits: torch.Tensor
    train: EncodedSplit
    validation: EncodedSplit
    latency_inputs: list[dict[str, torch.Tensor]]
    artifact_store: AtomicArtifactStore
    hardware: HardwareFingerprint
    throughput_inputs: list[dict[str, torch.Tensor]] | None = None
    majority_rate: float = 0.0  # of the validation split
    pad_id: int = 0
    progress: bool = True
    teacher_predictions: torch.Tensor | None = None  # the teacher's class per validation row: the paired statistics
    # seed repeats (`latencysolver confirm`) are also measured on the test split, paired with the teacher there
    test: EncodedSplit | None = None
    teacher_test_predictions: torch.Tensor | None = None
    # the teacher's quiet p50 on this hardware: a trial's paired teacher p50 far above it means a loaded machine
    baseline_reference_ms: float | None = None
    elastic: ElasticStudent | None = None  # trial_mode elastic: the student every trial slices
    # cnn.representation_weight > 0: the teacher's pooled representation of each train row (the CNN's extra target)
    teacher_train_representations: torch.Tensor | None = None
    augmented: AugmentedRows | None = None  # data.augment > 0 (or cnn.augment > 0 with the CNN in the space)
    kinds: dict[str, Any] = field(default_factory=dict)  # what any other kind prepared, by its name


@dataclass
class TrainedStudent:
    """A trial's student after its kind trained it (or chose not to)."""

    model: torch.nn.Module  # fp32, finalized, eval mode
    kept_layers: tuple[int, ...]  # teacher layers kept (empty for a CNN)
    steps: int
    final_loss: float | None  # None: not trained (an elastic slice without recovery, a trial rejected on latency)
    # set when a check stopped distillation: {"step", "accuracy_on_check_rows", "reason": "floor" | "rung",
    # and "floor" or the rung's decision}
    early_stopped: dict[str, Any] | None = None
    kept_start: dict[str, Any] | None = None  # set by ``keep_the_better`` when the untrained start was kept


def trial_context(
    config: StudyConfig,
    prepared: Prepared,
    inputs: list[dict[str, torch.Tensor]],
    store: AtomicArtifactStore,
    hardware: HardwareFingerprint,
    *,
    progress: bool = True,
    majority_rate: float = 0.0,
    teacher_predictions: torch.Tensor | None = None,
    test: tuple[EncodedSplit, torch.Tensor] | None = None,
    baseline_reference_ms: float | None = None,
    throughput: bool = False,
) -> TrialContext:
    """The one place a ``TrialContext`` is built: from the study's ``prepared`` teacher, splits and kinds, the
    latency rows ``inputs``, the artifact ``store``; ``throughput``: also the throughput batches when the study
    sets ``latency.throughput_batch_size``; ``test``: the test split and the teacher's answers on it."""
    latency = config.latency
    return TrialContext(
        config=config,
        teacher_model=prepared.teacher.model,
        teacher_train_logits=prepared.teacher.train_logits,
        teacher_train_representations=prepared.train_representations,
        augmented=prepared.augmented,
        train=prepared.train,
        validation=prepared.validation,
        latency_inputs=inputs,
        artifact_store=store,
        hardware=hardware,
        throughput_inputs=(
            throughput_inputs(prepared.validation, latency, latency.throughput_batch_size, prepared.pad_id)
            if throughput and latency.throughput_batch_size
            else None
        ),
        pad_id=prepared.pad_id,
        progress=progress,
        majority_rate=majority_rate,
        teacher_predictions=teacher_predictions,
        test=test[0] if test else None,
        teacher_test_predictions=test[1] if test else None,
        elastic=prepared.elastic,
        baseline_reference_ms=baseline_reference_ms,
        kinds=dict(prepared.kinds),
    )


def with_kind_state(prepared: Prepared, name: str, state: Any) -> Prepared:
    """``prepared`` with ``state`` as what kind ``name`` prepared for the study."""
    return dataclasses.replace(prepared, kinds={**prepared.kinds, name: state})
