"""Unstructured magnitude pruning of the encoder's Linear layers.

Each encoder Linear loses the ``ratio`` fraction of its weights with the smallest absolute value, layer by
layer (so every layer ends up equally sparse, rather than small-weight layers being emptied by a global
threshold).  Embeddings, the pooler and the classifier head are left dense: they are a small share of the
multiply-adds and the head in particular is sensitive.

The pruning stays a reparametrization (``weight = weight_orig * weight_mask``, recomputed before every
forward) while the student is distilled, so the optimizer can move ``weight_orig`` but the pruned entries
stay zero.  ``make_pruning_permanent_`` folds the mask in afterwards.  Note that zeros in a dense tensor do not
make dense kernels faster; this knob trades accuracy for size and for what sparse runtimes could exploit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from latencysolver.compression.architectures import encoder_blocks


def encoder_linears(model: nn.Module, pass_name: str = "compression") -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` inside the encoder blocks, with its qualified name as in ``model.named_modules()``.

    After low-rank factorization this includes the ``down``/``up`` factors of each ``LowRankLinear``: they
    are the Linear layers the encoder now runs.  ALBERT's shared blocks are listed once, so a pass over these
    acts on the shared weights (and on every repetition at once).  ``pass_name`` goes into the error raised
    for an unsupported model.
    """
    return [
        (name, module)
        for block_name, block in encoder_blocks(model, pass_name)
        for name, module in block.named_modules(prefix=block_name)
        if isinstance(module, nn.Linear)
    ]


def effective_weight(linear: nn.Linear) -> torch.Tensor:
    """The weight the layer computes with: ``weight_orig * weight_mask`` while a pruning mask is active.

    ``linear.weight`` is only refreshed by the pruning pre-hook at the next forward pass, so after an
    optimizer step it can be stale; recomputing from the two tensors is always current.
    """
    orig, mask = getattr(linear, "weight_orig", None), getattr(linear, "weight_mask", None)
    if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
        return orig * mask
    return linear.weight


def magnitude_prune_(model: nn.Module, ratio: float) -> None:
    """Zero the ``ratio`` smallest-magnitude weights of each encoder Linear, keeping the mask attached."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"prune ratio must be in [0, 1), but got {ratio!r}")
    if ratio == 0.0:
        return
    for _, linear in encoder_linears(model, "magnitude pruning"):
        prune.l1_unstructured(linear, "weight", amount=ratio)


def make_pruning_permanent_(model: nn.Module) -> None:
    """Fold every pruning mask into its tensor: the state dict has plain ``weight`` (with the zeros) again."""
    for module in model.modules():
        # torch.nn.utils.prune stores a pruned tensor ``X`` as parameter ``X_orig`` plus buffer ``X_mask``.
        pruned = [
            name[: -len("_mask")]
            for name, _ in module.named_buffers(recurse=False)
            if name.endswith("_mask") and hasattr(module, name[: -len("_mask")] + "_orig")
        ]
        for name in pruned:
            prune.remove(module, name)


@torch.no_grad()
def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries over the (effective) weights of all encoder Linears."""
    zeros = total = 0
    for _, linear in encoder_linears(model):
        weight = effective_weight(linear)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0
