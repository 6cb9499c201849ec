"""The fine-tuned teacher: trained once per (base model, train data, max length, training config), cached.

Cache layout under ``cache_root()``::

    teachers/<key>/              a Hugging Face model folder (+ tokenizer) and ``teacher.json``, written last
    logits/<teacher>-<data>.pt   the teacher's logits on the train split, so trials never run the teacher

A teacher folder is built in a temporary sibling and renamed into place, so an interrupted fine-tune leaves no
half-written entry.  ``--teacher PATH`` skips the fine-tune and uses an existing fine-tuned checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from latencysolver.cache import content_hash
from latencysolver.config.study import StudyConfig
from latencysolver.data.batches import EncodedSplit, eval_batches
from latencysolver.data.text import YES_NO
from latencysolver.devices import on_device, training_placement
from latencysolver.errors import ModelError, first_line, shown_path
from latencysolver.files import atomic_file, publish_folder, remove_stale_staging, writing
from latencysolver.locks import file_lock
from latencysolver.models.loading import load_classifier, load_tokenizer, model_fingerprint
from latencysolver.training.evaluate import predict_logits
from latencysolver.training.loop import TrainResult, cross_entropy_loss, train

MARKER = "teacher.json"


@dataclass(frozen=True)
class Teacher:
    path: Path  # a Hugging Face folder: model, config and tokenizer
    key: str
    model: nn.Module
    train_logits: torch.Tensor  # (train rows, classes), fp32


def teacher_key(config: StudyConfig, train_fingerprint: str) -> str:
    return content_hash(
        "teacher-v1",
        model_fingerprint(config.model),
        train_fingerprint,
        config.data.max_length,
        dataclasses.asdict(config.teacher),
    )


def given_teacher_key(teacher_path: str) -> str:
    """The key of a fine-tuned checkpoint given with ``--teacher`` (a hash of its files); a ``ModelError`` when it
    is not a folder."""
    path = Path(teacher_path).expanduser()
    if not path.is_dir():
        raise ModelError(f"--teacher: not a folder: {shown_path(teacher_path)}")
    return content_hash("given", model_fingerprint(str(path)))


def prepare_teacher(
    config: StudyConfig,
    train_split: EncodedSplit,
    train_fingerprint: str,
    cache_root: Path,
    *,
    teacher_path: str | None = None,
    pad_id: int = 0,
    progress: bool = True,
    log=print,
    labels: tuple[str, ...] = YES_NO,
) -> Teacher:
    """The fine-tuned teacher (``teacher_path``, else the cache, else fine-tuned now) with ``len(labels)`` classes
    named ``labels``, and its logits on the train split."""
    if teacher_path is not None:
        path = Path(teacher_path).expanduser()
        key = given_teacher_key(teacher_path)
        model = _load_checkpoint(path, cache_root)
        _check_classes(model, labels, f"--teacher {path}")
        log(f"teacher: using the fine-tuned checkpoint {path}")
    else:
        key = teacher_key(config, train_fingerprint)
        path = cache_root / "teachers" / key
        # Workers on this machine share the cache: the first fine-tunes, the others wait here and load it.
        with file_lock(cache_root / "teachers" / f"{key}.lock"):
            # under the lock no other process writes this key: a `.<key>-*` staging folder is a killed one's leftover
            remove_stale_staging(path.parent, f".{key}-")
            if (path / MARKER).is_file():
                model = _load_checkpoint(path, cache_root)
                log(f"teacher: cached fine-tune {path}")
            else:
                model = _fine_tune(config, train_split, path, pad_id=pad_id, progress=progress, log=log, labels=labels)
    logits = _train_logits(
        model,
        train_split,
        cache_root / "logits" / f"{key}-{train_fingerprint}.pt",
        pad_id=pad_id,
        progress=progress,
        device=training_placement(config).device,
    )
    return Teacher(path=path, key=key, model=model, train_logits=logits)


def _load_checkpoint(path: Path, cache_root: Path) -> nn.Module:
    """Only a folder of our cache is ours to delete and rebuild; any other (``--teacher``, or the folder a study
    recorded) is the user's, and nothing here would rebuild it."""
    try:
        return load_classifier(str(path))
    except ModelError as exc:
        ours = path.resolve().is_relative_to(cache_root.expanduser().resolve())
        advice = (
            "delete the folder to rebuild it"
            if ours
            else "it is not in latencysolver's cache, nothing rebuilds it: pass a fine-tuned checkpoint with --teacher"
        )
        raise ModelError(f"teacher checkpoint {path} cannot be loaded ({exc}); {advice}") from None


def _check_classes(model: nn.Module, labels: tuple[str, ...], what: str) -> None:
    classes = getattr(model.config, "num_labels", None)
    if classes != len(labels):
        raise ModelError(f"{what}: the checkpoint has {classes} classes, the data {len(labels)} ({', '.join(labels)})")


