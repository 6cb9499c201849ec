"""An elastic encoder: one set of weights whose width prefixes and layer subsets are all usable sub-networks.

Three pieces, after DynaBERT (Hou et al. 2020, "DynaBERT: Dynamic BERT with Adaptive Width and Depth") and the
weight-sharing NAS for BERT of Klein et al. (TMLR 2024, whittle-org/plm_pruning):

- ``rewire_``: in every block, the attention heads and the FFN neurons are reordered by importance, most important
  first (the rows of Q, K, V and the columns of the attention output per head; the rows of the FFN's first Linear
  and the columns of its second per neuron).  A permutation changes nothing the model computes, only which
  heads and neurons a *prefix* keeps: after it, "the first h heads" is the best h-head sub-network by that score.
- ``SubNetwork``: a width prefix (heads and neurons per block) and the kept layers.  Depth follows the
  deterministic layer-skip rule (``kept_layer_indices``), so a skip probability means the same layers in both
  trial modes.
- ``use_subnetwork``: runs the elastic model *as* a sub-network without copying it.  The Linears that heads and
  neurons own (six per block; four in ModernBERT, whose Q, K, V and gated FFN input are fused, where a prefix is
  taken in each stacked part; eight in DeBERTa with ``share_att_key`` False) are swapped for views that multiply
  by the first rows or columns of the shared weights (gradients reach the shared tensors), the attention is told
  its head count where it reshapes by it (DeBERTa), and the encoder's layer list is swapped for the kept layers,
  as LayerDrop does.  A narrow sub-network therefore costs what a narrow model costs.  ``slice_model`` makes the
  same sub-network a model of its own: the structurally pruned shape (``structured_shape``) with the kept
  layers, which every later pass, ``save_student`` and ``load_student`` already handle.

The prefix arithmetic is that of structured pruning: a prune ratio r keeps ``H - min(round(r*H), H-1)`` heads and
``F - min(round(r*F), F-1)`` neurons, so a recipe names the same shapes in both trial modes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from latencysolver.compression.architectures import Slot, encoder_blocks, encoder_family
from latencysolver.compression.layer_skip import (
    _check_repeatable,
    _layers_owner,
    drop_layers_,
    encoder_layers,
    kept_layer_indices,
)
from latencysolver.compression.structured import (
    IMPORTANCE_KINDS,
    _block_parts,
    _importance_stats,
    _set_head_count_,
    _shrink_block_,
    _unit_index,
    _unit_scores,
    _widths,
)

PASS = "elastic student"


@dataclass(frozen=True)
class ElasticShape:
    """The full widths and depth of the elastic model: every sub-network is a prefix of these."""

    heads: int  # per block
    head_size: int
    neurons: int  # per block
    layers: int  # blocks the encoder runs (ALBERT: repetitions)


@dataclass(frozen=True)
class SubNetwork:
    """The first ``heads`` heads and ``neurons`` FFN neurons of every block, in the layers ``layers`` (increasing)."""

    heads: int
    neurons: int
    layers: tuple[int, ...]

    def describe(self) -> str:
        return f"{len(self.layers)} layers {list(self.layers)}, {self.heads} heads, {self.neurons} neurons"


def elastic_shape(model: nn.Module) -> ElasticShape:
    """The widths and depth of ``model``; refuses (naming the family) a model whose blocks differ in width or whose
    depth cannot be cut (ALBERT with several groups)."""
    arch = encoder_family(model, PASS)
    _, owner, _ = _layers_owner(model, PASS)
    _check_repeatable(arch, owner, PASS)
    head_size = arch.head_size(model.config)
    widths = {_widths(_block_parts(name, block, arch), head_size) for name, block in encoder_blocks(model, PASS)}
    if len(widths) != 1:
        raise ValueError(
            f"{PASS}: {arch.name} blocks of different widths {sorted(widths)}: start from an unpruned model"
        )
    heads, neurons = widths.pop()
    return ElasticShape(heads=heads, head_size=head_size, neurons=neurons, layers=len(encoder_layers(model)))


def subnetwork(shape: ElasticShape, prune_ratio: float, skip_prob: float) -> SubNetwork:
    """The sub-network a recipe's ``prune_ratio`` (structured) and ``skip_prob`` (deterministic) name."""
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"{PASS}: prune ratio must be in [0, 1), but got {prune_ratio!r}")
    heads = shape.heads - min(round(prune_ratio * shape.heads), shape.heads - 1)
    neurons = shape.neurons - min(round(prune_ratio * shape.neurons), shape.neurons - 1)
    layers = tuple(kept_layer_indices(shape.layers, skip_prob, "deterministic", 0))
    return SubNetwork(heads=heads, neurons=neurons, layers=layers)


