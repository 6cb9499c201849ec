"""Structured pruning: remove whole attention heads and FFN neurons, so that the Linear layers really shrink.

Magnitude pruning leaves zeros in dense matrices, which dense kernels multiply all the same.  Removing a head
deletes its ``head_size`` rows of the query, key and value weights and as many columns of the attention output;
removing an FFN neuron deletes one row of the intermediate Linear and one column of the output Linear.  What
remains is dense and smaller, so every kernel does less work.  The family's ``slots`` say where those rows are:
in ModernBERT's fused ``Wqkv`` a head owns its rows in each third ([Q; K; V]), in its gated ``Wi`` a neuron owns
row i and row F + i ([input; gate]); DeBERTa's ``pos_key_proj`` / ``pos_query_proj`` (``share_att_key`` False)
lose a removed head's rows as Q, K and V do, and DeBERTa's attention is told its new head count, which it
reshapes by.

What ``ratio`` r means, for heads and neurons alike: in every encoder block, ``round(r * H)`` of its H attention
heads and ``round(r * F)`` of its F FFN neurons are removed, always keeping at least one of each.  BERT-base at
r = 0.25 loses 3 of 12 heads and 768 of 3072 neurons in each of its 12 layers.  ALBERT's shared block is pruned
once, which shrinks every repetition of it.

Which ones go: the least important, scored on the same weights that removing them deletes.
- "magnitude": the L2 norm of a head's Q, K, V (and DeBERTa position-projection) rows and attention-output
  columns; of a neuron's intermediate row(s) and output column.  Needs no data.
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

from latencysolver.compression.architectures import EncoderFamily, Slot, encoder_blocks, encoder_family
from latencysolver.compression.pruning import effective_weight

IMPORTANCE_KINDS: tuple[str, ...] = ("magnitude", "gradient")

PASS = "structured pruning"


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


# A block's Linears as structured pruning sees them: each distinct one once, with the rows or columns per unit.
Parts = list[tuple[Slot, nn.Linear]]


def _block_parts(name: str, block: nn.Module, arch: EncoderFamily) -> Parts:
    """The block's slots with their Linears; a ValueError if one is no longer a plain ``nn.Linear``."""
    parts: Parts = []
    for slot in arch.slots(block):
        linear = block.get_submodule(slot.path)
        if type(linear) is not nn.Linear:
            raise ValueError(
                f"{PASS}: {name}.{slot.path} is a {type(linear).__name__}, not an nn.Linear; "
                "prune heads and neurons before low-rank factorization or quantization"
            )
        parts.append((slot, linear))
    return parts


def _unit_size(slot: Slot, head_size: int) -> int:
    return head_size if slot.unit == "head" else 1


