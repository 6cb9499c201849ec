"""``latencysolver.load(folder)``: an exported student, rebuilt and ready to classify texts or text pairs (BoolQ's
yes/no questions by default)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latencysolver.config.recipe import Recipe
from latencysolver.data.batches import encode_pairs, eval_batches
from latencysolver.errors import ModelError, first_line
from latencysolver.models.cnn import CNN_JSON
from latencysolver.models.student import STUDENT_JSON, load_student

TOKENIZER_KEY = "tokenizer"  # in an export's student.json: {"vocab_size": n, "vocab_sha256": hex}, written by export
EMBEDDING_SLACK = 1024  # rows an embedding may have beyond its tokenizer's vocabulary (padded to a multiple)


@dataclass(frozen=True)
class Prediction:
    """One row's answer: the class's name, its probability and its index."""

    label: str  # the predicted class's name ("yes" or "no" for BoolQ)
    probability: float  # of the predicted class
    index: int  # the predicted class's index

    @property
    def answer(self) -> bool:
        """Two classes (BoolQ's no/yes): whether the answer is the second, "yes"."""
        return self.index == 1


@dataclass
class CompressedClassifier:
    """An exported student with its tokenizer, as ``load`` returns it: ``predict`` answers, ``logits`` scores."""

    model: torch.nn.Module
    tokenizer: Any
    recipe: Recipe
    max_length: int
    info: dict[str, Any]

    @property
    def labels(self) -> tuple[str, ...]:
        """The class names, in class order: recorded in the export, else the model config's, else no/yes."""
        recorded = self.info.get("labels")
        if isinstance(recorded, list) and recorded:
            return tuple(str(v) for v in recorded)
        id2label = getattr(getattr(self.model, "config", None), "id2label", None)
        if isinstance(id2label, dict) and len(id2label) >= 2:
            return tuple(str(id2label[k]) for k in sorted(id2label, key=int))
        return ("no", "yes")

    @torch.inference_mode()
    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> torch.Tensor:
        """fp32 logits (rows, classes) of ``texts`` (BoolQ: the questions) with ``pairs`` (the passages), or of
        single texts when ``pairs`` is None."""
        if pairs is not None and len(texts) != len(pairs):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
        split = encode_pairs(self.tokenizer, texts, pairs, self.max_length)
        out = torch.empty((len(split), len(self.labels)))
        pad_id = self.tokenizer.pad_token_id or 0
        for batch in eval_batches(split, batch_size, pad_id):
            out[batch.indices] = self.model(**batch.inputs).logits.float()
        return out

    def predict(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> list[Prediction]:
        """One ``Prediction`` per row of ``texts`` (with ``pairs``, as for ``logits``), in order."""
        probs = self.logits(texts, pairs, batch_size).softmax(dim=-1)
        names = self.labels
        return [
            Prediction(label=names[int(p.argmax())], probability=float(p.max()), index=int(p.argmax())) for p in probs
        ]


def load(folder: str | Path) -> CompressedClassifier:
    """Rebuild an exported (or trial artifact) student with its tokenizer; quantization is re-applied."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    student = load_student(folder)
    max_length = student.info.get("max_length", 256)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ModelError(f"{folder / STUDENT_JSON}: 'max_length' must be a positive integer, got {max_length!r}")
    for path in sorted({*folder.glob("tokenizer*.json"), *folder.glob("special_tokens_map.json")}):
        try:
            json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise ModelError(f"{path}: not a readable tokenizer file: {first_line(exc)}") from None
    # AutoTokenizer also reads config.json, whose model type (latencysolver_bert: ship/remote_code.py) it does not
    # know without the folder's code; it falls back to a plain config and warns, which is noise here
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - a tokenizer folder can fail in many ways; each means no tokenizer
        raise ModelError(
            f"{folder}: no tokenizer in the export folder ({exc.__class__.__name__}: {first_line(exc)})"
        ) from None
    finally:
        hf_logging.set_verbosity(previous)
    check_tokenizer(folder, tokenizer, student.info)
    return CompressedClassifier(
        model=student.model, tokenizer=tokenizer, recipe=student.recipe, max_length=max_length, info=student.info
    )


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """What identifies a tokenizer's vocabulary: its size and the sha256 of its sorted (token, id) pairs."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode("utf-8")).hexdigest()
    return {"vocab_size": len(vocab), "vocab_sha256": digest}


def check_tokenizer(folder: Path, tokenizer: Any, info: dict[str, Any]) -> None:
    """Refuse a tokenizer that is not the one the student was trained with (``ModelError``, one line).

    An export records its tokenizer's fingerprint in ``student.json``; a folder without one (an export made
    before, a trial artifact) has its vocabulary size checked against the model's embedding rows instead.
    """
    found = tokenizer_fingerprint(tokenizer)
    restore = "copy the tokenizer files (tokenizer.json, tokenizer_config.json, ...) back from the original export"
    recorded = info.get(TOKENIZER_KEY)
    if isinstance(recorded, dict) and "vocab_sha256" in recorded:
        if recorded.get("vocab_size") != found["vocab_size"]:
            raise ModelError(
                f"{folder}: the tokenizer has {found['vocab_size']} tokens but the model was trained with "
                f"{recorded.get('vocab_size')} (recorded in {STUDENT_JSON}); {restore}"
            )
        if recorded["vocab_sha256"] != found["vocab_sha256"]:
            raise ModelError(
                f"{folder}: the tokenizer's vocabulary (sha256 {found['vocab_sha256'][:12]}) is not the one the "
                f"model was trained with (sha256 {str(recorded['vocab_sha256'])[:12]}, recorded in {STUDENT_JSON}); "
                f"{restore}"
            )
        return
    rows, source = _embedding_rows(folder)
    if rows is not None and not rows - EMBEDDING_SLACK <= found["vocab_size"] <= rows:
        raise ModelError(
            f"{folder}: the tokenizer has {found['vocab_size']} tokens but the model's embedding has {rows} rows "
            f"({source} vocab_size); {restore}"
        )


def _embedding_rows(folder: Path) -> tuple[int | None, str]:
    for name in ("config.json", CNN_JSON):
        try:
            rows = json.loads((folder / name).read_text()).get("vocab_size")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(rows, int) and not isinstance(rows, bool):
            return rows, name
    return None, ""
