"""The elastic student of ``trial_mode: elastic``: built once per (teacher, train data, elastic settings, smallest
sub-network), cached like the teacher.

    teacher copy → rewire (heads and neurons by importance) → sandwich-rule distillation → cache

Cache layout under ``cache_root()``: ``elastic/<key>/``, a Hugging Face model folder of the teacher's own shape
(rewiring permutes, it removes nothing) and ``elastic.json``, written last.  Workers on one machine share it under
the entry's file lock; ``search/sharing.py`` puts it in the study's artifact store for workers elsewhere.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from latencysolver.cache import content_hash
from latencysolver.compression.elastic import ElasticShape, SubNetwork, elastic_shape, rewire_, subnetwork
from latencysolver.config.space import SearchSpace
from latencysolver.config.study import StudyConfig
from latencysolver.config.training import DEFAULT_ELASTIC_STEPS, ElasticConfig
from latencysolver.data.batches import EncodedSplit, train_batches
from latencysolver.devices import training_placement
from latencysolver.errors import ModelError
from latencysolver.files import publish_folder, remove_stale_staging
from latencysolver.locks import file_lock
from latencysolver.models.loading import load_classifier
from latencysolver.models.teacher import Teacher
from latencysolver.training.elastic import train_elastic

MARKER = "elastic.json"
IMPORTANCE_BATCHES = 8  # labelled train batches the gradient importance is summed over


@dataclass(frozen=True)
class ElasticStudent:
    path: Path
    key: str
    model: nn.Module  # eval mode; every trial slices it (``compression.elastic.slice_model``), none changes it
    shape: ElasticShape
    smallest: SubNetwork


def smallest_subnetwork(space: SearchSpace, shape: ElasticShape) -> SubNetwork:
    """The narrowest and shallowest sub-network the search space can ask for: its largest prune ratio and skip."""
    ratio = max(float(v) for v in space.values_of("prune_ratio"))
    skip = max(float(v) for v in space.values_of("skip_prob"))
    return subnetwork(shape, ratio, skip)


def elastic_key(config: StudyConfig, teacher_key: str, train_fingerprint: str, smallest: SubNetwork) -> str:
    return content_hash(
        "elastic-v2",
        teacher_key,
        train_fingerprint,
        config.data.max_length,
        dataclasses.asdict(config.elastic),
        dataclasses.asdict(smallest),
    )


def prepare_elastic(
    config: StudyConfig,
    teacher: Teacher,
    train_split: EncodedSplit,
    train_fingerprint: str,
    cache_root: Path,
    *,
    pad_id: int = 0,
    progress: bool = True,
    log=print,
    path: Path | None = None,
    train_logits: torch.Tensor | None = None,
) -> ElasticStudent:
    """The cached elastic student for this study, trained here (under the cache lock) when it is not cached.

    ``path``: the study's own elastic student, as a worker copied it from the artifact store; loaded as it is (a
    worker locates the teacher differently, which would change the cache key, not the student).  ``train_logits``:
    the teacher's logits on ``train_split`` when it is more than the teacher's train rows (the augmented rows
    joined to them); ``train_fingerprint`` then names both."""
    shape = elastic_shape(teacher.model)  # refuses, naming the family, a model it cannot slice
    smallest = smallest_subnetwork(config.search_space, shape)
    if path is not None:
        if not (path / MARKER).is_file():
            raise ModelError(f"elastic student {path}: not an elastic student folder ({MARKER} is missing)")
        log(f"elastic student: the study's, {path}")
        return ElasticStudent(path, path.name, _load(path), shape, smallest)
    key = elastic_key(config, teacher.key, train_fingerprint, smallest)
    path = cache_root / "elastic" / key
    with file_lock(cache_root / "elastic" / f"{key}.lock"):
        remove_stale_staging(path.parent, f".{key}-")
        if (path / MARKER).is_file():
            log(f"elastic student: cached {path}")
            return ElasticStudent(path, key, _load(path), shape, smallest)
        logits = teacher.train_logits if train_logits is None else train_logits
        model = _build(config, teacher, train_split, logits, smallest, path, pad_id=pad_id, progress=progress, log=log)
    return ElasticStudent(path, key, model, shape, smallest)


def _load(path: Path) -> nn.Module:
    try:
        return load_classifier(str(path))
    except ModelError as exc:
        raise ModelError(f"elastic student {path} cannot be loaded ({exc}); delete the folder to rebuild it") from None


def _build(
    config: StudyConfig,
    teacher: Teacher,
    train_split: EncodedSplit,
    train_logits: torch.Tensor,
    smallest: SubNetwork,
    path: Path,
    *,
    pad_id: int,
    progress: bool,
    log,
) -> nn.Module:
    settings = config.elastic
    model = copy.deepcopy(teacher.model)
    batches = None
    if settings.importance == "gradient":
        labelled = train_batches(train_split, settings.batch_size, settings.seed, pad_id)
        batches = [b.inputs | {"labels": b.labels} for b in itertools.islice(labelled, IMPORTANCE_BATCHES)]
    rewire_(model, settings.importance, batches)
    log(
        f"elastic student: training once for {steps_line(settings, len(train_split))} (sub-networks down to "
        f"{smallest.describe()}, {2 + settings.random_subnetworks} per step); cached for later runs"
    )
    placement = training_placement(config)
    estimate = _Estimate(log)
    result = train_elastic(
        model,
        train_split,
        train_logits,
        settings,
        smallest,
        pad_id=pad_id,
        progress=progress,
        placement=placement,
        should_stop=estimate,
    )

    def write(staging: Path) -> None:
        model.save_pretrained(staging)  # type: ignore[operator]  # a transformers model (nn.Module types it Tensor)
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "teacher_key": teacher.key,
                    "elastic": dataclasses.asdict(settings),
                    "smallest": dataclasses.asdict(smallest),
                    "steps": result.steps,
                    "final_loss": result.final_loss,
                    "seconds": round(result.seconds, 1),
                },
                indent=2,
            )
        )

    publish_folder(path, write)
    log(f"elastic student: trained in {result.seconds / 60:.1f} min (final loss {result.final_loss:.3f}) -> {path}")
    return model.eval()


def steps_line(settings: ElasticConfig, rows: int) -> str:
    """How many steps the elastic student trains on ``rows`` train rows, and why that many."""
    steps = settings.steps_for(rows)
    epochs = steps * settings.batch_size / rows
    if settings.steps is not None:
        return f"{steps} steps (elastic.steps; {epochs:.3g} epochs of {rows} train rows)"
    capped = "" if steps < DEFAULT_ELASTIC_STEPS else f", at most {DEFAULT_ELASTIC_STEPS}"
    return (
        f"{steps} steps ({epochs:.3g} epochs of {rows} train rows at batch {settings.batch_size}: elastic.epochs "
        f"{settings.epochs:g}{capped}; set elastic.steps to choose)"
    )


class _Estimate:
    """``should_stop`` for ``train_elastic`` that says, once, how long the whole training will take."""

    AFTER = 3  # steps timed first (the first one is slower: kernels are built per input shape)

    def __init__(self, log) -> None:
        self.log, self.start = log, time.perf_counter()

    def __call__(self, step: int, total: int) -> bool:
        if step == self.AFTER and total > self.AFTER:
            seconds = (time.perf_counter() - self.start) / step
            left = seconds * (total - step)
            shown = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
            self.log(f"elastic student: {seconds:.1f} s a step, about {shown} for the {total - step} steps left")
        return False


def training_seconds(path: Path) -> float | None:
    """How long the cached elastic student took to train (its ``elastic.json``), for the benchmark's clock."""
    return _recorded(path, "seconds")


def trained_steps(path: Path) -> int | None:
    """How many steps the cached elastic student trained (its ``elastic.json``)."""
    steps = _recorded(path, "steps")
    return None if steps is None else int(steps)


def _recorded(path: Path, name: str) -> float | None:
    try:
        return float(json.loads((path / MARKER).read_text())[name])
    except (OSError, ValueError, KeyError, TypeError):
        return None