def full_network(shape: ElasticShape) -> SubNetwork:
    return SubNetwork(heads=shape.heads, neurons=shape.neurons, layers=tuple(range(shape.layers)))


def _check(shape: ElasticShape, sub: SubNetwork) -> None:
    if not (1 <= sub.heads <= shape.heads and 1 <= sub.neurons <= shape.neurons):
        raise ValueError(
            f"{PASS}: {sub.heads} heads and {sub.neurons} neurons do not fit blocks of {shape.heads} heads and "
            f"{shape.neurons} neurons"
        )
    if (
        not sub.layers
        or list(sub.layers) != sorted(set(sub.layers))
        or not 0 <= sub.layers[0] <= sub.layers[-1] < shape.layers
    ):
        raise ValueError(f"{PASS}: layers {list(sub.layers)} are not increasing indices into {shape.layers} layers")


# --------------------------------------------------------------------------------------------------- rewiring


def _permute(linear: nn.Linear, order: torch.Tensor, dim: int) -> None:
    """Reorder ``linear``'s output rows (``dim=0``, bias too) or input columns (``dim=1``) in place."""
    with torch.no_grad():
        linear.weight.copy_(linear.weight.index_select(dim, order))
        if dim == 0 and linear.bias is not None:
            linear.bias.copy_(linear.bias[order])


def rewire_(
    model: nn.Module, importance: str = "magnitude", batches: Iterable[dict[str, torch.Tensor]] | None = None
) -> dict[str, dict[str, list[int]]]:
    """Reorder every block's heads and FFN neurons, most important first; the model computes the same function.

    ``importance`` is scored as structured pruning scores it ("magnitude", or "gradient": first-order Taylor over
    ``batches`` with labels).  Returns, per block, the old index of each new head and neuron position."""
    arch = encoder_family(model, PASS)
    shape = elastic_shape(model)
    if importance not in IMPORTANCE_KINDS or (importance == "gradient" and batches is None):
        raise ValueError(f"{PASS}: importance must be 'magnitude', or 'gradient' with batches, but got {importance!r}")
    blocks = [(name, _block_parts(name, block, arch)) for name, block in encoder_blocks(model, PASS)]
    stats = _importance_stats(model, [linear for _, parts in blocks for _, linear in parts], importance, batches)
    orders: dict[str, dict[str, list[int]]] = {}
    for name, parts in blocks:
        head_scores, neuron_scores = _unit_scores(parts, stats, shape.head_size)
        order = {
            "head": torch.argsort(head_scores, descending=True, stable=True),
            "neuron": torch.argsort(neuron_scores, descending=True, stable=True),
        }
        totals = {"head": shape.heads, "neuron": shape.neurons}
        for slot, linear in parts:
            _permute(linear, _unit_index(order[slot.unit], slot, shape.head_size, totals[slot.unit]), slot.axis)
        orders[name] = {"heads": order["head"].tolist(), "neurons": order["neuron"].tolist()}
    return orders


# ----------------------------------------------------------------------------------------- running a sub-network


