"""``latencysolver predict``: classify with an exported model, one row or a JSON-lines file.

The export says which columns it reads and which classes it answers (``student.json``: ``columns`` and ``labels``,
from the study's ``data.columns``; BoolQ's ``question``, ``passage``, ``label`` and no/yes when absent).  Input
file: one JSON object per line with the text column (and the text-pair column, for pair data) as non-empty
strings; any other keys are allowed, ``id`` is carried through to the output, and a label (a class name, an index,
or true/false for two classes) makes the run report its accuracy.  Blank lines are skipped.  Every row is checked
before the model runs, and the first bad one is reported as ``FILE:LINE: what is wrong``.

Output: one JSON object per input row, in input order: ``{"line": n, "id": ..., "label": NAME, "index": k,
"probability": p}``; for yes/no data (BoolQ) as before, ``{"line", "id", "answer": "yes"|"no", "label":
true|false, "probability"}``.  ``line`` is the row's line number in the input file and ``probability`` that of the
predicted class.  An output file is written beside its final name and renamed when complete, so a failed run
leaves none; an output that is the input file (by any path or link) is refused.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from latencysolver.data.text import BOOLQ, YES_NO, recorded_schema
from latencysolver.errors import DataError, ModelError, OutputError, shown_path
from latencysolver.files import atomic_file, check_writable, not_a_file
from latencysolver.models.student import STUDENT_JSON
from latencysolver.ship.inference import CompressedClassifier, Prediction, load

CHUNK = 256  # rows per progress step


@dataclass(frozen=True)
class InputRow:
    line: int  # 1-based line number in the input file
    text: str
    text_pair: str | None  # None for single-text data
    id: Any = None
    label: int | None = None  # the gold class index, when the row has one


@dataclass(frozen=True)
class Schema:
    """What an export reads and answers: its columns and class names (BoolQ's by default)."""

    text: str = BOOLQ.text
    text_pair: str | None = BOOLQ.text_pair
    label: str = BOOLQ.label
    labels: tuple[str, ...] = YES_NO

    @property
    def yes_no(self) -> bool:
        return self.labels == YES_NO


def export_schema(folder: str | Path) -> Schema:
    """The columns and class names recorded in an export's ``student.json`` (BoolQ's when it has none)."""
    try:
        info = json.loads((Path(folder) / STUDENT_JSON).read_text())
    except (OSError, ValueError):
        return Schema()  # load_export reports a missing or broken student.json
    columns, labels = recorded_schema(info)
    return Schema(text=columns.text, text_pair=columns.text_pair, label=columns.label, labels=labels)


@dataclass(frozen=True)
class PredictSummary:
    rows: int
    labelled: int
    correct: int
    output: Path | None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def describe(self) -> str:
        where = f" to {self.output}" if self.output else ""
        text = f"predicted {self.rows} rows{where}"
        if self.labelled:
            text += f"; accuracy {self.accuracy:.3f} on the {self.labelled} labelled rows"
            if self.labelled < self.rows:
                text += f" (of {self.rows})"
        return text


def load_export(folder: str | Path) -> CompressedClassifier:
    """``latencysolver.load`` with one-line errors for a folder that is missing or is not an export."""
    folder = Path(folder)
    if not folder.exists():
        raise ModelError(f"EXPORT_DIR {str(folder)!r}: no such folder")
    if not folder.is_dir():
        raise ModelError(f"EXPORT_DIR {str(folder)!r}: is a file, not an export folder")
    if not (folder / STUDENT_JSON).is_file():
        raise ModelError(
            f"EXPORT_DIR {str(folder)!r}: not a latencysolver export ({STUDENT_JSON} is missing; "
            "make one with `latencysolver export`)"
        )
    return load(folder)


def answer_text(prediction: Prediction) -> str:
    return f"{prediction.label} (p={prediction.probability:.3f})"


def predict_one(clf: CompressedClassifier, text: str, text_pair: str | None) -> Prediction:
    """``predict --text [--text-pair]``: one row's answer; an empty text is a ``DataError``."""
    for name, value in (("--text", text), ("--text-pair", text_pair)):
        if value is not None and not value.strip():
            raise DataError(f"{name}: empty text")
    return clf.predict([text], None if text_pair is None else [text_pair])[0]


def check_output_is_not_input(input_path: str | Path, output: str | Path | None) -> None:
    """Refuse an ``--output`` that is the ``--input`` file: the same path, another spelling of it, a symlink to
    it or a hard link of it (an output replaces its file, and the rows would be lost)."""
    if output is None:
        return
    source, target = Path(input_path), Path(output)
    same = source.resolve() == target.resolve()
    if not same and source.exists() and target.exists():
        try:
            same = os.path.samefile(source, target)
        except OSError:  # unreadable: read_rows and the output checks report it
            same = False
    if same:
        raise OutputError(
            f"--output {str(target)!r}: the same file as --input {str(source)!r}; writing the predictions there "
            "would destroy the rows (name another file)"
        )


def read_rows(path: str | Path, schema: Schema = Schema()) -> list[InputRow]:
    """Every row of a JSON-lines file, checked; the first bad one raises ``DataError("FILE:LINE: ...")``."""
    path = Path(path)
    if not path.is_file():
        kind = not_a_file(path)
        raise DataError(f"--input {shown_path(path)}: {f'is {kind}, not a file of rows' if kind else 'no such file'}")
    keys = [k for k in (schema.text, schema.text_pair) if k is not None]
    rows: list[InputRow] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"{path}:{number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8 text") from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:  # thousands of '[' or '{'
                raise DataError(f"{where}: nested too deeply (JSON of thousands of levels)") from None
            if not isinstance(obj, dict):
                wanted = " and ".join(f"'{k}'" for k in keys)
                raise DataError(f"{where}: expected a JSON object with {wanted}, got {type(obj).__name__}")
            for key in keys:
                if key not in obj:
                    raise DataError(f"{where}: missing '{key}'")
                if not isinstance(obj[key], str):
                    raise DataError(f"{where}: '{key}' must be a string, got {_short(obj[key])}")
                if not obj[key].strip():
                    raise DataError(f"{where}: '{key}' is empty")
            rows.append(
                InputRow(
                    line=number,
                    text=obj[schema.text],
                    text_pair=obj[schema.text_pair] if schema.text_pair is not None else None,
                    id=obj.get("id"),
                    label=_label(obj, where, schema),
                )
            )
    if not rows:
        raise DataError(f"--input {str(path)!r}: no rows (expected one JSON object per line)")
    return rows


