"""More inputs for the same teacher: rows built from the train rows themselves, for distillation only.

A few thousand train rows are few for a small student; the teacher, though, can answer any input.  So each train
row gives ``factor`` new ones (``data.augment``), the generators taking turns (each row starts one further along the
list, so every generator is used about equally whatever ``factor`` is).  Text-level generators:

- ``window``: the passage cut into overlapping windows of ``WINDOW`` words (stride half that), the ones sharing the
  most words with the question first: the question paired with the parts of its own passage it is most likely about;
- ``delete``: the passage without one of its sentences (seeded choice);
- ``shuffle``: the passage's sentences in another (seeded) order;
- ``repair``: the question paired with another row's passage (text pairs only): a question its passage says
  little about, which the teacher answers all the same.

Token-level generators (after TinyBERT, which replaced words by their GloVe neighbours; here the neighbours come
from the teacher's own input-embedding table, so no outside text or MLM head is needed):

- ``neighbour``: each word that is a whole token of the vocabulary is, with probability ``REPLACE`` (at least one
  a row), replaced by one of its ``NEIGHBOURS`` nearest tokens (cosine) in the teacher's input embeddings
  (``embedding_neighbours``);
- ``mask``: each word, with probability ``MASK`` (at least one a row), replaced by the tokenizer's mask token;
- ``drop``: each word, with probability ``DROP`` (at least one a row), left out.

On text pairs the passage (the second text) is varied and the question kept; single-text data varies its one text.
A generator that cannot apply to a row (one sentence, a passage no longer than a window, no word in the
vocabulary) is passed over for the next one, and a row with nothing to vary gives fewer.  The new rows carry the
original row's label only as a placeholder: the teacher labels them (its logits), once, cached by content hash.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from latencysolver.config.training import AUGMENT_KINDS
from latencysolver.data.text import TextSplit

WINDOW = 48  # words per passage window: about a third of a BoolQ passage (~110 words)
REPLACE = 0.3  # share of eligible words a ``neighbour`` row replaces
MASK = 0.15  # share of words a ``mask`` row masks (BERT's masking rate)
DROP = 0.1  # share of words a ``drop`` row leaves out
NEIGHBOURS = 8  # candidates per word for ``neighbour``

KINDS = AUGMENT_KINDS  # the order they take turns in
SENTENCE_KINDS: tuple[str, ...] = ("window", "delete", "shuffle")  # what ``cnn.augment`` uses
PAIR_KINDS: tuple[str, ...] = ("repair",)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)  # a whitespace word: leading punctuation, core, trailing


@dataclass(frozen=True)
class Vocabulary:
    """What the token-level generators need from the teacher: each word's nearest whole-word tokens (for
    ``neighbour``) and the mask token's text (for ``mask``)."""

    neighbours: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mask_token: str | None = None


def applicable_kinds(kinds: Sequence[str] | None, pairs: bool) -> tuple[str, ...]:
    """The generators that apply to this data, in turn order: ``kinds`` (None: all), less ``repair`` on single
    texts."""
    wanted = KINDS if kinds is None else tuple(kinds)
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}: expected some of {list(KINDS)}")
    return tuple(k for k in KINDS if k in wanted and (pairs or k not in PAIR_KINDS))


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


def _split_word(word: str) -> tuple[str, str, str]:
    match = _CORE.match(word)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2), match.group(3)


def _replace_neighbours(text: str, vocabulary: Vocabulary, rng: random.Random) -> str | None:
    """Each word with neighbours replaced with probability ``REPLACE`` (at least one), keeping its punctuation."""
    words = text.split()
    options: dict[int, tuple[str, ...]] = {}
    for i, word in enumerate(words):
        core = _split_word(word)[1]
        found = vocabulary.neighbours.get(core) or vocabulary.neighbours.get(core.lower())
        if found:
            options[i] = found
    if not options:
        return None
    picked = [i for i in options if rng.random() < REPLACE] or [rng.choice(list(options))]
    for i in picked:
        lead, _, tail = _split_word(words[i])
        words[i] = lead + rng.choice(options[i]) + tail
    return " ".join(words)


def _mask(text: str, mask_token: str | None, rng: random.Random) -> str | None:
    words = text.split()
    if mask_token is None or not words:
        return None
    picked = [i for i in range(len(words)) if rng.random() < MASK] or [rng.randrange(len(words))]
    for i in picked:
        words[i] = mask_token
    return " ".join(words)


def _drop(text: str, rng: random.Random) -> str | None:
    words = text.split()
    if len(words) < 2:
        return None
    kept = [w for w in words if rng.random() >= DROP]
    if len(kept) == len(words):
        del kept[rng.randrange(len(kept))]
    return " ".join(kept) if kept else None


