"""Structured pruning: remove whole attention heads and FFN neurons, so that the Linear layers really shrink.

Magnitude pruning leaves zeros in dense matrices, which dense kernels multiply all the same.  Removing a head
deletes its ``head_size`` rows of the query, key and value weights and as many columns of the attention output;
removing an FFN neuron deletes one row of the intermediate Linear and one column of the output Linear.  What
remains is dense and smaller, so every kernel does less work.

What ``ratio`` r means, for heads and neurons alike: in every encoder block, ``round(r * H)`` of its H attention
heads and ``round(r * F)`` of its F FFN neurons are removed, always keeping at least one of each.  BERT-base at
r = 0.25 loses 3 of 12 heads and 768 of 3072 neurons in each of its 12 layers.  ALBERT's shared block is pruned
once, which shrinks every repetition of it.

Which ones go: the least important, scored on the same weights that removing them deletes.
- "magnitude": the L2 norm of a head's Q, K, V rows and attention-output columns; of a neuron's intermediate
  row and output column.  Needs no data.
- "gradient": first-order Taylor (Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning"):
  ``|w * dL/dw|`` summed over those weights and over a few labelled batches, an estimate of how much the loss
  would change if they were zero.

On disk: a Hugging Face config has one head count and derives the head size as width / heads, so it cannot say
"3 heads of size 8 in a 32-wide model".  The config therefore keeps describing the unpruned widths;
``structured_shape(model)`` is a JSON-able description of the shrunk ones, and ``restore_structured_shape_``
rebuilds them on a model built from that config, before its saved weights are loaded (as for low-rank layers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from latencysolver.compression.architectures import EncoderFamily, encoder_blocks, encoder_family
from latencysolver.compression.pruning import effective_weight

IMPORTANCE_KINDS: tuple[str, ...] = ("magnitude", "gradient")

PASS = "structured pruning"
_ATTENTION_IN = ("query", "key", "value")  # EncoderFamily fields of the Linears that produce the heads
_ROLES = (*_ATTENTION_IN, "attention_output", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class StructuredPruneReport:
    """What ``structured_prune_`` removed, per block in the order of ``blocks`` (qualified module names).

    Head indices count from 0 within the block as it was before the call.
    """

    ratio: float
    importance: str
    blocks: tuple[str, ...]
    heads_removed: tuple[tuple[int, ...], ...]
    heads_kept: tuple[int, ...]
    neurons_removed: tuple[int, ...]
    neurons_kept: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; ``restore_structured_shape_`` accepts it (it reads "heads" and "neurons")."""
        per_block = zip(
            self.blocks, self.heads_removed, self.heads_kept, self.neurons_removed, self.neurons_kept, strict=True
        )
        return {
            "ratio": self.ratio,
            "importance": self.importance,
            "blocks": {
                name: {"heads_removed": list(removed), "heads": heads, "neurons_removed": gone, "neurons": neurons}
                for name, removed, heads, gone, neurons in per_block
            },
        }


def _block_linears(block: nn.Module, arch: EncoderFamily) -> dict[str, nn.Module]:
    return {role: block.get_submodule(getattr(arch, role)) for role in _ROLES}


def _check_dense(name: str, arch: EncoderFamily, linears: dict[str, nn.Module]) -> dict[str, nn.Linear]:
    dense: dict[str, nn.Linear] = {}
    for role, linear in linears.items():
        if type(linear) is not nn.Linear:
            raise ValueError(
                f"{PASS}: {name}.{getattr(arch, role)} is a {type(linear).__name__}, not an nn.Linear; "
                "prune heads and neurons before low-rank factorization or quantization"
            )
        dense[role] = linear
    return dense


def _set_head_count_(block: nn.Module, arch: EncoderFamily, heads: int, head_size: int) -> None:
    # The attention forward passes reshape to (-1, head_size), so they follow the Linear shapes; these
    # attributes are only kept truthful for anyone who reads them.
    attention = block.get_submodule(arch.query.rpartition(".")[0])
    for field, value in (("num_attention_heads", heads), ("n_heads", heads), ("all_head_size", heads * head_size)):
        if hasattr(attention, field):
            setattr(attention, field, value)


