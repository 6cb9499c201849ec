"""BoolQ through ``datasets``: a hub name (``google/boolq``) or a local folder of jsonl/parquet files.

Rows come out normalized to ``question``, ``passage``, ``title`` (may be empty) and ``label`` (bool; the hub's
``answer`` column is accepted as an alias), as small typed splits of plain Python lists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from latencysolver.cache import content_hash
from latencysolver.errors import DataError, first_line

SPLITS = ("train", "validation", "test")
REQUIRED_SPLITS = ("train", "validation")
_EXTENSIONS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class BoolQSplit:
    question: tuple[str, ...]
    passage: tuple[str, ...]
    title: tuple[str, ...]
    label: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.label)

    def fingerprint(self) -> str:
        return content_hash(self.question, self.passage, self.title, self.label)

    def majority_rate(self) -> float:
        """Accuracy of always answering the most frequent label: the floor a real model must beat."""
        yes = sum(self.label)
        return max(yes, len(self) - yes) / len(self) if len(self) else 0.0


@dataclass(frozen=True)
class BoolQData:
    source: str
    train: BoolQSplit
    validation: BoolQSplit
    test: BoolQSplit | None = None

    def fingerprint(self) -> str:
        return content_hash(self.train.fingerprint(), self.validation.fingerprint())


def load_boolq(
    source: str, *, limit_train: int | None = None, limit_validation: int | None = None, limit_test: int | None = None
) -> BoolQData:
    """Load and normalize BoolQ; limits keep the first N rows of a split (for quick runs and tests)."""
    if not source.strip():
        raise DataError("data: empty (expected a local folder or a hub dataset name such as 'google/boolq')")
    raw = _load_local(Path(source)) if _looks_local(source) else _load_hub(source)
    limits = {"train": limit_train, "validation": limit_validation, "test": limit_test}
    splits = {name: _normalize(rows, source, name, limits[name]) for name, rows in raw.items()}
    return BoolQData(source=source, train=splits["train"], validation=splits["validation"], test=splits.get("test"))


def _looks_local(source: str) -> bool:
    # A hub name is ``owner/name``; anything that exists, or is spelled like a path, is a folder.
    return os.path.exists(source) or source.startswith((".", "/", "~")) or os.sep + os.sep in source


_SHARD = re.compile(r"(?P<split>[a-z]+)-(?P<index>\d+)-of-(?P<count>\d+)\.parquet")


def _split_files(folder: Path, split: str) -> list[Path]:
    """The files of one split, in exactly one of the README's layouts, or [] when there is none.

    ``train.jsonl`` (or ``train.json``), ``train.parquet``, ``train-00000-of-0000N.parquet`` and
    ``data/train-00000-of-0000N.parquet``: nothing else is read (not ``train_old.jsonl``, not
    ``backup/train.jsonl``).  A folder with the split in two layouts is refused, naming them, rather than merged.
    """
    layouts: list[list[Path]] = [
        [p] for p in (folder / f"{split}.jsonl", folder / f"{split}.json", folder / f"{split}.parquet") if p.is_file()
    ]
    for where in (folder, folder / "data"):
        shards = sorted(_shards(where, split))
        if shards:
            layouts.append(shards)
    if len(layouts) > 1:
        names = ", ".join(str(p.relative_to(folder)) for files in layouts for p in files)
        raise DataError(f"{folder}: split '{split}' is ambiguous, it is in several files ({names}); keep one layout")
    if not layouts:
        return []
    files = layouts[0]
    matches = [m for m in (_SHARD.fullmatch(p.name) for p in files) if m]
    if matches:  # shards: all of ``-of-N``, none missing
        counts = sorted({m.group("count") for m in matches})
        if len(counts) > 1:
            raise DataError(f"{files[0].parent}: split '{split}' has shards of different counts ({', '.join(counts)})")
        count = counts[0]
        present = {int(m.group("index")) for m in matches}
        missing = [i for i in range(int(count)) if i not in present]
        if missing:
            shard = f"{split}-{missing[0]:0{len(count)}d}-of-{count}.parquet"
            raise DataError(f"{files[0].parent}: split '{split}': shard {shard} is missing")
    return files


def _shards(folder: Path, split: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return [
        p
        for p in folder.glob(f"{split}-*.parquet")
        if p.is_file() and (m := _SHARD.fullmatch(p.name)) and m.group("split") == split
    ]


def _load_local(folder: Path) -> dict[str, list[dict]]:
    import datasets

    # Loading local files must not touch the network: datasets otherwise pings its download counter.
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    folder = folder.expanduser()
    if not folder.is_dir():
        raise DataError(
            f"data folder not found: {str(folder)!r} (expected train/validation[/test] .jsonl or .parquet files)"
        )
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        files = _split_files(folder, split)
        if not files:
            if split in REQUIRED_SPLITS:
                raise DataError(
                    f"{folder}: no '{split}' split (expected {split}.jsonl, {split}.parquet, "
                    f"{split}-00000-of-0000N.parquet or data/{split}-00000-of-0000N.parquet)"
                )
            continue
        kind = _EXTENSIONS[files[0].suffix]
        if kind == "json" and not _check_json_lines(files[0]):
            raise DataError(f"{files[0]}: split '{split}' has no rows (the file is empty)")
        try:
            ds = datasets.load_dataset(kind, data_files=[str(p) for p in files], split="train")
        except Exception as exc:  # noqa: BLE001 - datasets raises many types for unreadable files
            raise DataError(f"{files[0]}: cannot read {kind} file: {first_line(exc)}") from None
        out[split] = ds.to_list()
    return out


def _check_json_lines(path: Path) -> int:
    """How many rows: each line UTF-8 and JSON, else a ``DataError`` "FILE:LINE: ..." (datasets names neither,
    or only in a log line)."""
    import json

    rows = 0

    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"{path}:{number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if not text.strip():
                continue
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise DataError(f"{where}: nested too deeply (JSON of thousands of levels)") from None
            rows += 1
    return rows


def _load_hub(name: str) -> dict[str, list[dict]]:
    import datasets

    try:
        ds = datasets.load_dataset(name)
    except Exception as exc:  # noqa: BLE001 - hub, network and parsing errors: reported with their first line
        raise DataError(
            f"data: {name!r} is not a local folder and could not be loaded from the hub: {first_line(exc)}"
        ) from None
    missing = [s for s in REQUIRED_SPLITS if s not in ds]
    if missing:
        raise DataError(f"data: hub dataset {name!r} has no '{missing[0]}' split (has {sorted(ds)})")
    return {split: ds[split].to_list() for split in SPLITS if split in ds}


def _normalize(rows: list[dict], source: str, split: str, limit: int | None) -> BoolQSplit:
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{source}: split '{split}' has no rows")
    columns = set(rows[0])
    label_key = "label" if "label" in columns else "answer" if "answer" in columns else None
    for needed in ("question", "passage"):
        if needed not in columns:
            raise DataError(f"{source}: split '{split}' has no '{needed}' column (columns: {sorted(columns)})")
    if label_key is None:
        raise DataError(f"{source}: split '{split}' has no 'label' (or 'answer') column (columns: {sorted(columns)})")
    labels = []
    for i, row in enumerate(rows):
        for text in ("question", "passage"):
            if not isinstance(row.get(text), str):
                raise DataError(
                    f"{source}: split '{split}' row {i + 1}: {text} must be a string, got {row.get(text)!r}"
                )
        value = row[label_key]
        if isinstance(value, bool) or value in (0, 1):
            labels.append(bool(value))
        else:
            raise DataError(
                f"{source}: split '{split}' row {i + 1}: {label_key} must be true/false or 0/1, got {value!r}"
            )
    return BoolQSplit(
        question=tuple(str(r["question"]) for r in rows),
        passage=tuple(str(r["passage"]) for r in rows),
        title=tuple(str(r.get("title") or "") for r in rows),
        label=tuple(labels),
    )
