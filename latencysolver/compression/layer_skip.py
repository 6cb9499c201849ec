"""Layer skipping: LayerDrop while distilling, and a fixed subset of encoder layers at inference.

LayerDrop (Fan et al. 2019, "Reducing Transformer Depth on Demand with Structured Dropout") drops whole
transformer blocks at random during training, so that the network learns not to rely on any single block.
At inference a model trained that way tolerates running only ``k = round((1 - p) * L)`` of its ``L`` blocks;
which ones is either a fixed evenly spaced rule ("every other layer" for p = 0.5) or a seeded random choice.

Nothing here depends on a layer's forward signature: LayerDrop swaps the encoder's ModuleList for a shorter
one around each forward pass, and ``drop_layers_`` shortens it for good.  Both work for any encoder that
loops ``for layer in self.layer``, which BERT, RoBERTa, MiniLM and DistilBERT all do.
"""

from __future__ import annotations

import torch
from torch import nn

SKIP_MODES: tuple[str, ...] = ("deterministic", "stochastic")

# Where Hugging Face encoder classifiers keep their blocks: ``model.base_model`` is the bare encoder model
# (``model.bert``, ``model.roberta``, ...), and the blocks live in one ModuleList under it.
_LAYER_PATHS: tuple[tuple[str, str], ...] = (
    ("encoder", "layer"),  # BERT, RoBERTa, MiniLM, ELECTRA, ...
    ("transformer", "layer"),  # DistilBERT
)


def _layers_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """The module that holds the blocks' ModuleList, and the attribute name of that list."""
    base = getattr(model, "base_model", model)
    for owner_name, list_name in _LAYER_PATHS:
        owner = getattr(base, owner_name, None)
        if isinstance(owner, nn.Module) and isinstance(getattr(owner, list_name, None), nn.ModuleList):
            return owner, list_name
    paths = ", ".join(f"base_model.{o}.{n}" for o, n in _LAYER_PATHS)
    raise ValueError(f"cannot find the encoder layers of a {type(model).__name__}: none of {paths} is a ModuleList")


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of transformer blocks of a Hugging Face encoder classifier."""
    owner, list_name = _layers_owner(model)
    return getattr(owner, list_name)


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
    so gradients reach the real weights), and a forward hook puts the original list back afterwards.  At
    least one block always runs: with none, the encoder would return its input unchanged and the student
    would learn nothing from that step.
    """
    _check_skip_prob(p)
    owner, list_name = _layers_owner(model)
    generator = torch.Generator().manual_seed(seed)
    # The list in place when a pass starts (read then, not now, so a later drop_layers_ is respected).
    full: list[nn.ModuleList] = []

    def sample_layers(module: nn.Module, args: tuple) -> None:
        if not module.training:
            return
        layers = getattr(module, list_name)
        keep = torch.rand(len(layers), generator=generator) >= p
        if not keep.any():
            keep[torch.randint(len(layers), (1,), generator=generator)] = True
        full.append(layers)
        # Assigning a Module to an attribute re-registers it in ``_modules``, which is what ``self.layer`` reads.
        setattr(module, list_name, nn.ModuleList(layer for layer, k in zip(layers, keep.tolist()) if k))

    def restore_layers(module: nn.Module, args: tuple, output: object) -> None:
        if full:
            setattr(module, list_name, full.pop())

    # always_call: put the full list back even when the forward pass raises, so a failed step cannot
    # leave the model with a random subset of its blocks.
    hooks = [
        owner.register_forward_pre_hook(sample_layers),
        owner.register_forward_hook(restore_layers, always_call=True),
    ]
    return LayerDropHandle(hooks)


def drop_layers_(model: nn.Module, keep: list[int]) -> None:
    """Keep only the blocks at indices ``keep`` (in that order) and record the new depth in the config."""
    owner, list_name = _layers_owner(model)
    layers = getattr(owner, list_name)
    keep = list(keep)
    if not keep:
        raise ValueError("keep must name at least one layer, but got []")
    bad = [i for i in keep if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(layers)]
    if bad:
        raise ValueError(f"layer indices must be integers in [0, {len(layers)}), but got {bad} in keep={keep}")
    repeated = sorted({i for i in keep if keep.count(i) > 1})
    if repeated:
        raise ValueError(f"layer indices must be unique, but {repeated} repeat in keep={keep}")

    setattr(owner, list_name, nn.ModuleList(layers[i] for i in keep))
    # BERT-like configs call the depth num_hidden_layers, DistilBERT's n_layers (and its Transformer keeps
    # a copy); set every one that exists so a saved config reloads with the right number of blocks.
    config = getattr(model, "config", None)
    for field in ("num_hidden_layers", "n_layers"):
        if config is not None and hasattr(config, field):
            setattr(config, field, len(keep))
    if hasattr(owner, "n_layers"):
        owner.n_layers = len(keep)