@torch.no_grad()
def _keep(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear with only the output rows (``dim=0``) or input columns (``dim=1``) at ``index``.

    The copy is taken of the effective weight, so an unstructured pruning mask is baked in, not carried over.
    """
    weight = effective_weight(linear).index_select(dim, index)
    bias = linear.bias
    kept = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    kept.weight.copy_(weight)
    if bias is not None:
        kept.bias.copy_(bias[index] if dim == 0 else bias)  # removing input columns leaves the bias as it was
    return kept.train(linear.training)


def _skeleton(linear: nn.Linear, in_features: int | None = None, out_features: int | None = None) -> nn.Linear:
    """An uninitialised Linear of the new shape, meant to receive saved weights."""
    weight = linear.weight
    return nn.Linear(
        linear.in_features if in_features is None else in_features,
        linear.out_features if out_features is None else out_features,
        bias=linear.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    ).train(linear.training)


def _magnitude_stats(linears: list[nn.Linear]) -> dict[nn.Linear, torch.Tensor]:
    # Squared entries: a group's sum of them is its squared L2 norm, which ranks groups as the norm does.
    return {linear: effective_weight(linear).detach() ** 2 for linear in linears}


def _taylor_stats(
    model: nn.Module, linears: list[nn.Linear], batches: Iterable[dict[str, torch.Tensor]]
) -> dict[nn.Linear, torch.Tensor]:
    # While magnitude-pruned, the trainable tensor is weight_orig and ``weight`` is recomputed from it.
    params = [getattr(linear, "weight_orig", linear.weight) for linear in linears]
    totals = [torch.zeros_like(param, requires_grad=False) for param in params]
    was_training, seen = model.training, 0
    model.eval()  # no dropout: the scores should depend on the weights, not on one dropout draw
    try:
        for batch in batches:
            loss = model(**batch).loss
            if loss is None:
                raise ValueError(
                    f"{PASS}: gradient importance needs batches with labels, but the model returned no loss"
                )
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for total, linear, grad in zip(totals, linears, grads, strict=True):
                    if grad is not None:
                        total += (effective_weight(linear) * grad).abs()
            seen += 1
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError(f"{PASS}: gradient importance needs at least one batch, but got none")
    return dict(zip(linears, totals, strict=True))


def _head_scores(stats: dict[str, torch.Tensor], head_size: int) -> torch.Tensor:
    query, key, value = (stats[role] for role in _ATTENTION_IN)
    rows = (query + key + value).sum(1)  # one entry per output row of Q (= of K, of V)
    columns = stats["attention_output"].sum(0)  # one entry per input column of the output dense
    return (rows + columns).view(-1, head_size).sum(1)  # head h owns rows/columns h*head_size ... + head_size-1


def _least_important(scores: torch.Tensor, count: int) -> list[int]:
    # A stable sort, so ties (e.g. all-zero groups) are broken by index and a run is reproducible.
    return sorted(torch.argsort(scores, stable=True)[:count].tolist())


def _remaining(total: int, removed: list[int], device: torch.device) -> torch.Tensor:
    gone = set(removed)
    return torch.tensor([i for i in range(total) if i not in gone], dtype=torch.long, device=device)


def structured_prune_(
    model: nn.Module,
    ratio: float,
    importance: str = "magnitude",
    batches: Iterable[dict[str, torch.Tensor]] | None = None,
    head_ratio: float | None = None,
) -> StructuredPruneReport:
    """Remove ``round(ratio * H)`` attention heads and ``round(ratio * F)`` FFN neurons from every encoder block.

    ``head_ratio`` sets the heads' fraction apart (``0`` prunes the FFN only); by default it is ``ratio``.

    H and F are the block's head count and FFN width as they are now; at least one head and one neuron always
    stay.  ``importance`` picks which go: "magnitude" (weight norms) or "gradient" (first-order Taylor over
    ``batches``, dicts for ``model(**batch)`` that include ``labels``).  Linears that lose nothing are left as
    they are; shrunk ones are new dense ``nn.Linear`` modules with any unstructured pruning mask baked in.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"{PASS}: ratio must be in [0, 1), but got {ratio!r}")
    head_ratio = ratio if head_ratio is None else head_ratio
    if not 0.0 <= head_ratio < 1.0:
        raise ValueError(f"{PASS}: head_ratio must be in [0, 1), but got {head_ratio!r}")
    if importance not in IMPORTANCE_KINDS:
        raise ValueError(f"{PASS}: importance must be one of {IMPORTANCE_KINDS}, but got {importance!r}")
    if importance == "gradient" and batches is None:
        raise ValueError(f"{PASS}: importance='gradient' needs batches with labels, but got batches=None")
    arch = encoder_family(model, PASS)
    head_size = arch.head_size(model.config)
    found = [(name, block, _block_linears(block, arch)) for name, block in encoder_blocks(model, PASS)]
    blocks = [(name, block, _check_dense(name, arch, linears)) for name, block, linears in found]
    every_linear = [linear for _, _, linears in blocks for linear in linears.values()]
    if importance == "magnitude":
        stats = _magnitude_stats(every_linear)
    else:
        assert batches is not None  # checked above
        stats = _taylor_stats(model, every_linear, batches)

    heads_removed: list[tuple[int, ...]] = []
    heads_kept: list[int] = []
    neurons_removed: list[int] = []
    neurons_kept: list[int] = []
    for _, block, linears in blocks:
        block_stats = {role: stats[linear] for role, linear in linears.items()}
        heads = linears["query"].out_features // head_size
        neurons = linears["ffn_in"].out_features
        drop_heads = _least_important(_head_scores(block_stats, head_size), min(round(head_ratio * heads), heads - 1))
        neuron_scores = block_stats["ffn_in"].sum(1) + block_stats["ffn_out"].sum(0)
        drop_neurons = _least_important(neuron_scores, min(round(ratio * neurons), neurons - 1))
        device = linears["query"].weight.device

        if drop_heads:
            kept = _remaining(heads, drop_heads, device)
            # Head h is rows h*head_size ... (h+1)*head_size - 1 of Q, K, V and those columns of the output.
            rows = (kept[:, None] * head_size + torch.arange(head_size, device=device)).flatten()
            for role in _ATTENTION_IN:
                block.set_submodule(getattr(arch, role), _keep(linears[role], rows, dim=0))
            block.set_submodule(arch.attention_output, _keep(linears["attention_output"], rows, dim=1))
            _set_head_count_(block, arch, len(kept), head_size)
        if drop_neurons:
            kept = _remaining(neurons, drop_neurons, device)
            block.set_submodule(arch.ffn_in, _keep(linears["ffn_in"], kept, dim=0))
            block.set_submodule(arch.ffn_out, _keep(linears["ffn_out"], kept, dim=1))

        heads_removed.append(tuple(drop_heads))
        heads_kept.append(heads - len(drop_heads))
        neurons_removed.append(len(drop_neurons))
        neurons_kept.append(neurons - len(drop_neurons))
    return StructuredPruneReport(
        ratio=ratio,
        importance=importance,
        blocks=tuple(name for name, _, _ in blocks),
        heads_removed=tuple(heads_removed),
        heads_kept=tuple(heads_kept),
        neurons_removed=tuple(neurons_removed),
        neurons_kept=tuple(neurons_kept),
    )