def _label(obj: dict, where: str, schema: Schema) -> int | None:
    key = schema.label if schema.label in obj else "answer" if schema == Schema() and "answer" in obj else None
    if key is None or obj[key] is None:
        return None
    value = obj[key]
    two = len(schema.labels) == 2
    if (isinstance(value, bool) and two) or (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(schema.labels)
    ):
        return int(value)
    if isinstance(value, str) and value in schema.labels and not schema.yes_no:
        return schema.labels.index(value)
    allowed = "true/false or 0/1" if schema.yes_no else f"one of {list(schema.labels)} or an index into them"
    raise DataError(f"{where}: '{key}' must be {allowed} (or absent), got {_short(value)}")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def predict_rows(
    clf: CompressedClassifier, rows: list[InputRow], batch_size: int = 32, progress: bool = True
) -> Iterator[tuple[InputRow, Prediction]]:
    from tqdm.auto import tqdm

    with tqdm(
        total=len(rows),
        desc="predict",
        unit="row",
        disable=not progress or len(rows) <= CHUNK,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            pairs = None if chunk[0].text_pair is None else [str(r.text_pair) for r in chunk]
            predictions = clf.predict([r.text for r in chunk], pairs, batch_size)
            bar.update(len(chunk))
            yield from zip(chunk, predictions, strict=True)


def record(row: InputRow, prediction: Prediction, yes_no: bool = True) -> dict[str, Any]:
    if yes_no:
        what: dict[str, Any] = {"answer": "yes" if prediction.answer else "no", "label": prediction.answer}
    else:
        what = {"label": prediction.label, "index": prediction.index}
    return {"line": row.line, "id": row.id, **what, "probability": round(prediction.probability, 6)}


def predict_file(
    clf: CompressedClassifier,
    rows: list[InputRow],
    output: str | Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
    stdout: Any = None,
) -> PredictSummary:
    """Predict ``rows``; write JSON lines to ``output`` (atomically), or to ``stdout`` when it is None."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"--batch-size must be a positive integer, got {batch_size!r}")
    target = Path(output) if output is not None else None
    if target is None:
        import sys

        labelled, correct = _write_predictions(clf, rows, batch_size, progress, stdout or sys.stdout)
        return PredictSummary(rows=len(rows), labelled=labelled, correct=correct, output=None)
    check_writable(target, "--output", folder=False)  # a folder, a path under a file, a read-only folder
    if not target.parent.is_dir():
        raise DataError(f"--output {str(target)!r}: folder {str(target.parent)!r} does not exist")
    with atomic_file(target, "--output") as tmp, open(tmp, "w") as sink:
        labelled, correct = _write_predictions(clf, rows, batch_size, progress, sink)
    return PredictSummary(rows=len(rows), labelled=labelled, correct=correct, output=target)


def _write_predictions(
    clf: CompressedClassifier, rows: list[InputRow], batch_size: int, progress: bool, sink: TextIO
) -> tuple[int, int]:
    """One JSON line per row into ``sink``; returns (labelled rows, correctly answered labelled rows)."""
    labelled = correct = 0
    for row, prediction in predict_rows(clf, rows, batch_size, progress):
        item = record(row, prediction, clf.labels == YES_NO)
        if not math.isfinite(item["probability"]):
            raise ModelError(f"line {row.line}: the model returned a non-finite probability")
        sink.write(json.dumps(item) + "\n")
        if row.label is not None:
            labelled += 1
            correct += int(row.label == prediction.index)
    return labelled, correct
