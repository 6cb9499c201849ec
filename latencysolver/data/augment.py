"""More inputs for the same teacher (issue 20): pairs built from the train rows themselves, for the CNN student.

Two logits per row are little to learn from for a model trained from scratch, and 2,270 BoolQ rows are few; the
teacher, though, can answer any pair.  So each train row gives ``factor`` new ones, in turn:

- **passage windows**: the passage cut into overlapping windows of ``WINDOW`` words (stride half that), the ones
  sharing the most words with the question first: the question paired with the parts of its own passage it is
  most likely about;
- **sentence deletion**: the passage without one of its sentences (seeded choice);
- **sentence shuffling**: the passage's sentences in another (seeded) order.

A kind that cannot apply to a row (one sentence, a passage no longer than a window) gives the next kind instead,
and a row with nothing to vary gives fewer.  Single-text data varies its one text the same way.  The new rows carry
the original row's label only as a placeholder: the teacher labels them (logits, and its representation when the
CNN learns that too), once, cached by content hash; they are used for distillation only, never for evaluation.
"""

from __future__ import annotations

import random
import re

from latencysolver.data.text import TextSplit

WINDOW = 48  # words per passage window: about a third of a BoolQ passage (~110 words)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def windows(question: str, passage: str, size: int = WINDOW) -> list[str]:
    """The passage's overlapping ``size``-word windows (stride ``size // 2``), most question words first (ties: in
    passage order); [] when the passage is no longer than one window."""
    words = passage.split()
    if len(words) <= size:
        return []
    stride = max(1, size // 2)
    starts = list(range(0, len(words) - size + 1, stride))
    if starts[-1] != len(words) - size:
        starts.append(len(words) - size)  # the tail too
    asked = set(_WORD.findall(question.lower()))
    scored = [
        (-len(asked & set(_WORD.findall(" ".join(words[s : s + size]).lower()))), i, s) for i, s in enumerate(starts)
    ]
    return [" ".join(words[s : s + size]) for _, _, s in sorted(scored)]


def _variants(question: str, passage: str, factor: int, rng: random.Random) -> list[str]:
    """Up to ``factor`` new passages for one row, cycling window → deletion → shuffle."""
    cut = windows(question, passage)
    parts = sentences(passage)
    out: list[str] = []
    kinds = ("window", "delete", "shuffle")
    attempts = 0
    while len(out) < factor and attempts < 3 * factor:
        kind = kinds[attempts % 3]
        attempts += 1
        if kind == "window" and cut:
            out.append(cut.pop(0))
        elif kind == "delete" and len(parts) > 1:
            drop = rng.randrange(len(parts))
            out.append(" ".join(p for i, p in enumerate(parts) if i != drop))
        elif kind == "shuffle" and len(parts) > 1:
            order = parts[:]
            while order == parts:
                rng.shuffle(order)
            out.append(" ".join(order))
    return out


def augment(split: TextSplit, factor: int, seed: int = 0) -> TextSplit:
    """``factor`` new rows per train row (fewer where a row has little to vary), labels still placeholders."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, but got {factor!r}")
    rng = random.Random(seed)
    texts: list[str] = []
    pairs: list[str] = []
    labels: list[int] = []
    for i, text in enumerate(split.text):
        second = split.text_pair[i] if split.text_pair is not None else text
        for varied in _variants(text, second, factor, rng):
            texts.append(text if split.text_pair is not None else varied)
            pairs.append(varied)
            labels.append(split.label[i])
    return TextSplit(
        text=tuple(texts),
        text_pair=tuple(pairs) if split.text_pair is not None else None,
        label=tuple(labels),
        label_names=split.label_names,
    )