def _widths(parts: Parts, head_size: int) -> tuple[int, int]:
    """(heads, neurons) of a block, read from its first head slot and its first neuron slot."""
    found: dict[str, int] = {}
    for slot, linear in parts:
        features = linear.out_features if slot.axis == 0 else linear.in_features
        found.setdefault(slot.unit, features // (slot.groups * _unit_size(slot, head_size)))
    return found["head"], found["neuron"]


def _unit_index(units: torch.Tensor, slot: Slot, head_size: int, total: int) -> torch.Tensor:
    """The rows or columns of ``slot``'s Linear that the units ``units`` (of ``total`` in the block) own."""
    size = _unit_size(slot, head_size)
    within = (units[:, None] * size + torch.arange(size, device=units.device)).flatten()
    return torch.cat([within + g * total * size for g in range(slot.groups)])


def _set_head_count_(block: nn.Module, arch: EncoderFamily, heads: int, head_size: int) -> None:
    # BERT-like and ModernBERT attention reshapes to (-1, head_size), so it follows the Linear shapes, and these
    # attributes are kept truthful for anyone who reads them.  DeBERTa's reshapes to (num_attention_heads, -1):
    # there the count must be right.
    attention = block.get_submodule(arch.query.rpartition(".")[0])
    for field, value in (("num_attention_heads", heads), ("n_heads", heads), ("all_head_size", heads * head_size)):
        if hasattr(attention, field):
            setattr(attention, field, value)


def _shrink_block_(
    block: nn.Module,
    arch: EncoderFamily,
    parts: Parts,
    head_size: int,
    heads: torch.Tensor | None,
    neurons: torch.Tensor | None,
) -> None:
    """Keep only the heads ``heads`` and the neurons ``neurons`` (indices, in that order; None keeps all)."""
    totals = _widths(parts, head_size)
    for slot, linear in parts:
        kept, total = (heads, totals[0]) if slot.unit == "head" else (neurons, totals[1])
        if kept is not None:
            block.set_submodule(slot.path, _keep(linear, _unit_index(kept, slot, head_size, total), slot.axis))
    if heads is not None:
        _set_head_count_(block, arch, len(heads), head_size)


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


def _skeleton(linear: nn.Linear, axis: int, features: int) -> nn.Linear:
    """An uninitialised Linear with ``features`` output rows (``axis=0``) or input columns, for saved weights."""
    weight = linear.weight
    return nn.Linear(
        features if axis == 1 else linear.in_features,
        features if axis == 0 else linear.out_features,
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


def _unit_scores(parts: Parts, stats: dict[nn.Linear, torch.Tensor], head_size: int) -> tuple[torch.Tensor, ...]:
    """(per head, per neuron) of one block: the statistic summed over every row and column the unit owns."""
    found: dict[str, list[torch.Tensor]] = {"head": [], "neuron": []}
    for slot, linear in parts:
        per_line = stats[linear].sum(1 - slot.axis)  # one entry per output row (axis 0) or input column (axis 1)
        found[slot.unit].append(per_line.view(slot.groups, -1, _unit_size(slot, head_size)).sum((0, 2)))
    return torch.stack(found["head"]).sum(0), torch.stack(found["neuron"]).sum(0)


def _importance_stats(
    model: nn.Module, linears: list[nn.Linear], importance: str, batches: Iterable[dict[str, torch.Tensor]] | None
) -> dict[nn.Linear, torch.Tensor]:
    if importance == "magnitude":
        return _magnitude_stats(linears)
    assert batches is not None  # the callers check
    return _taylor_stats(model, linears, batches)


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
    blocks = [(name, block, _block_parts(name, block, arch)) for name, block in encoder_blocks(model, PASS)]
    stats = _importance_stats(model, [linear for _, _, parts in blocks for _, linear in parts], importance, batches)

    heads_removed: list[tuple[int, ...]] = []
    heads_kept: list[int] = []
    neurons_removed: list[int] = []
    neurons_kept: list[int] = []
    for _, block, parts in blocks:
        heads, neurons = _widths(parts, head_size)
        head_scores, neuron_scores = _unit_scores(parts, stats, head_size)
        drop_heads = _least_important(head_scores, min(round(head_ratio * heads), heads - 1))
        drop_neurons = _least_important(neuron_scores, min(round(ratio * neurons), neurons - 1))
        device = parts[0][1].weight.device
        # Head h is rows h*head_size ... (h+1)*head_size - 1 of Q, K, V (of each third of a fused QKV) and
        # those columns of the attention output; neuron i one row of the FFN's first Linear (of each half of a
        # gated one) and one column of its second.
        _shrink_block_(
            block,
            arch,
            parts,
            head_size,
            _remaining(heads, drop_heads, device) if drop_heads else None,
            _remaining(neurons, drop_neurons, device) if drop_neurons else None,
        )
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


def _first_block_normed(model: nn.Module, arch: EncoderFamily) -> bool:
    """Whether block 0 has a norm that a model built from the config lacks (ModernBERT after dropping block 0)."""
    if not arch.first_block_norm:
        return False
    first = encoder_blocks(model, PASS)[0][1]
    return not isinstance(first.get_submodule(arch.first_block_norm), nn.Identity)


def structured_shape(model: nn.Module) -> dict[str, Any]:
    """The head and neuron counts of the blocks narrower than the config says, as JSON for ``student.json``.

    Read from the model as it is now, so it stays right after a later ``drop_layers_`` renumbers the blocks
    (which would make the names in a ``StructuredPruneReport`` stale).  Empty "blocks" for an unpruned model.
    A ModernBERT whose block 0 was dropped also gets ``"first_block_norm": true``: its new block 0 has the
    attention LayerNorm that the config would build as an Identity there.
    """
    arch = encoder_family(model, PASS)
    config = model.config
    head_size = arch.head_size(config)
    full = (getattr(config, arch.heads_field), getattr(config, arch.ffn_field))
    blocks = {}
    for name, block in encoder_blocks(model, PASS):
        # in/out_features: a LowRankLinear that replaced a shrunk Linear reports the same widths (ints; the
        # casts because nn.Module's __getattr__ types every attribute it does not know as Tensor | Module).
        widths = (
            cast(int, block.get_submodule(arch.query).out_features) // (arch.groups("query") * head_size),
            cast(int, block.get_submodule(arch.ffn_in).out_features) // arch.groups("ffn_in"),
        )
        if widths != full:
            blocks[name] = {"heads": widths[0], "neurons": widths[1]}
    shape: dict[str, Any] = {"blocks": blocks}
    if _first_block_normed(model, arch):
        shape["first_block_norm"] = True
    return shape


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"cannot restore the structured shape: {what} must be a positive integer, but got {value!r}")
    return value


def restore_structured_shape_(model: nn.Module, shape: dict[str, Any]) -> None:
    """Give a model built from the unpruned config the head and neuron counts in ``shape``, so saved weights load.

    ``shape`` is ``structured_shape(model)`` or ``StructuredPruneReport.to_dict()``: ``{"blocks": {block name:
    {"heads": H, "neurons": F}}}``, and optionally ``"first_block_norm": true``.  The new modules are
    uninitialised, meant to receive the saved state dict.  For a model that was also factorized, call this
    before ``restore_low_rank_structure_``: the low-rank skeletons take their widths from the Linears made here.
    """
    blocks_shape = shape.get("blocks") if isinstance(shape, dict) else None
    if not isinstance(blocks_shape, dict):
        raise ValueError(f"cannot restore the structured shape: expected {{'blocks': {{...}}}}, but got {shape!r}")
    arch = encoder_family(model, PASS)
    config: Any = model.config  # a PretrainedConfig (nn.Module's __getattr__ would type it Tensor | Module)
    head_size = arch.head_size(config)
    blocks = dict(encoder_blocks(model, PASS))
    for name, widths in blocks_shape.items():
        if name not in blocks:
            raise ValueError(f"cannot restore the structured shape of {name!r}: the model has no such encoder block")
        if not isinstance(widths, dict):
            raise ValueError(f"cannot restore the structured shape of {name!r}: expected a dict, but got {widths!r}")
        counts = {
            "head": _positive_int(widths.get("heads"), f"{name}: heads"),
            "neuron": _positive_int(widths.get("neurons"), f"{name}: neurons"),
        }
        block = blocks[name]
        for slot, linear in _block_parts(name, block, arch):
            features = slot.groups * counts[slot.unit] * _unit_size(slot, head_size)
            block.set_submodule(slot.path, _skeleton(linear, slot.axis, features))
        _set_head_count_(block, arch, counts["head"], head_size)
    if shape.get("first_block_norm"):
        if not arch.first_block_norm:
            raise ValueError(f"cannot restore the structured shape: {arch.name} has no first_block_norm")
        first = next(iter(blocks.values()))
        weight = next(first.parameters())
        norm = nn.LayerNorm(
            getattr(config, arch.hidden_field),
            eps=config.norm_eps,  # ModernBERT's, the one family with a first_block_norm
            bias=config.norm_bias,
            device=weight.device,
            dtype=weight.dtype,
        )
        first.set_submodule(arch.first_block_norm, norm.train(first.training))