def structured_shape(model: nn.Module) -> dict[str, Any]:
    """The head and neuron counts of the blocks narrower than the config says, as JSON for ``student.json``.

    Read from the model as it is now, so it stays right after a later ``drop_layers_`` renumbers the blocks
    (which would make the names in a ``StructuredPruneReport`` stale).  Empty "blocks" for an unpruned model.
    """
    arch = encoder_family(model, PASS)
    config = model.config
    head_size = arch.head_size(config)
    full = (getattr(config, arch.heads_field), getattr(config, arch.ffn_field))
    shape = {}
    for name, block in encoder_blocks(model, PASS):
        # in/out_features: a LowRankLinear that replaced a shrunk Linear reports the same widths (ints; the
        # casts because nn.Module's __getattr__ types every attribute it does not know as Tensor | Module).
        widths = (
            cast(int, block.get_submodule(arch.query).out_features) // head_size,
            cast(int, block.get_submodule(arch.ffn_in).out_features),
        )
        if widths != full:
            shape[name] = {"heads": widths[0], "neurons": widths[1]}
    return {"blocks": shape}


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"cannot restore the structured shape: {what} must be a positive integer, but got {value!r}")
    return value


def restore_structured_shape_(model: nn.Module, shape: dict[str, Any]) -> None:
    """Give a model built from the unpruned config the head and neuron counts in ``shape``, so saved weights load.

    ``shape`` is ``structured_shape(model)`` or ``StructuredPruneReport.to_dict()``: ``{"blocks": {block name:
    {"heads": H, "neurons": F}}}``.  The new Linears are uninitialised, meant to receive the saved state dict.
    For a model that was also factorized, call this before ``restore_low_rank_structure_``: the low-rank
    skeletons take their widths from the Linears made here.
    """
    blocks_shape = shape.get("blocks") if isinstance(shape, dict) else None
    if not isinstance(blocks_shape, dict):
        raise ValueError(f"cannot restore the structured shape: expected {{'blocks': {{...}}}}, but got {shape!r}")
    arch = encoder_family(model, PASS)
    head_size = arch.head_size(model.config)
    blocks = dict(encoder_blocks(model, PASS))
    for name, widths in blocks_shape.items():
        if name not in blocks:
            raise ValueError(f"cannot restore the structured shape of {name!r}: the model has no such encoder block")
        if not isinstance(widths, dict):
            raise ValueError(f"cannot restore the structured shape of {name!r}: expected a dict, but got {widths!r}")
        heads = _positive_int(widths.get("heads"), f"{name}: heads")
        neurons = _positive_int(widths.get("neurons"), f"{name}: neurons")
        block = blocks[name]
        linears = _check_dense(name, arch, _block_linears(block, arch))
        for role in _ATTENTION_IN:
            block.set_submodule(getattr(arch, role), _skeleton(linears[role], out_features=heads * head_size))
        block.set_submodule(
            arch.attention_output, _skeleton(linears["attention_output"], in_features=heads * head_size)
        )
        block.set_submodule(arch.ffn_in, _skeleton(linears["ffn_in"], out_features=neurons))
        block.set_submodule(arch.ffn_out, _skeleton(linears["ffn_out"], in_features=neurons))
        _set_head_count_(block, arch, heads, head_size)