def _variants(
    question: str,
    passage: str,
    factor: int,
    rng: random.Random,
    kinds: Sequence[str] = SENTENCE_KINDS,
    start: int = 0,
    *,
    vocabulary: Vocabulary | None = None,
    other_passage=None,
) -> list[str]:
    """Up to ``factor`` new passages for one row, the ``kinds`` taking turns from ``kinds[start]``.
    ``other_passage()`` draws another row's passage (``repair``)."""
    cut = windows(question, passage) if "window" in kinds else []
    parts = sentences(passage)
    vocabulary = vocabulary or Vocabulary()
    out: list[str] = []
    attempts = 0
    while len(out) < factor and attempts < len(kinds) * factor:
        kind = kinds[(start + attempts) % len(kinds)]
        attempts += 1
        varied: str | None = None
        if kind == "window" and cut:
            varied = cut.pop(0)
        elif kind == "delete" and len(parts) > 1:
            drop = rng.randrange(len(parts))
            varied = " ".join(p for i, p in enumerate(parts) if i != drop)
        elif kind == "shuffle" and len(parts) > 1:
            order = parts[:]
            while order == parts:
                rng.shuffle(order)
            varied = " ".join(order)
        elif kind == "repair" and other_passage is not None:
            varied = other_passage()
        elif kind == "neighbour":
            varied = _replace_neighbours(passage, vocabulary, rng)
        elif kind == "mask":
            varied = _mask(passage, vocabulary.mask_token, rng)
        elif kind == "drop":
            varied = _drop(passage, rng)
        if varied is not None and varied != passage and varied not in out:
            out.append(varied)
    return out


def augment(
    split: TextSplit,
    factor: int,
    seed: int = 0,
    kinds: Sequence[str] | None = SENTENCE_KINDS,
    vocabulary: Vocabulary | None = None,
) -> TextSplit:
    """``factor`` new rows per train row (fewer where a row has little to vary), labels still placeholders.
    ``kinds``: the generators (None: every one that applies); the token-level ones need ``vocabulary``."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, but got {factor!r}")
    pairs = split.text_pair is not None
    used = applicable_kinds(kinds, pairs)
    rng = random.Random(seed)
    texts: list[str] = []
    seconds: list[str] = []
    labels: list[int] = []
    n = len(split.text)
    for i, text in enumerate(split.text):
        second = split.text_pair[i] if split.text_pair is not None else text

        def other_passage(i: int = i) -> str | None:
            if split.text_pair is None or n < 2:
                return None
            j = rng.randrange(n - 1)
            return split.text_pair[j if j < i else j + 1]

        start = i % len(used)  # each row one generator further on: all are used alike whatever ``factor`` is
        for varied in _variants(
            text, second, factor, rng, used, start, vocabulary=vocabulary, other_passage=other_passage
        ):
            texts.append(text if pairs else varied)
            seconds.append(varied)
            labels.append(split.label[i])
    return TextSplit(
        text=tuple(texts),
        text_pair=tuple(seconds) if pairs else None,
        label=tuple(labels),
        label_names=split.label_names,
    )


def vocabulary_words(split: TextSplit) -> set[str]:
    """The words ``neighbour`` may replace in this split: the varied text's (the passage, or the single text)."""
    varied: Iterable[str] = split.text_pair if split.text_pair is not None else split.text
    words: set[str] = set()
    for text in varied:
        for word in text.split():
            core = _split_word(word)[1]
            if core.isalpha():
                words.add(core)
    return words


@torch.no_grad()
def embedding_neighbours(
    tokenizer, embeddings: torch.Tensor, words: Iterable[str], k: int = NEIGHBOURS, chunk: int = 1024
) -> dict[str, tuple[str, ...]]:
    """Each of ``words`` that is a whole token of ``tokenizer``'s vocabulary (as written, else lower-cased), with
    its ``k`` nearest whole-word tokens by cosine in ``embeddings`` (the model's input-embedding table, one row per
    token id).  Whole-word tokens: alphabetic, two letters or more, not special (a WordPiece ``##`` piece or a BPE
    ``Ġ``-prefixed token is not one, so byte-level vocabularies give few or no neighbours)."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_ids", []))
    candidates = sorted((i, t) for t, i in vocab.items() if t.isalpha() and len(t) > 1 and i not in special)
    if not candidates:
        return {}
    ids = torch.tensor([i for i, _ in candidates])
    names = [t for _, t in candidates]
    table = torch.nn.functional.normalize(embeddings.detach().float()[ids], dim=-1)
    position = {t: n for n, t in enumerate(names)}
    asked: list[tuple[str, int]] = []
    for word in sorted(set(words)):
        n = position.get(word, position.get(word.lower()))
        if n is not None:
            asked.append((word, n))
    out: dict[str, tuple[str, ...]] = {}
    for begin in range(0, len(asked), chunk):
        part = asked[begin : begin + chunk]
        rows = torch.tensor([n for _, n in part])
        similarity = table[rows] @ table.T
        similarity[torch.arange(len(part)), rows] = -2.0  # never the word itself
        best = similarity.topk(min(k, len(names) - 1), dim=-1).indices
        for (word, _), found in zip(part, best.tolist(), strict=True):
            out[word] = tuple(names[m] for m in found)
    return out
