"""Question/passage pairs tokenized once (cached on disk), and padded batches cut from them.

Rows keep their real lengths; a batch is padded to its longest row only.  Training batches are grouped by
length (shuffle, then sort inside windows of 50 batches), which on BoolQ roughly halves the padded tokens a
step computes without making the order deterministic.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from latencysolver.cache import content_hash
from latencysolver.data.text import TextSplit
from latencysolver.files import atomic_file, writing


@dataclass(frozen=True)
class EncodedSplit:
    input_ids: tuple[tuple[int, ...], ...]
    token_type_ids: tuple[tuple[int, ...], ...] | None
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def head(self, n: int) -> EncodedSplit:
        """The first ``n`` rows."""
        types = None if self.token_type_ids is None else self.token_type_ids[:n]
        return EncodedSplit(input_ids=self.input_ids[:n], token_type_ids=types, labels=self.labels[:n])


@dataclass(frozen=True)
class Batch:
    indices: torch.Tensor  # row numbers in the split, to look up cached teacher logits
    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask[, token_type_ids]
    labels: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        """The inputs and labels on ``device``; ``indices`` stay on the CPU, beside the cached teacher logits."""
        if device.type == "cpu":
            return self
        moved = {k: v.to(device, non_blocking=True) for k, v in self.inputs.items()}
        return Batch(indices=self.indices, inputs=moved, labels=self.labels.to(device, non_blocking=True))


def encode_split(
    split: TextSplit, tokenizer, max_length: int, cache_dir: Path | None = None, tokenizer_id: str = ""
) -> EncodedSplit:
    """Tokenize (question, passage) pairs to at most ``max_length``; cached by data, tokenizer and length."""
    path = None
    if cache_dir is not None:
        key = content_hash(
            split.fingerprint(), tokenizer_id or type(tokenizer).__name__, tokenizer.vocab_size, max_length, "pairs-v1"
        )
        path = cache_dir / "encoded" / f"{key}.pt"
        if path.is_file():
            try:
                return EncodedSplit(**torch.load(path, weights_only=True))
            # a damaged or stale cache entry (torch.load raises RuntimeError, UnpicklingError, EOFError...; an
            # old layout TypeError) is rebuilt, not trusted
            except Exception:  # noqa: BLE001
                path.unlink(missing_ok=True)
    encoded = encode_pairs(tokenizer, split.text, split.text_pair, max_length, labels=split.label)
    if path is not None:
        buffer = io.BytesIO()  # into memory first: on a full disk torch.save's own error hides the reason
        torch.save(
            {"input_ids": encoded.input_ids, "token_type_ids": encoded.token_type_ids, "labels": encoded.labels},
            buffer,
        )
        with writing(path.parent, "cache folder"):
            path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "cache folder") as tmp:
            tmp.write_bytes(buffer.getvalue())
    return encoded


def encode_pairs(tokenizer, questions, passages, max_length: int, labels=None) -> EncodedSplit:
    """Cut the passage (the second text), never the question (``only_second``); a batch where some question alone
    exceeds ``max_length`` (the tokenizer refuses those) falls back to ``longest_first``, which trims both.
    ``passages=None``: single texts, cut at ``max_length``."""
    questions = list(questions)
    if passages is None:
        enc = tokenizer(questions, truncation=True, max_length=max_length)
    else:
        passages = list(passages)
        try:
            enc = tokenizer(questions, passages, truncation="only_second", max_length=max_length)
        except Exception:  # noqa: BLE001 - tokenizers raises a bare Exception("Truncation error: ...")
            enc = tokenizer(questions, passages, truncation="longest_first", max_length=max_length)
    types = enc.get("token_type_ids")
    return EncodedSplit(
        input_ids=tuple(tuple(ids) for ids in enc["input_ids"]),
        token_type_ids=None if types is None else tuple(tuple(t) for t in types),
        labels=tuple(int(v) for v in labels) if labels is not None else tuple(0 for _ in questions),
    )


def concat(first: EncodedSplit, second: EncodedSplit) -> EncodedSplit:
    """The rows of ``first`` then those of ``second`` (both with token type ids, or neither)."""
    if (first.token_type_ids is None) != (second.token_type_ids is None):
        raise ValueError("cannot concatenate a split with token type ids and one without")
    types = None
    if first.token_type_ids is not None and second.token_type_ids is not None:
        types = first.token_type_ids + second.token_type_ids
    return EncodedSplit(first.input_ids + second.input_ids, types, first.labels + second.labels)


def truncate(split: EncodedSplit, max_tokens: int) -> EncodedSplit:
    """Each row cut to ``max_tokens``: its first ``max_tokens - 1`` tokens and its last one (the closing
    separator).  On rows encoded with ``encode_pairs`` (passage cut first) this equals encoding them at
    ``max_tokens``: the question and its separator stay whole and the passage loses its tail."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, but got {max_tokens}")

    def cut(row: tuple[int, ...]) -> tuple[int, ...]:
        return row if len(row) <= max_tokens else row[: max_tokens - 1] + row[-1:]

    types = None if split.token_type_ids is None else tuple(cut(t) for t in split.token_type_ids)
    return EncodedSplit(input_ids=tuple(cut(ids) for ids in split.input_ids), token_type_ids=types, labels=split.labels)


def truncate_inputs(inputs: dict[str, torch.Tensor], max_tokens: int) -> dict[str, torch.Tensor]:
    """A batch of one (as the latency rows are) cut the same way as ``truncate``; shorter rows as they are."""
    width = next(iter(inputs.values())).shape[1]
    if width <= max_tokens:
        return inputs
    out = {}
    for key, tensor in inputs.items():
        if tensor.shape[0] != 1:
            raise ValueError(f"truncate_inputs cuts batches of one row, got {tensor.shape[0]} rows")
        out[key] = torch.cat([tensor[:, : max_tokens - 1], tensor[:, -1:]], dim=1)
    return out


def collate(split: EncodedSplit, indices: list[int], pad_id: int = 0) -> Batch:
    width = max(len(split.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    token_types = split.token_type_ids
    types = torch.zeros((len(indices), width), dtype=torch.long) if token_types is not None else None
    for row, i in enumerate(indices):
        n = len(split.input_ids[i])
        ids[row, :n] = torch.tensor(split.input_ids[i])
        mask[row, :n] = 1
        if types is not None and token_types is not None:
            types[row, :n] = torch.tensor(token_types[i])
    inputs = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        inputs["token_type_ids"] = types
    return Batch(indices=torch.tensor(indices), inputs=inputs, labels=torch.tensor([split.labels[i] for i in indices]))


def eval_batches(split: EncodedSplit, batch_size: int, pad_id: int = 0) -> Iterator[Batch]:
    """Every row once, sorted by length for little padding; ``Batch.indices`` give the original order back."""
    order = sorted(range(len(split)), key=lambda i: len(split.input_ids[i]))
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start : start + batch_size], pad_id)


def train_batches(split: EncodedSplit, batch_size: int, seed: int, pad_id: int = 0) -> Iterator[Batch]:
    """Endless length-grouped shuffled batches; epoch e uses the generator ``Random(seed + e)``."""
    epoch = 0
    while True:
        rng = random.Random(seed + epoch)
        order = list(range(len(split)))
        rng.shuffle(order)
        window = batch_size * 50
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(split.input_ids[i]))
            batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        for indices in batches:
            yield collate(split, indices, pad_id)
        epoch += 1