def _fine_tune(
    config: StudyConfig,
    train_split: EncodedSplit,
    path: Path,
    *,
    pad_id: int,
    progress: bool,
    log,
    labels: tuple[str, ...],
) -> nn.Module:
    torch.manual_seed(config.teacher.seed)  # the new classification head is drawn here: same seed, same teacher
    model = load_classifier(config.model, num_labels=len(labels))
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {name: i for i, name in enumerate(labels)}
    log(
        f"teacher: fine-tuning {config.model} on {len(train_split)} train rows "
        f"({config.teacher.epochs:g} epochs, batch {config.teacher.batch_size}); cached for later runs"
    )
    placement = training_placement(config)
    result = train(
        model,
        train_split,
        config.teacher,
        cross_entropy_loss,
        pad_id=pad_id,
        desc="teacher fine-tune",
        progress=progress,
        placement=placement,
    )
    publish_folder(path, lambda staging: _save_teacher(config, model, result, staging))
    log(f"teacher: fine-tuned in {result.seconds / 60:.1f} min (final loss {result.final_loss:.3f}) -> {path}")
    return model


def _save_teacher(config: StudyConfig, model: Any, result: TrainResult, staging: Path) -> None:
    """The fine-tuned model (a transformers model), its tokenizer and the marker (last: its presence means complete)."""
    model.save_pretrained(staging)
    load_tokenizer(config.model).save_pretrained(staging)
    (staging / MARKER).write_text(
        json.dumps(
            {
                "base_model": config.model,
                "training": dataclasses.asdict(config.teacher),
                "max_length": config.data.max_length,
                "steps": result.steps,
                "final_loss": result.final_loss,
                "seconds": round(result.seconds, 1),
            },
            indent=2,
        )
    )


def _train_logits(
    model: nn.Module, train_split: EncodedSplit, path: Path, *, pad_id: int, progress: bool, device: torch.device
) -> torch.Tensor:
    config: Any = model.config  # a PretrainedConfig (nn.Module's __getattr__ would type it Tensor | Module)
    if path.is_file():
        try:
            logits = torch.load(path, weights_only=True)
            if logits.shape == (len(train_split), int(config.num_labels)):
                return logits
        # torch.load of a damaged file raises RuntimeError, UnpicklingError, EOFError, ...; not a tensor: AttributeError
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"teacher logits cache {path} is corrupted ({first_line(exc)}); delete it to rebuild"
            ) from None
    with on_device(model, device):  # CPU tensors out: the cache is the same on every machine
        logits = predict_logits(model, train_split, pad_id=pad_id, desc="teacher logits (train)", progress=progress)
    buffer = io.BytesIO()
    torch.save(logits, buffer)  # into memory: on a full disk torch.save's own error hides the reason
    with writing(path.parent, "cache folder"):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "cache folder") as tmp:
        tmp.write_bytes(buffer.getvalue())
    return logits


def teacher_logits(
    teacher: Teacher,
    split: EncodedSplit,
    cache_root: Path,
    fingerprint: str,
    *,
    pad_id: int,
    progress: bool,
    device: torch.device,
) -> torch.Tensor:
    """The teacher's logits on any rows (``fingerprint``: their content hash), cached as its train logits are."""
    path = cache_root / "logits" / f"{teacher.key}-{fingerprint}.pt"
    return _train_logits(teacher.model, split, path, pad_id=pad_id, progress=progress, device=device)


@torch.inference_mode()
def teacher_representations(
    teacher: Teacher,
    train_split: EncodedSplit,
    cache_root: Path,
    train_fingerprint: str,
    *,
    pad_id: int,
    progress: bool,
    device: torch.device,
) -> torch.Tensor:
    """The teacher's pooled representation of every train row, fp32 (rows, hidden): its last hidden state at the
    first token ([CLS] / <s>, what a BERT-style classification head pools).  Computed once, cached beside the train
    logits (``representations/<teacher key>-<train fingerprint>.pt``)."""
    path = cache_root / "representations" / f"{teacher.key}-{train_fingerprint}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            if cached.shape[0] == len(train_split):
                return cached
        except Exception as exc:  # noqa: BLE001 - as for the logits cache
            raise ModelError(
                f"teacher representations cache {path} is corrupted ({first_line(exc)}); delete it to rebuild"
            ) from None
    out: torch.Tensor | None = None
    with on_device(teacher.model, device):
        teacher.model.eval()
        batches = eval_batches(train_split, 32, pad_id)
        for batch in tqdm(batches, desc="teacher representations", disable=not progress, leave=False):
            hidden = teacher.model(**batch.to(device).inputs, output_hidden_states=True).hidden_states[-1][:, 0]
            if out is None:
                out = torch.empty((len(train_split), hidden.shape[-1]))
            out[batch.indices] = hidden.float().cpu()
    assert out is not None  # a split always has rows
    buffer = io.BytesIO()
    torch.save(out, buffer)
    with writing(path.parent, "cache folder"):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "cache folder") as tmp:
        tmp.write_bytes(buffer.getvalue())
    return out
