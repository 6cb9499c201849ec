"""The augmented rows (``data/augment.py``) labelled by the teacher: its logits on each, computed once and cached
like the teacher, so no trial ever runs the teacher for them.

Cache layout under ``cache_root()``: ``augmented/<key>/``, holding ``logits.pt`` and ``augmented.json`` (written
last: its presence means complete), built in a temporary sibling under the entry's file lock.  The key is the
teacher's and the rows' content hash.  ``search/sharing.py`` puts the folder in the study's artifact store; a
worker elsewhere copies it and passes it here as ``path``, where it is used when it labels the same rows.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from latencysolver.cache import content_hash
from latencysolver.data.batches import EncodedSplit
from latencysolver.devices import on_device
from latencysolver.errors import ModelError, first_line
from latencysolver.files import publish_folder, remove_stale_staging
from latencysolver.locks import file_lock
from latencysolver.models.teacher import Teacher
from latencysolver.training.evaluate import predict_logits

MARKER = "augmented.json"
LOGITS = "logits.pt"


@dataclass(frozen=True)
class LabelledRows:
    path: Path
    key: str
    logits: torch.Tensor  # (rows, classes), fp32, CPU
    seconds: float | None  # how long the labelling took here (None: found cached)


def labelled_key(teacher_key: str, rows_fingerprint: str) -> str:
    return content_hash("augmented-v1", teacher_key, rows_fingerprint)


def label_rows(
    teacher: Teacher,
    rows: EncodedSplit,
    rows_fingerprint: str,
    cache_root: Path,
    *,
    pad_id: int,
    progress: bool,
    device: torch.device,
    path: Path | None = None,
) -> LabelledRows:
    """The teacher's logits on ``rows`` (``rows_fingerprint``: their content hash): from ``path`` (a worker's copy
    of the study's) when it labels these rows, else from the cache, else computed now (with a progress bar)."""
    if path is not None and _marker(path).get("rows") == rows_fingerprint:
        return LabelledRows(path, path.name, _load(path, len(rows)), None)
    key = labelled_key(teacher.key, rows_fingerprint)
    folder = cache_root / "augmented" / key
    with file_lock(cache_root / "augmented" / f"{key}.lock"):
        remove_stale_staging(folder.parent, f".{key}-")
        if (folder / MARKER).is_file():
            return LabelledRows(folder, key, _load(folder, len(rows)), None)
        start = time.perf_counter()
        with on_device(teacher.model, device):  # CPU tensors out: the cache is the same on every machine
            logits = predict_logits(
                teacher.model, rows, pad_id=pad_id, desc="teacher labels (augmented rows)", progress=progress
            )
        seconds = time.perf_counter() - start

        def write(staging: Path) -> None:
            buffer = io.BytesIO()  # into memory first: on a full disk torch.save's own error hides the reason
            torch.save(logits, buffer)
            (staging / LOGITS).write_bytes(buffer.getvalue())
            marker = {"teacher_key": teacher.key, "rows": rows_fingerprint, "count": len(rows), "seconds": seconds}
            (staging / MARKER).write_text(json.dumps(marker, indent=2))

        publish_folder(folder, write)
    return LabelledRows(folder, key, logits, seconds)


def _marker(path: Path) -> dict:
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _load(path: Path, rows: int) -> torch.Tensor:
    try:
        logits = torch.load(path / LOGITS, weights_only=True)
        if isinstance(logits, torch.Tensor) and logits.shape[0] == rows:
            return logits
        reason = f"holds {tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}"
    # torch.load of a damaged file raises RuntimeError, UnpicklingError, EOFError, ...
    except Exception as exc:  # noqa: BLE001
        reason = first_line(exc)
    raise ModelError(
        f"augmented rows' labels {path / LOGITS} are corrupted ({reason}, {rows} rows expected); "
        "delete the folder to rebuild it"
    )
