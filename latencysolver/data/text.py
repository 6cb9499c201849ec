"""Text classification data (BoolQ by default) through ``datasets``: a hub name (``google/boolq``) or a local folder
of jsonl/parquet files.

Which columns hold what is ``data.columns`` (``text``, ``text_pair`` (null for single-text data) and ``label``);
BoolQ's are the default (``question``, ``passage``, and ``label`` or the hub's ``answer``).  Labels are class
indices into ``label_names``: ``data.labels`` when given (a file's label is one of those names, or an index into
them), else ``no``/``yes`` for true/false labels, ``0``..``K-1`` for integer ones, and the sorted names of the
train split for string ones.  True/false labels are indices too (false 0, true 1), so ``data.labels`` lists
false's name first: names in the opposite order (``[yes, no]``) are refused.  Rows come out as small typed splits
of plain Python lists; a missing column or a label outside the names is one ``DataError`` naming the file, the
column and the value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latencysolver.cache import content_hash
from latencysolver.errors import DataError, first_line, shown, shown_path
from latencysolver.files import not_a_file

SPLITS = ("train", "validation", "test")
REQUIRED_SPLITS = ("train", "validation")
_EXTENSIONS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
YES_NO = ("no", "yes")  # the names of true/false labels (BoolQ's answers)


@dataclass(frozen=True)
class Columns:
    """Where a row's inputs and label are (``data.columns``); the defaults are BoolQ's."""

    text: str = "question"
    text_pair: str | None = "passage"  # None: single-text classification
    label: str = "label"  # with BoolQ's default, the hub's ``answer`` column is accepted too


BOOLQ = Columns()


@dataclass(frozen=True)
class TextSplit:
    text: tuple[str, ...]
    text_pair: tuple[str, ...] | None  # None for single-text data
    label: tuple[int, ...]  # class indices into label_names
    label_names: tuple[str, ...]
    title: tuple[str, ...] = ()  # BoolQ's titles (kept in its fingerprint), else empty
    boolq: bool = False  # BoolQ's columns and yes/no labels: fingerprinted as before data.columns existed

    def __len__(self) -> int:
        return len(self.label)

    def fingerprint(self) -> str:
        if self.boolq:  # the same hash as before, so existing studies and caches stay bound to their data
            assert self.text_pair is not None
            return content_hash(self.text, self.text_pair, self.title, tuple(bool(v) for v in self.label))
        return content_hash("text-v2", self.text, self.text_pair, self.label, self.label_names)

    def majority_rate(self) -> float:
        """Accuracy of always answering the most frequent label: the floor a real model must beat."""
        if not len(self):
            return 0.0
        return max(self.label.count(k) for k in set(self.label)) / len(self)


@dataclass(frozen=True)
class TextData:
    source: str
    train: TextSplit
    validation: TextSplit
    test: TextSplit | None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.train.label_names

    def fingerprint(self) -> str:
        return content_hash(self.train.fingerprint(), self.validation.fingerprint())


def load_data(
    source: str,
    *,
    columns: Columns = BOOLQ,
    labels: tuple[str, ...] | None = None,
    limit_train: int | None = None,
    limit_validation: int | None = None,
    limit_test: int | None = None,
) -> TextData:
    """Load and normalize the splits; limits keep the first N rows of a split (for quick runs and tests)."""
    if not source.strip():
        raise DataError("data: empty (expected a local folder or a hub dataset name such as 'google/boolq')")
    raw = _load_local(Path(source)) if _looks_local(source) else _load_hub(source)
    limits = {"train": limit_train, "validation": limit_validation, "test": limit_test}
    read = {name: _read_split(rows, where, name, limits[name], columns) for name, (rows, where) in raw.items()}
    names = tuple(labels) if labels is not None else _label_names(read["train"][3], columns == BOOLQ)
    if len(names) < 2:
        where, column = raw["train"][1], read["train"][4]
        raise DataError(
            f"{where}: split 'train': column '{column}' holds one class only ({shown(names[0])}); a classifier needs "
            "two (or list them in data.labels)"
        )
    if labels is not None:
        _check_boolean_order(names, read, raw)
    boolq = columns == BOOLQ and labels is None and names == YES_NO
    splits = {
        name: TextSplit(
            text=text,
            text_pair=pair,
            label=tuple(
                _label_index(v, names, labels is not None, raw[name][1], name, i, label_column) for i, v in values
            ),
            label_names=names,
            title=title if boolq else (),
            boolq=boolq,
        )
        for name, (text, pair, title, values, label_column) in read.items()
    }
    return TextData(source=source, train=splits["train"], validation=splits["validation"], test=splits.get("test"))


def recorded_schema(info: Any) -> tuple[Columns, tuple[str, ...]]:
    """The columns and class names recorded in an export's ``student.json`` (``columns``, ``labels``); BoolQ's
    where it records none (exports made before ``data.columns``)."""
    columns = info.get("columns") if isinstance(info, dict) else None
    labels = info.get("labels") if isinstance(info, dict) else None
    names = tuple(str(v) for v in labels) if isinstance(labels, list) and len(labels) >= 2 else YES_NO
    if not isinstance(columns, dict):
        return BOOLQ, names
    pair = columns.get("text_pair", BOOLQ.text_pair)
    return (
        Columns(
            text=str(columns.get("text", BOOLQ.text)),
            text_pair=None if pair is None else str(pair),
            label=str(columns.get("label", BOOLQ.label)),
        ),
        names,
    )


def configured(data: Any, source: str | None = None, **limits: int | None) -> TextData:
    """``load_data`` with a study's ``DataConfig`` (its source unless ``source`` is given, its columns and labels;
    its limits unless given in ``limits``)."""
    c = data.columns
    return load_data(
        source or data.source,
        columns=Columns(text=c.text, text_pair=c.text_pair, label=c.label),
        labels=data.labels,
        limit_train=limits.get("limit_train", data.limit_train),
        limit_validation=limits.get("limit_validation", data.limit_validation),
        limit_test=limits.get("limit_test", data.limit_test),
    )


def _looks_local(source: str) -> bool:
    # A hub name is ``owner/name``; anything that exists, or is spelled like a path, is a folder.
    return os.path.exists(source) or source.startswith((".", "/", "~")) or os.sep + os.sep in source


_SHARD = re.compile(r"(?P<split>[a-z]+)-(?P<index>\d+)-of-(?P<count>\d+)\.parquet")


def _split_files(folder: Path, split: str) -> list[Path]:
    """The files of one split, in exactly one of the documented layouts, or [] when there is none.

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