class _Prefix(nn.Module):
    """A view of a shared Linear that uses only the first ``count`` output rows (``axis=0``) or input columns
    (``axis=1``) of each of its ``groups`` stacked parts (ModernBERT's [Q; K; V] and [input; gate])."""

    def __init__(self, linear: nn.Linear, axis: int, count: int, groups: int = 1) -> None:
        super().__init__()
        self.linear = linear
        self.axis, self.count, self.groups = axis, count, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight: torch.Tensor = self.linear.weight
        bias: torch.Tensor | None = self.linear.bias
        if self.axis == 1:
            return F.linear(x, weight[:, : self.count], bias)
        weight = weight.view(self.groups, -1, weight.shape[1])[:, : self.count].reshape(-1, weight.shape[1])
        if bias is not None:
            bias = bias.view(self.groups, -1)[:, : self.count].reshape(-1)
        return F.linear(x, weight, bias)


def _view(slot: Slot, linear: nn.Linear, shape: ElasticShape, sub: SubNetwork) -> _Prefix:
    count = sub.heads * shape.head_size if slot.unit == "head" else sub.neurons
    return _Prefix(linear, slot.axis, count, slot.groups)


@contextmanager
def use_subnetwork(model: nn.Module, sub: SubNetwork) -> Iterator[nn.Module]:
    """Inside the block, ``model`` runs as ``sub`` (training or not); its own modules are put back on exit."""
    shape = elastic_shape(model)
    _check(shape, sub)
    arch, owner, list_name = _layers_owner(model, PASS)
    blocks = [(block, _block_parts(name, block, arch)) for name, block in encoder_blocks(model, PASS)]
    full_layers = owner.config.num_hidden_layers if arch.shared else getattr(owner, list_name)
    try:
        if (sub.heads, sub.neurons) != (shape.heads, shape.neurons):
            for block, parts in blocks:
                for slot, linear in parts:
                    block.set_submodule(slot.path, _view(slot, linear, shape, sub))
                _set_head_count_(block, arch, sub.heads, shape.head_size)
        if len(sub.layers) < shape.layers:
            if arch.shared:
                owner.config.num_hidden_layers = len(sub.layers)
            else:
                setattr(owner, list_name, nn.ModuleList(full_layers[i] for i in sub.layers))
        yield model
    finally:
        for block, parts in blocks:
            for slot, linear in parts:
                block.set_submodule(slot.path, linear)
            _set_head_count_(block, arch, shape.heads, shape.head_size)
        if arch.shared:
            owner.config.num_hidden_layers = full_layers
        else:
            setattr(owner, list_name, full_layers)


def slice_model(model: nn.Module, sub: SubNetwork) -> nn.Module:
    """``sub`` as a model of its own (a copy): narrower dense Linears and only the kept layers, in eval mode."""
    shape = elastic_shape(model)
    _check(shape, sub)
    student = copy.deepcopy(model)
    arch = encoder_family(student, PASS)
    if (sub.heads, sub.neurons) != (shape.heads, shape.neurons):
        heads, neurons = torch.arange(sub.heads), torch.arange(sub.neurons)
        for name, block in encoder_blocks(student, PASS):
            _shrink_block_(block, arch, _block_parts(name, block, arch), shape.head_size, heads, neurons)
    if len(sub.layers) < shape.layers:
        drop_layers_(student, list(sub.layers))
    return student.eval()


def sample_subnetwork(
    shape: ElasticShape, smallest: SubNetwork, generator: torch.Generator, depth: bool = True
) -> SubNetwork:
    """A random sub-network between ``smallest`` and the full one: each width uniform over its prefixes, the depth
    (when ``depth``) uniform over the layer counts, kept by the deterministic rule."""

    def between(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    heads = between(smallest.heads, shape.heads)
    neurons = between(smallest.neurons, shape.neurons)
    count = between(len(smallest.layers), shape.layers) if depth else shape.layers
    layers = (
        tuple(kept_layer_indices(shape.layers, 1.0 - count / shape.layers, "deterministic", 0))
        if count < shape.layers
        else tuple(range(shape.layers))
    )
    return SubNetwork(heads=heads, neurons=neurons, layers=layers)
