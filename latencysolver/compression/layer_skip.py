"""Layer skipping: LayerDrop while distilling, and a fixed subset of encoder layers at inference.

LayerDrop (Fan et al. 2019, "Reducing Transformer Depth on Demand with Structured Dropout") drops whole
transformer blocks at random during training, so that the network learns not to rely on any single block.
At inference a model trained that way tolerates running only ``k = round((1 - p) * L)`` of its ``L`` blocks;
which ones is either a fixed evenly spaced rule ("every other layer" for p = 0.5) or a seeded random choice.

Nothing here depends on a layer's forward signature: LayerDrop swaps the encoder's ModuleList for a shorter
one around each forward pass, and ``drop_layers_`` shortens it for good.  That works for every encoder that
loops over its ModuleList: BERT, RoBERTa, MiniLM, DistilBERT, ELECTRA, XLM-RoBERTa, DeBERTa-v2/v3 (its
relative-position embeddings belong to the encoder and serve every layer, so they stay) and ModernBERT.  A
ModernBERT layer carries its own attention kind (global, or local with a sliding window) and keeps it; its
config's per-layer list ``layer_types`` is cut to the kept layers so that the saved config rebuilds them, and a
kept layer other than 0 keeps its attention LayerNorm (``structured_shape`` records that for reloading).

ALBERT is different: one shared block (group) runs ``config.num_hidden_layers`` times, so a "layer" is a
repetition and skipping means fewer repetitions of the same weights.  With a single group every repetition
is the same computation, so only *how many* are kept matters, not which indices; both passes here change
the repetition count.  ALBERTs with several groups are refused: the encoder spreads its repetitions evenly
over the groups, so fewer repetitions would silently reassign which group runs where.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latencysolver.compression.architectures import EncoderFamily, base_model, encoder_family
from latencysolver.config.knobs import SKIP_MODES
from latencysolver.errors import CompressionRefused


# The owner is a transformers encoder module typed Any: what it holds differs by family (``config``,
# ``albert_layer_groups``, ``n_layers``), and nn.Module's __getattr__ would type each of those Tensor | Module.
def _layers_owner(model: nn.Module, pass_name: str) -> tuple[EncoderFamily, Any, str]:
    """The family, the module that holds the blocks' ModuleList, and the attribute name of that list."""
    arch = encoder_family(model, pass_name)
    owner_path, _, list_name = arch.layers.rpartition(".")
    return arch, base_model(model)[0].get_submodule(owner_path), list_name