def _load_local(folder: Path) -> dict[str, tuple[list[dict], str]]:
    import datasets

    # Loading local files must not touch the network: datasets otherwise pings its download counter.
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    folder = folder.expanduser()
    if not folder.is_dir():
        kind = not_a_file(folder) or ("a file" if folder.exists() else None)
        raise DataError(
            (
                f"data: {shown_path(folder)} is {kind}, not a folder"
                if kind
                else f"data folder not found: {shown_path(folder)}"
            )
            + " (expected train/validation[/test] .jsonl or .parquet files)"
        )
    out: dict[str, tuple[list[dict], str]] = {}
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
        out[split] = (ds.to_list(), str(files[0]) if len(files) == 1 else str(files[0].parent))
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


def _load_hub(name: str) -> dict[str, tuple[list[dict], str]]:
    import datasets

    try:
        ds = datasets.load_dataset(name)
    except Exception as exc:  # noqa: BLE001 - hub, network and parsing errors: reported with their first line
        raise DataError(
            f"data: {shown_path(name)} is not a local folder and could not be loaded from the hub: {first_line(exc)}"
        ) from None
    missing = [s for s in REQUIRED_SPLITS if s not in ds]
    if missing:
        raise DataError(f"data: hub dataset {name!r} has no '{missing[0]}' split (has {sorted(ds)})")
    return {split: (ds[split].to_list(), name) for split in SPLITS if split in ds}


Read = tuple[tuple[str, ...], tuple[str, ...] | None, tuple[str, ...], list[tuple[int, Any]], str]


