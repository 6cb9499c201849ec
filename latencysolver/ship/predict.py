"""``latencysolver predict``: answer yes/no questions with an exported model, one pair or a JSON-lines file.

Input file: one JSON object per line with string ``question`` and ``passage`` (non-empty); any other keys are
allowed, ``id`` is carried through to the output, and a ``label`` (or ``answer``) of true/false or 0/1 makes the
run report its accuracy.  Blank lines are skipped.  Every row is checked before the model runs, and the first
bad one is reported as ``FILE:LINE: what is wrong``.

Output: one JSON object per input row, in input order:
``{"line": n, "id": ..., "answer": "yes"|"no", "label": true|false, "probability": p}``, where ``line`` is the
row's line number in the input file, ``label`` the predicted answer as a BoolQ label and ``probability`` that of
the predicted answer.  An output file is written beside its final name and renamed when complete, so a failed
run leaves none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from latencysolver.errors import DataError, ModelError
from latencysolver.files import atomic_file, check_writable
from latencysolver.models.student import STUDENT_JSON
from latencysolver.ship.inference import CompressedClassifier, Prediction, load

CHUNK = 256  # rows per progress step


@dataclass(frozen=True)
class InputRow:
    line: int  # 1-based line number in the input file
    question: str
    passage: str
    id: Any = None
    label: bool | None = None  # the gold answer, when the row has one


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
    return f"{'yes' if prediction.answer else 'no'} (p={prediction.probability:.3f})"


def predict_one(clf: CompressedClassifier, question: str, passage: str) -> Prediction:
    for name, value in (("--question", question), ("--passage", passage)):
        if not value.strip():
            raise DataError(f"{name}: empty text")
    return clf.predict([question], [passage])[0]


def read_rows(path: str | Path) -> list[InputRow]:
    """Every row of a JSON-lines file, checked; the first bad one raises ``DataError("FILE:LINE: ...")``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--input {str(path)!r}: no such file")
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
                raise DataError(
                    f"{where}: expected a JSON object with 'question' and 'passage', got {type(obj).__name__}"
                )
            for key in ("question", "passage"):
                if key not in obj:
                    raise DataError(f"{where}: missing '{key}'")
                if not isinstance(obj[key], str):
                    raise DataError(f"{where}: '{key}' must be a string, got {_short(obj[key])}")
                if not obj[key].strip():
                    raise DataError(f"{where}: '{key}' is empty")
            rows.append(
                InputRow(
                    line=number,
                    question=obj["question"],
                    passage=obj["passage"],
                    id=obj.get("id"),
                    label=_label(obj, where),
                )
            )
    if not rows:
        raise DataError(f"--input {str(path)!r}: no rows (expected one JSON object per line)")
    return rows


def _label(obj: dict, where: str) -> bool | None:
    key = "label" if "label" in obj else "answer" if "answer" in obj else None
    if key is None or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise DataError(f"{where}: '{key}' must be true/false or 0/1 (or absent), got {_short(value)}")


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
            predictions = clf.predict([r.question for r in chunk], [r.passage for r in chunk], batch_size)
            bar.update(len(chunk))
            yield from zip(chunk, predictions, strict=True)


def record(row: InputRow, prediction: Prediction) -> dict[str, Any]:
    return {
        "line": row.line,
        "id": row.id,
        "answer": "yes" if prediction.answer else "no",
        "label": prediction.answer,
        "probability": round(prediction.probability, 6),
    }


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
        item = record(row, prediction)
        if not math.isfinite(item["probability"]):
            raise ModelError(f"line {row.line}: the model returned a non-finite probability")
        sink.write(json.dumps(item) + "\n")
        if row.label is not None:
            labelled += 1
            correct += int(row.label == prediction.answer)
    return labelled, correct
