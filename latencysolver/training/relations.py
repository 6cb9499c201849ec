"""Self-attention relation distillation (MiniLMv2, Wang et al. 2021): a student layer learns how its teacher layer
relates the tokens of a row to each other, through the queries, keys and values each attention computes.

For one layer and one of Q, K, V (a tensor rows × tokens × width), the width is cut into ``R`` relation heads of
``width / R`` each, and each head gives a tokens × tokens relation, softmax(A·Aᵀ / sqrt(width / R)).  The loss is
the KL divergence from the teacher's relation to the student's, over the real tokens (padding masked), averaged
over query tokens, heads, rows and the three relations.  Because a relation is tokens × tokens whatever the width,
a student with fewer heads (structured pruning) or a low-rank projection needs no projection to compare: only
``R`` must divide both widths (``relation_heads``).

Student layer j is compared with the teacher layer ``hidden_targets`` gives it: the last of the block of teacher
layers it replaces, the uniform mapping TinyBERT found better than mapping onto the top or bottom layers.  Under
LayerDrop the student runs a different subset of its layers each step, so only the last layers are compared.

The projections are read with forward hooks on each block's query, key and value modules (``compression/
architectures.py`` names them per family; a fused ``Wqkv`` is split in three), in the order the layers run, so
ALBERT's repeated shared block is seen once per repetition.  Learned from the MiniLMv2 paper and the reference
implementation in microsoft/unilm (minilm/).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from latencysolver.compression.architectures import encoder_blocks, encoder_family

ROLES = ("query", "key", "value")


@contextmanager
def capture_projections(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """While inside, the yielded lists hold every layer's query, key and value output (rows × tokens × width) of
    the last forward pass of ``model``, in the order the layers ran.  Outputs of another shape are left out:
    DeBERTa also projects its relative-position embeddings through the same Linears."""
    arch = encoder_family(model, "attention relations")
    seen: dict[str, list[torch.Tensor]] = {role: [] for role in ROLES}
    shape: list[torch.Size] = []  # (rows, tokens) of the pass under way

    def start(_module: nn.Module, args: tuple, kwargs: dict) -> None:  # each pass starts afresh
        for found in seen.values():
            found.clear()
        ids = kwargs.get("input_ids", args[0] if args else None)
        shape[:] = [ids.shape[:2]] if isinstance(ids, torch.Tensor) else []

    def keep(role: str, out: torch.Tensor) -> None:
        if not shape or out.shape[:2] == shape[0]:
            seen[role].append(out)

    handles = [model.register_forward_pre_hook(start, with_kwargs=True)]
    for _, block in encoder_blocks(model, "attention relations"):
        if arch.fused_qkv:

            def fused(_module: nn.Module, _args: object, out: torch.Tensor) -> None:
                for role, part in zip(ROLES, out.chunk(3, dim=-1), strict=True):
                    keep(role, part)

            handles.append(block.get_submodule(arch.query).register_forward_hook(fused))
            continue
        for role in ROLES:

            def hook(_module: nn.Module, _args: object, out: torch.Tensor, role: str = role) -> None:
                keep(role, out)

            handles.append(block.get_submodule(getattr(arch, role)).register_forward_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def relation_heads(student_width: int, teacher_width: int, most: int) -> int:
    """The most relation heads, at most ``most`` (the teacher's attention heads), that divide both widths."""
    common = math.gcd(student_width, teacher_width)
    return max(r for r in range(1, most + 1) if common % r == 0)


def _log_relations(x: torch.Tensor, heads: int, key_mask: torch.Tensor) -> torch.Tensor:
    """log softmax(A·Aᵀ / sqrt(d)) per relation head: rows × heads × tokens × tokens, padded keys left out."""
    rows, tokens, width = x.shape
    a = x.float().view(rows, tokens, heads, width // heads).transpose(1, 2)
    scores = a @ a.transpose(-1, -2) / math.sqrt(width // heads)
    # padded keys get a finite -1e4 rather than -inf: exp() makes them exactly 0, and 0 * (log p_t - log p_s)
    # stays 0 without a NaN to mask out
    scores = scores.masked_fill(~key_mask[:, None, None, :], -1e4)
    return F.log_softmax(scores, dim=-1)


def relation_loss(
    student: dict[str, list[torch.Tensor]],
    teacher: dict[str, list[torch.Tensor]],
    targets: list[int] | None,
    attention_mask: torch.Tensor,
    most_heads: int,
) -> torch.Tensor:
    """Mean over the compared layers and Q, K, V of KL(teacher relation ‖ student relation), over real tokens.

    ``targets[j]`` is the teacher layer student layer j learns from; None compares the last layers only."""
    depth = len(student["query"])
    if targets is None:
        pairs = [(depth - 1, len(teacher["query"]) - 1)]
    elif depth == len(targets):
        pairs = list(enumerate(targets))
    else:
        raise ValueError(f"the student ran {depth} layers, but {len(targets)} targets were given")
    mask = attention_mask.bool()
    real = mask.float()
    losses = []
    for j, t in pairs:
        for role in ROLES:
            s, r = student[role][j], teacher[role][t]
            heads = relation_heads(s.shape[-1], r.shape[-1], most_heads)
            with torch.no_grad():
                log_t = _log_relations(r, heads, mask)
            log_s = _log_relations(s, heads, mask)
            kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # per query token: sum over keys of p_t (log p_t - log p_s)
            losses.append((kl * real[:, None, :]).sum() / (real.sum() * heads))
    return torch.stack(losses).mean()