def _read_split(rows: list[dict], where: str, split: str, limit: int | None, columns: Columns) -> Read:
    """(texts, text pairs or None, titles, (row, raw label) pairs, the label column), checked."""
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{where}: split '{split}' has no rows")
    present = set(rows[0])
    label = columns.label
    if label not in present and columns == BOOLQ and "answer" in present:
        label = "answer"  # the hub's name for BoolQ's label
    for key, column in (("text", columns.text), ("text_pair", columns.text_pair), ("label", columns.label)):
        if column is not None and column not in present and not (key == "label" and label in present):
            also = " (or 'answer')" if key == "label" and columns == BOOLQ else ""
            raise DataError(
                f"{where}: split '{split}' has no '{column}' column{also} (data.columns.{key}; "
                f"columns: {sorted(present)})"
            )
    text_columns = [c for c in (columns.text, columns.text_pair) if c is not None]
    for i, row in enumerate(rows):
        for column in text_columns:
            if not isinstance(row.get(column), str):
                raise DataError(
                    f"{where}: split '{split}' row {i + 1}: column '{column}' must be a string, "
                    f"got {shown(row.get(column))}"
                )
    texts = tuple(str(r[columns.text]) for r in rows)
    pairs = tuple(str(r[columns.text_pair]) for r in rows) if columns.text_pair is not None else None
    titles = tuple(str(r.get("title") or "") for r in rows)
    return texts, pairs, titles, [(i, r.get(label)) for i, r in enumerate(rows)], label


def _label_names(values: list[tuple[int, Any]], boolq: bool) -> tuple[str, ...]:
    """The class names the train split's labels imply (without ``data.labels``): BoolQ's columns read 0/1 as
    no/yes too, as they always have."""
    raw = [v for _, v in values]
    if all(isinstance(v, bool) or v in (0, 1) for v in raw) and (boolq or any(isinstance(v, bool) for v in raw)):
        return YES_NO
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw):
        return tuple(str(k) for k in range(max(max(raw) + 1, 2)))
    if all(isinstance(v, str) for v in raw):
        return tuple(sorted(set(raw)))
    return YES_NO  # mixed or odd types: _label_index names the first bad value


# Names that say true or false: ``data.labels`` on true/false labels must not list one where the other goes.
_TRUE_WORDS = {"yes", "true", "y", "t", "1", "positive", "pos"}
_FALSE_WORDS = {"no", "false", "n", "f", "0", "negative", "neg"}


def _check_boolean_order(names: tuple[str, ...], read: dict[str, Read], raw: dict[str, tuple[list[dict], str]]) -> None:
    """True/false labels are the indices 1/0 into ``data.labels``: its first name is false's, its second true's.
    Names that say the opposite (``[yes, no]``) would call every true row "no" and invert every answer an export
    gives at the same accuracy, so they are refused, naming the file, the column and ``data.labels``."""
    if len(names) != 2:
        return  # true/false with more classes: _label_index refuses the first such label
    false, true = (name.strip().lower() for name in names)
    if false not in _TRUE_WORDS and true not in _FALSE_WORDS:
        return
    for split, (_, _, _, values, column) in read.items():
        if any(isinstance(v, bool) for _, v in values):
            raise DataError(
                f"{raw[split][1]}: column '{column}' holds true/false, so data.labels {list(names)} would name "
                f"false {names[0]!r} and true {names[1]!r}; list false's name first "
                f"(data.labels: [{names[1]}, {names[0]}])"
            )


def _label_index(value: Any, names: tuple[str, ...], given: bool, where: str, split: str, row: int, column: str) -> int:
    if isinstance(value, bool) and len(names) == 2:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    if isinstance(value, str) and value in names:
        return names.index(value)
    allowed = f"one of data.labels {list(names)} or an index into them" if given else f"one of {list(names)}"
    if names == YES_NO and not given:
        allowed = "true/false or 0/1"
    raise DataError(f"{where}: split '{split}' row {row + 1}: column '{column}' must be {allowed}, got {shown(value)}")
