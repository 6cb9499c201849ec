"""``latencysolver.load(folder)``: an exported student, rebuilt and ready to answer yes/no questions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latencysolver.config.recipe import Recipe
from latencysolver.data.batches import encode_pairs, eval_batches
from latencysolver.errors import ModelError
from latencysolver.models.student import load_student


@dataclass(frozen=True)
class Prediction:
    answer: bool
    probability: float  # of the predicted answer


@dataclass
class CompressedClassifier:
    model: torch.nn.Module
    tokenizer: Any
    recipe: Recipe
    max_length: int
    info: dict[str, Any]

    @torch.inference_mode()
    def logits(self, questions: list[str], passages: list[str], batch_size: int = 32) -> torch.Tensor:
        if len(questions) != len(passages):
            raise ValueError(f"{len(questions)} questions but {len(passages)} passages")
        split = encode_pairs(self.tokenizer, questions, passages, self.max_length)
        out = torch.empty((len(split), 2))
        pad_id = self.tokenizer.pad_token_id or 0
        for batch in eval_batches(split, batch_size, pad_id):
            out[batch.indices] = self.model(**batch.inputs).logits.float()
        return out

    def predict(self, questions: list[str], passages: list[str], batch_size: int = 32) -> list[Prediction]:
        probs = self.logits(questions, passages, batch_size).softmax(dim=-1)
        return [Prediction(answer=bool(p.argmax().item()), probability=float(p.max())) for p in probs]


def load(folder: str | Path) -> CompressedClassifier:
    """Rebuild an exported (or trial artifact) student with its tokenizer; quantization is re-applied."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    student = load_student(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a tokenizer folder can fail in many ways; each means no tokenizer
        raise ModelError(f"{folder}: no tokenizer in the export folder ({exc.__class__.__name__})") from None
    max_length = int(student.info.get("max_length", 256))
    return CompressedClassifier(
        model=student.model, tokenizer=tokenizer, recipe=student.recipe, max_length=max_length, info=student.info
    )
