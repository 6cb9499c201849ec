"""The lightweight student of the original LatencySolver recipe: embeddings, 1-D convolutions, a linear head.

    ids ─► word (+ segment) embedding ─► zero the padding ─┬─► Conv1d(k=3) ─► ReLU ─► max over time ─┐
                                                           └─► Conv1d(k=5) ─► ReLU ─► max over time ─┴─► concat
                                                                                 ─► dropout ─► Linear ─► logits

A TextCNN (Kim, 2014): each branch detects n-grams of its width anywhere in the (question, passage) pair, and
the max over time keeps the strongest hit per channel.  Unlike the transformer students, it shares no weights
with the teacher (at most its word embeddings): it is trained from scratch by distillation from the teacher's
cached train logits, through the same ``distill()`` as every other student.

Padding must not change the answer, and it does not, exactly:
  * pad positions are zeroed after the embedding, so a convolution that reaches past a row's end sees zeros,
    the same zeros ``padding=k // 2`` adds at the end of an unpadded row;
  * after ReLU every activation is >= 0, so multiplying pad positions by 0 before the max cannot raise it: the
    max over real positions is already >= 0.  No -inf fill, no data-dependent branch: the graph exports to ONNX
    as plain Gather / Add / Transpose / Mul / Conv / Relu / ReduceMax / Concat / Gemm.

Size at the defaults (vocab 30522, 128-d embeddings, 128 channels, kernels 3 and 5): the embedding table is
30522·128 = 3.9 M of the 4.04 M parameters; the convolutions are 128·128·(3+5) + 2·128 = 131 k.  A MiniLM-L6
classifier has 22.7 M.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from latencysolver.errors import ModelError, first_line

WEIGHTS = "model.safetensors"
CNN_JSON = "cnn.json"


@dataclass(frozen=True)
class CNNConfig:
    vocab_size: int  # the teacher tokenizer's: the student reads the same token ids
    embed_dim: int = 128
    channels: int = 128  # per kernel size
    kernel_sizes: tuple[int, ...] = (3, 5)  # odd, so ``padding=k // 2`` keeps one output per token
    dropout: float = 0.1
    num_labels: int = 2
    type_vocab_size: int = 2  # segment embeddings (question / passage); 0 turns them off
    max_length: int = 256  # the tokenizer's truncation length it was trained with; the convolutions take any length
    # pair-aware: question and passage pooled apart by the shared convolutions and compared (see PairFeatures);
    # the passage starts after the first ``sep_token_id`` when there are no token type ids to say where
    pair_aware: bool = False
    sep_token_id: int | None = None
    # > 0: a Linear from the pooled features to this width (the teacher's), trained towards the teacher's pooled
    # representation (the representation loss); it plays no part in the logits
    representation_dim: int = 0

    def __post_init__(self) -> None:
        # from_dict hands over a JSON list; keep the dataclass hashable and comparable
        object.__setattr__(self, "kernel_sizes", tuple(self.kernel_sizes))
        for name in ("vocab_size", "embed_dim", "channels", "num_labels", "max_length"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("type_vocab_size", self.type_vocab_size, minimum=0)
        _check_int("representation_dim", self.representation_dim, minimum=0)
        if self.sep_token_id is not None:
            _check_int("sep_token_id", self.sep_token_id, minimum=0)
        if not self.kernel_sizes:
            raise ValueError("kernel_sizes must name at least one kernel size, but got ()")
        for k in self.kernel_sizes:
            _check_int("kernel_sizes", k, minimum=1)
            if k % 2 == 0:
                raise ValueError(
                    f"kernel_sizes must be odd (an even kernel shifts the output by half a token), "
                    f"but got {k!r} in {self.kernel_sizes!r}"
                )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), but got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kernel_sizes"] = list(self.kernel_sizes)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CNNConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown CNNConfig field (known: {', '.join(sorted(known))})")
        if "kernel_sizes" in raw and not isinstance(raw["kernel_sizes"], (list, tuple)):
            raise ValueError(f"kernel_sizes must be a list of odd integers, but got {raw['kernel_sizes']!r}")
        return cls(**raw)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, but got {value!r}")


class CNNClassifier(nn.Module):
    """Called like a Hugging Face classifier: ``model(input_ids=..., attention_mask=...).logits``; with
    ``output_hidden_states=True`` and a ``representation_dim``, ``.hidden_states[-1]`` is the projected features."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.segment = nn.Embedding(config.type_vocab_size, config.embed_dim) if config.type_vocab_size else None
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embed_dim, config.channels, k, padding=k // 2) for k in config.kernel_sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        width = feature_width(config)
        self.head = nn.Linear(width, config.num_labels)
        self.project = nn.Linear(width, config.representation_dim) if config.representation_dim else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **ignored: Any,
    ) -> SequenceClassifierOutput:
        x = self.embed(input_ids)  # (batch, time, embed)
        if self.segment is not None and token_type_ids is not None:
            x = x + self.segment(token_type_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.to(x.dtype).unsqueeze(1)  # (batch, 1, time), broadcasts over channels
        x = x.transpose(1, 2) * mask  # (batch, embed, time), padding zeroed: see the module docstring
        maps = [torch.relu(conv(x)) * mask for conv in self.convs]  # each (batch, channels, time), >= 0
        if self.config.pair_aware:
            second = self._second_segment(input_ids, token_type_ids, mask)
            features = torch.cat([pair_features(m, mask - second, second) for m in maps], dim=1)
        else:
            features = torch.cat([m.amax(dim=2) for m in maps], dim=1)  # each (batch, channels)
        logits = self.head(self.dropout(features))
        hidden = (self.project(features),) if output_hidden_states and self.project is not None else None
        return SequenceClassifierOutput(logits=logits, hidden_states=hidden)

    def _second_segment(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, mask: torch.Tensor
    ) -> torch.Tensor:
        """(batch, 1, time): 1 on the passage's tokens (token type 1, or after the first separator), else 0."""
        if token_type_ids is not None and self.config.type_vocab_size:
            return token_type_ids.to(mask.dtype).unsqueeze(1) * mask
        if self.config.sep_token_id is None:
            raise ValueError("a pair-aware CNN needs token type ids or a sep_token_id to find the second text")
        is_sep = (input_ids == self.config.sep_token_id).to(mask.dtype)
        after = ((torch.cumsum(is_sep, dim=1) - is_sep) > 0).to(mask.dtype)  # past the first separator
        return after.unsqueeze(1) * mask


def pair_features(a: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Interaction features of one convolution's activations ``a`` (batch, channels, time; >= 0, padding zero)
    between the first text's positions and the second's (masks (batch, 1, time)): the max-pooled vectors q and
    p, their product and absolute difference, and the question-passage similarity map S = a_qᵀ a_p / √channels
    max-pooled over the passage, then its max and mean over the question's tokens.  (batch, 4·channels + 2).

    As in the module docstring, masks multiply rather than fill with -inf: activations are >= 0, so a zeroed
    position never wins a max.  S's entries are >= 0 too, so masking S by products of the two masks works the
    same way; the mean divides by the question's token count."""
    q = (a * first).amax(dim=2)
    p = (a * second).amax(dim=2)
    scale = a.shape[1] ** -0.5
    similarity = torch.bmm((a * first).transpose(1, 2), a * second) * scale  # (batch, time_q, time_p), >= 0
    best = similarity.amax(dim=2)  # (batch, time): each question token's best passage match (0 off the question)
    count = first.sum(dim=2).clamp(min=1.0)  # (batch, 1)
    return torch.cat([q, p, q * p, (q - p).abs(), best.amax(dim=1, keepdim=True), best.sum(1, keepdim=True) / count], 1)


def feature_width(config: CNNConfig) -> int:
    per_kernel = 4 * config.channels + 2 if config.pair_aware else config.channels
    return per_kernel * len(config.kernel_sizes)


def num_parameters(config: CNNConfig) -> int:
    """Closed form of the parameter count, for search spaces and reports that do not build the model."""
    e, c = config.embed_dim, config.channels
    embeddings = (config.vocab_size + config.type_vocab_size) * e
    convs = sum(e * c * k + c for k in config.kernel_sizes)
    width = feature_width(config)
    head = width * config.num_labels + config.num_labels
    project = width * config.representation_dim + config.representation_dim if config.representation_dim else 0
    return embeddings + convs + head + project


@torch.no_grad()
def cnn_from_teacher(teacher: nn.Module, config: CNNConfig) -> CNNClassifier:
    """A fresh CNN whose word embeddings start from the teacher's where the shapes allow it.

    Same width: copied.  Narrower: the teacher's table projected on its top ``embed_dim`` principal directions
    (centred), which keeps as much of the spread between token vectors as any linear map to that width can.
    Wider: random, like every other weight of the CNN.  Randomness is seeded by the caller (``torch.manual_seed``).
    """
    model = CNNClassifier(config)
    # a transformers model's method, typed Any: nn.Module's __getattr__ would type it Tensor | Module
    input_embeddings: Any = teacher.get_input_embeddings
    table = input_embeddings().weight.detach().float()
    if table.shape[0] != config.vocab_size:
        raise ValueError(
            f"vocab_size must match the teacher's vocabulary ({table.shape[0]}), but got {config.vocab_size!r}"
        )
    if table.shape[1] == config.embed_dim:
        model.embed.weight.copy_(table)
    elif table.shape[1] > config.embed_dim:
        centred = table - table.mean(dim=0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # (hidden, hidden): cheap for hidden <= 1024
        model.embed.weight.copy_(centred @ vh[: config.embed_dim].T)
    return model


def save_cnn(model: CNNClassifier, folder: str | Path) -> None:
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS))
    (folder / CNN_JSON).write_text(json.dumps(model.config.to_dict(), indent=2))


def load_cnn(folder: str | Path) -> CNNClassifier:
    """The saved CNN in eval mode; a folder that is not one is a ``ModelError`` naming what is wrong."""
    from safetensors.torch import load_model

    folder = Path(folder)
    for name in (WEIGHTS, CNN_JSON):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: not a latencysolver CNN folder ({name} is missing)")
    from safetensors import SafetensorError

    try:
        model = CNNClassifier(CNNConfig.from_dict(json.loads((folder / CNN_JSON).read_text())))
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:  # JSONDecodeError is a ValueError
        raise ModelError(f"{folder / CNN_JSON}: cannot rebuild the CNN: {first_line(exc)}") from None
    try:
        load_model(model, str(folder / WEIGHTS), strict=True)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise ModelError(
            f"{folder / WEIGHTS}: cannot rebuild the CNN from these weights (truncated, or not the shapes "
            f"{CNN_JSON} says): {first_line(exc)}"
        ) from None
    return model.eval()
