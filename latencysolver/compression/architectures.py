"""Where each supported encoder family keeps its blocks, and which Linear inside a block does what.

Every compression pass reaches a model's internals through ``encoder_family(model, pass_name)``, so
supporting a new family is one more ``EncoderFamily`` below rather than a special case in every pass.  The
four families differ in three ways:

- the path to the blocks: ``bert.encoder.layer``, ``roberta.encoder.layer``, ``distilbert.transformer.layer``,
  ``albert.encoder.albert_layer_groups.G.albert_layers.I``;
- the names of a block's attention projections and FFN Linears (``attention.self.query`` vs ``attention.q_lin``);
- ALBERT shares weights: ``num_hidden_groups`` groups of ``inner_group_num`` layers hold all the weights, and
  the encoder runs them ``config.num_hidden_layers`` times in a row.  So for ALBERT "a layer" in layer skipping
  is one *repetition* (skipping means fewer repetitions of the same weights), while pruning and factorization
  act on the shared weights, once.

A model whose ``config.model_type`` is not listed still gets the first family whose layout it has (ELECTRA,
XLM-RoBERTa and MiniLM checkpoints are laid out like BERT), so the passes keep working on BERT look-alikes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from torch import nn

from latencysolver.errors import CompressionRefused


@dataclass(frozen=True)
class EncoderFamily:
    """One encoder family's layout.  Paths are dotted attribute paths; ``*`` in ``blocks`` stands for an index."""

    name: str  # as written in messages: "RoBERTa"
    model_types: tuple[str, ...]  # ``config.model_type`` values that are this family
    layers: str  # under the base model: the ModuleList the encoder loops over
    blocks: str  # under the base model: every block that holds weights
    query: str  # under a block, the attention projections ...
    key: str
    value: str
    attention_output: str
    ffn_in: str  # ... and the feed-forward network: hidden -> intermediate -> hidden
    ffn_out: str
    heads_field: str  # config field with the number of attention heads
    hidden_field: str  # config field with the model width
    ffn_field: str  # config field with the FFN width (neurons per block)
    shared: bool = False  # ALBERT: blocks are reused across ``config.num_hidden_layers`` repetitions

    def head_size(self, config) -> int:
        # Every family sizes a head as width // heads; pruning removes heads but never changes their size.
        return getattr(config, self.hidden_field) // getattr(config, self.heads_field)


BERT = EncoderFamily(
    name="BERT",
    model_types=("bert",),
    layers="encoder.layer",
    blocks="encoder.layer.*",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    heads_field="num_attention_heads",
    hidden_field="hidden_size",
    ffn_field="intermediate_size",
)
ROBERTA = replace(BERT, name="RoBERTa", model_types=("roberta",))
ALBERT = EncoderFamily(
    name="ALBERT",
    model_types=("albert",),
    layers="encoder.albert_layer_groups",
    blocks="encoder.albert_layer_groups.*.albert_layers.*",
    query="attention.query",
    key="attention.key",
    value="attention.value",
    attention_output="attention.dense",
    ffn_in="ffn",
    ffn_out="ffn_output",
    heads_field="num_attention_heads",
    hidden_field="hidden_size",
    ffn_field="intermediate_size",
    shared=True,
)
DISTILBERT = EncoderFamily(
    name="DistilBERT",
    model_types=("distilbert",),
    layers="transformer.layer",
    blocks="transformer.layer.*",
    query="attention.q_lin",
    key="attention.k_lin",
    value="attention.v_lin",
    attention_output="attention.out_lin",
    ffn_in="ffn.lin1",
    ffn_out="ffn.lin2",
    heads_field="n_heads",
    hidden_field="dim",
    ffn_field="hidden_dim",
)
ENCODER_FAMILIES: tuple[EncoderFamily, ...] = (BERT, ROBERTA, ALBERT, DISTILBERT)


def base_model(model: nn.Module) -> tuple[nn.Module, str]:
    """The bare encoder under a task head (``model.bert``, ...) and its qualified name ("" for a bare model)."""
    base = getattr(model, "base_model", model)
    if base is model:
        return model, ""
    return base, next(name for name, module in model.named_modules() if module is base)


def _blocks_under(base: nn.Module, arch: EncoderFamily) -> list[tuple[str, nn.Module]]:
    pattern = re.compile(re.escape(arch.blocks).replace(r"\*", r"\d+"))
    return [(name, module) for name, module in base.named_modules() if pattern.fullmatch(name)]


def _has_layout(base: nn.Module, arch: EncoderFamily) -> bool:
    try:
        layers = base.get_submodule(arch.layers)
        blocks = _blocks_under(base, arch)
        if not isinstance(layers, nn.ModuleList) or not blocks:
            return False
        for path in (arch.query, arch.key, arch.value, arch.attention_output, arch.ffn_in, arch.ffn_out):
            blocks[0][1].get_submodule(path)
    except AttributeError:
        return False
    return True


def encoder_family(model: nn.Module, pass_name: str) -> EncoderFamily:
    """The family of ``model``; ``CompressionRefused`` naming ``pass_name`` if it is none of the supported ones."""
    base, _ = base_model(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    by_type = [arch for arch in ENCODER_FAMILIES if model_type in arch.model_types]
    for arch in by_type or ENCODER_FAMILIES:
        if _has_layout(base, arch):
            return arch
    supported = ", ".join(arch.name for arch in ENCODER_FAMILIES)
    raise CompressionRefused(
        f"{pass_name}: unsupported architecture {type(model).__name__} (model_type={model_type!r}); "
        f"supported are {supported} and models laid out like them"
    )


def encoder_blocks(model: nn.Module, pass_name: str) -> list[tuple[str, nn.Module]]:
    """Every weight-holding encoder block with its qualified name, in order; ALBERT's shared blocks appear once."""
    arch = encoder_family(model, pass_name)
    base, prefix = base_model(model)
    return [(f"{prefix}.{name}" if prefix else name, block) for name, block in _blocks_under(base, arch)]
