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
- ``use_subnetwork``: runs the elastic model *as* a sub-network without copying it.  The six Linears of each block
  are swapped for views that multiply by the first rows or columns of the shared weights (gradients reach the
  shared tensors), and the encoder's layer list is swapped for the kept layers, as LayerDrop does.  A narrow
  sub-network therefore costs what a narrow model costs.  ``slice_model`` makes the same sub-network a model of
  its own: the structurally pruned shape (``structured_shape``) with the kept layers, which every later pass,
  ``save_student`` and ``load_student`` already handle.

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

from latencysolver.compression.architectures import EncoderFamily, encoder_blocks, encoder_family
from latencysolver.compression.layer_skip import (
    _check_repeatable,
    _layers_owner,
    drop_layers_,
    encoder_layers,
    kept_layer_indices,
)
from latencysolver.compression.structured import (
    _ATTENTION_IN,
    _block_linears,
    _check_dense,
    _head_scores,
    _keep,
    _magnitude_stats,
    _set_head_count_,
    _taylor_stats,
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
    widths = set()
    for name, block in encoder_blocks(model, PASS):
        linears = _check_dense(name, arch, _block_linears(block, arch))
        widths.add((linears["query"].out_features // head_size, linears["ffn_in"].out_features))
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
    blocks = [
        (name, block, _check_dense(name, arch, _block_linears(block, arch)))
        for name, block in encoder_blocks(model, PASS)
    ]
    every_linear = [linear for _, _, linears in blocks for linear in linears.values()]
    if importance == "magnitude":
        stats = _magnitude_stats(every_linear)
    elif importance == "gradient" and batches is not None:
        stats = _taylor_stats(model, every_linear, batches)
    else:
        raise ValueError(f"{PASS}: importance must be 'magnitude', or 'gradient' with batches, but got {importance!r}")
    orders: dict[str, dict[str, list[int]]] = {}
    for name, _, linears in blocks:
        block_stats = {role: stats[linear] for role, linear in linears.items()}
        head_order = torch.argsort(_head_scores(block_stats, shape.head_size), descending=True, stable=True)
        neuron_order = torch.argsort(
            block_stats["ffn_in"].sum(1) + block_stats["ffn_out"].sum(0), descending=True, stable=True
        )
        rows = (head_order[:, None] * shape.head_size + torch.arange(shape.head_size)).flatten()
        for role in _ATTENTION_IN:
            _permute(linears[role], rows, dim=0)
        _permute(linears["attention_output"], rows, dim=1)
        _permute(linears["ffn_in"], neuron_order, dim=0)
        _permute(linears["ffn_out"], neuron_order, dim=1)
        orders[name] = {"heads": head_order.tolist(), "neurons": neuron_order.tolist()}
    return orders


# ----------------------------------------------------------------------------------------- running a sub-network


class _Prefix(nn.Module):
    """A view of a shared Linear that uses only its first ``rows`` output rows or first ``columns`` input columns."""

    def __init__(self, linear: nn.Linear, rows: int | None = None, columns: int | None = None) -> None:
        super().__init__()
        self.linear = linear
        self.rows, self.columns = rows, columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight: torch.Tensor = self.linear.weight
        bias: torch.Tensor | None = self.linear.bias
        if self.rows is not None:
            weight = weight[: self.rows]
            bias = bias[: self.rows] if bias is not None else None
        if self.columns is not None:
            weight = weight[:, : self.columns]
        return F.linear(x, weight, bias)


def _views(arch: EncoderFamily, linears: dict[str, nn.Linear], width: int, neurons: int) -> dict[str, nn.Module]:
    return {
        **{role: _Prefix(linears[role], rows=width) for role in _ATTENTION_IN},
        "attention_output": _Prefix(linears["attention_output"], columns=width),
        "ffn_in": _Prefix(linears["ffn_in"], rows=neurons),
        "ffn_out": _Prefix(linears["ffn_out"], columns=neurons),
    }


@contextmanager
def use_subnetwork(model: nn.Module, sub: SubNetwork) -> Iterator[nn.Module]:
    """Inside the block, ``model`` runs as ``sub`` (training or not); its own modules are put back on exit."""
    shape = elastic_shape(model)
    _check(shape, sub)
    arch, owner, list_name = _layers_owner(model, PASS)
    blocks = [
        (block, _check_dense(name, arch, _block_linears(block, arch))) for name, block in encoder_blocks(model, PASS)
    ]
    full_layers = owner.config.num_hidden_layers if arch.shared else getattr(owner, list_name)
    width = sub.heads * shape.head_size
    try:
        if (sub.heads, sub.neurons) != (shape.heads, shape.neurons):
            for block, linears in blocks:
                for role, view in _views(arch, linears, width, sub.neurons).items():
                    block.set_submodule(getattr(arch, role), view)
        if len(sub.layers) < shape.layers:
            if arch.shared:
                owner.config.num_hidden_layers = len(sub.layers)
            else:
                setattr(owner, list_name, nn.ModuleList(full_layers[i] for i in sub.layers))
        yield model
    finally:
        for block, linears in blocks:
            for role, linear in linears.items():
                block.set_submodule(getattr(arch, role), linear)
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
    width = sub.heads * shape.head_size
    if (sub.heads, sub.neurons) != (shape.heads, shape.neurons):
        rows, neurons = torch.arange(width), torch.arange(sub.neurons)
        for _, block in encoder_blocks(student, PASS):
            linears = _check_dense("", arch, _block_linears(block, arch))
            for role in _ATTENTION_IN:
                block.set_submodule(getattr(arch, role), _keep(linears[role], rows, dim=0))
            block.set_submodule(arch.attention_output, _keep(linears["attention_output"], rows, dim=1))
            block.set_submodule(arch.ffn_in, _keep(linears["ffn_in"], neurons, dim=0))
            block.set_submodule(arch.ffn_out, _keep(linears["ffn_out"], neurons, dim=1))
            _set_head_count_(block, arch, sub.heads, shape.head_size)
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