def _albert_group(i: int, depth: int, groups: int) -> int:
    # The group that runs repetition i, the same arithmetic as AlbertTransformer.forward.
    return int(i / (depth / groups))


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a Hugging Face encoder classifier, one entry per block the encoder runs.

    For every family but ALBERT this is the model's own ModuleList.  For ALBERT it is a new list with the
    shared group once per repetition (``len`` is the depth), not a list the model holds.
    """
    arch, owner, list_name = _layers_owner(model, "layer skip")
    layers = getattr(owner, list_name)
    if not arch.shared:
        return layers
    depth = owner.config.num_hidden_layers
    return nn.ModuleList(layers[_albert_group(i, depth, len(layers))] for i in range(depth))


def _check_repeatable(arch: EncoderFamily, owner: Any, pass_name: str) -> None:
    groups = len(owner.albert_layer_groups) if arch.shared else 1
    if groups > 1:
        raise CompressionRefused(
            f"{pass_name}: {arch.name} with num_hidden_groups={groups} cannot skip layers: fewer repetitions "
            "would reassign which shared group runs where; only single-group ALBERT models are supported"
        )


def _set_depth_(model: nn.Module, owner: Any, depth: int) -> None:
    # BERT-like configs call the depth num_hidden_layers, DistilBERT's n_layers (and its Transformer keeps
    # a copy); set every one that exists so a saved config reloads with the right number of blocks.  ALBERT's
    # encoder reads the depth from its own reference to the config, normally the model's config object.
    for config in (getattr(model, "config", None), getattr(owner, "config", None)):
        for field in ("num_hidden_layers", "n_layers"):
            if config is not None and hasattr(config, field):
                setattr(config, field, depth)
    if hasattr(owner, "n_layers"):
        owner.n_layers = depth


def _check_skip_prob(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"skip probability must be in [0, 1), but got {p!r}")


def kept_layer_indices(num_layers: int, skip_prob: float, mode: str, seed: int) -> list[int]:
    """Which of ``num_layers`` blocks a student keeps at inference, in increasing order.

    k = max(1, round((1 - p) * L)) blocks are kept.  "deterministic" spreads them evenly from the bottom,
    ``i * L // k`` for i < k: L=6, k=3 gives [0, 2, 4]; L=12, k=4 gives [0, 3, 6, 9].  "stochastic" draws k
    distinct blocks with a generator seeded by ``seed``, so a trial and its export pick the same ones.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, but got {num_layers!r}")
    _check_skip_prob(skip_prob)
    k = max(1, round((1.0 - skip_prob) * num_layers))
    if mode == "deterministic":
        return [i * num_layers // k for i in range(k)]
    if mode == "stochastic":
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(num_layers, generator=generator)[:k]
        return sorted(chosen.tolist())
    raise ValueError(f"skip mode must be one of {SKIP_MODES}, but got {mode!r}")


class LayerDropHandle:
    """What ``enable_layerdrop_`` returns: ``.remove()`` turns LayerDrop off again."""

    def __init__(self, hooks: list[torch.utils.hooks.RemovableHandle]) -> None:
        self._hooks = hooks

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def enable_layerdrop_(model: nn.Module, p: float, seed: int) -> LayerDropHandle:
    """Drop each encoder block with probability ``p`` in every training forward pass; eval runs all blocks.

    A forward pre-hook on the encoder replaces its ModuleList by a sampled sub-list (the same block objects,
    so gradients reach the real weights), and a forward hook puts the original list back afterwards.  For
    ALBERT the hooks lower and restore the repetition count instead.  At least one block always runs: with
    none, the encoder would return its input unchanged and the student would learn nothing from that step.
    """
    _check_skip_prob(p)
    arch, owner, list_name = _layers_owner(model, "LayerDrop")
    _check_repeatable(arch, owner, "LayerDrop")
    generator = torch.Generator().manual_seed(seed)
    # What was in place when a pass started (read then, not now, so a later drop_layers_ is respected):
    # the full ModuleList, or for ALBERT the full repetition count.
    full: list[nn.ModuleList | int] = []

    def sample_layers(module: Any, args: tuple) -> None:  # module: the owner
        if not module.training:
            return
        current = module.config.num_hidden_layers if arch.shared else getattr(module, list_name)
        depth = current if arch.shared else len(current)
        keep = torch.rand(depth, generator=generator) >= p
        if not keep.any():
            keep[torch.randint(depth, (1,), generator=generator)] = True
        full.append(current)
        if arch.shared:
            module.config.num_hidden_layers = int(keep.sum())
        else:
            # Assigning a Module to an attribute re-registers it in ``_modules``, which is what ``self.layer`` reads.
            kept = (layer for layer, k in zip(current, keep.tolist(), strict=True) if k)
            setattr(module, list_name, nn.ModuleList(kept))

    def restore_layers(module: Any, args: tuple, output: object) -> None:
        if not full:
            return
        if arch.shared:
            module.config.num_hidden_layers = full.pop()
        else:
            setattr(module, list_name, full.pop())

    # always_call: put the full list back even when the forward pass raises, so a failed step cannot
    # leave the model with a random subset of its blocks.
    hooks = [
        owner.register_forward_pre_hook(sample_layers),
        owner.register_forward_hook(restore_layers, always_call=True),
    ]
    return LayerDropHandle(hooks)


def drop_layers_(model: nn.Module, keep: list[int]) -> None:
    """Keep only the blocks at indices ``keep`` (in that order) and record the new depth in the config.

    For ALBERT, ``keep`` names repetitions: ``len(keep)`` of them stay, all running the shared weights.
    """
    arch, owner, list_name = _layers_owner(model, "layer skip")
    _check_repeatable(arch, owner, "layer skip")
    layers = getattr(owner, list_name)
    depth = owner.config.num_hidden_layers if arch.shared else len(layers)
    keep = list(keep)
    if not keep:
        raise ValueError("keep must name at least one layer, but got []")
    bad = [i for i in keep if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < depth]
    if bad:
        raise ValueError(f"layer indices must be integers in [0, {depth}), but got {bad} in keep={keep}")
    repeated = sorted({i for i in keep if keep.count(i) > 1})
    if repeated:
        raise ValueError(f"layer indices must be unique, but {repeated} repeat in keep={keep}")

    if not arch.shared:
        setattr(owner, list_name, nn.ModuleList(layers[i] for i in keep))
    config = getattr(model, "config", None)
    for field in arch.per_layer_fields:  # ModernBERT's layer_types: the config validates its length
        if config is not None and isinstance(getattr(config, field, None), list):
            setattr(config, field, [getattr(config, field)[i] for i in keep])
    _set_depth_(model, owner, len(keep))
