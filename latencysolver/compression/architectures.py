"""Where each supported encoder family keeps its blocks, and which Linear inside a block does what.

Every compression pass reaches a model's internals through ``encoder_family(model, pass_name)``, so
supporting a new family is one more ``EncoderFamily`` below rather than a special case in every pass.  The
families differ in these ways:

- the path to the blocks: ``bert.encoder.layer``, ``roberta.encoder.layer``, ``distilbert.transformer.layer``,
  ``albert.encoder.albert_layer_groups.G.albert_layers.I``, ``deberta.encoder.layer``, ``model.layers``;
- the names of a block's attention projections and FFN Linears (``attention.self.query`` vs ``attention.q_lin``);
- ALBERT shares weights: ``num_hidden_groups`` groups of ``inner_group_num`` layers hold all the weights, and
  the encoder runs them ``config.num_hidden_layers`` times in a row.  So for ALBERT "a layer" in layer skipping
  is one *repetition* (skipping means fewer repetitions of the same weights), while pruning and factorization
  act on the shared weights, once;
- DeBERTa-v2/v3 projects the relative-position embeddings with per-head Linears of its own when
  ``share_att_key`` is False (``pos_key_proj``, ``pos_query_proj``): ``head_extras``, pruned with the heads;
- ModernBERT fuses: one ``Wqkv`` whose rows are [Q; K; V], and a gated FFN whose ``Wi`` rows are [input; gate].
  ``slots`` says, per Linear, which rows or columns belong to which head or neuron.  Its block 0 has no
  attention LayerNorm (``first_block_norm``), and its config lists each layer's attention kind
  (``per_layer_fields``), which layer skipping keeps in step.

ELECTRA and XLM-RoBERTa are laid out like BERT and listed by name.  A model whose ``config.model_type`` is not
listed still gets the first family whose layout it has (CamemBERT and MiniLM checkpoints are laid out like BERT),
so the passes keep working on BERT look-alikes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from torch import nn

from latencysolver.errors import CompressionRefused


@dataclass(frozen=True)
class Slot:
    """One Linear of a block as structured pruning sees it: which of its rows or columns a head or neuron owns.

    Unit u (a head of ``head_size`` rows, or one neuron) owns rows (``axis=0``) or columns (``axis=1``)
    ``u*size ... (u+1)*size - 1`` of each of ``groups`` equal stacked parts: 3 for ModernBERT's fused [Q; K; V],
    2 for its gated [input; gate] FFN, 1 everywhere else.
    """

    path: str  # under the block
    unit: str  # "head" or "neuron"
    axis: int  # 0: the unit owns output rows (and their bias entries); 1: input columns
    groups: int = 1


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
    fused_qkv: bool = False  # query, key and value name one Linear whose rows are [Q; K; V]
    gated_ffn: bool = False  # ffn_in's rows are [input; gate]: neuron i owns rows i and F + i
    head_extras: tuple[str, ...] = ()  # more per-head Linears (by output rows), where a block has them
    first_block_norm: str = ""  # a LayerNorm the family builds as nn.Identity in block 0 only
    per_layer_fields: tuple[str, ...] = ()  # config lists with one entry per layer

    def head_size(self, config) -> int:
        # Every family sizes a head as width // heads; pruning removes heads but never changes their size.
        return getattr(config, self.hidden_field) // getattr(config, self.heads_field)

    def groups(self, role: str) -> int:
        """How many equal parts the rows of a role's Linear stack (3 for a fused query, 2 for a gated ffn_in)."""
        if role in ("query", "key", "value") and self.fused_qkv:
            return 3
        return 2 if role == "ffn_in" and self.gated_ffn else 1

    def slots(self, block: nn.Module) -> tuple[Slot, ...]:
        """Each distinct Linear of ``block`` that heads and neurons are cut from, once (a fused one once)."""
        roles = ("query",) if self.fused_qkv else ("query", "key", "value")
        heads = [Slot(getattr(self, role), "head", 0, self.groups(role)) for role in roles]
        heads += [Slot(path, "head", 0) for path in self.head_extras if _has(block, path)]
        return (
            *heads,
            Slot(self.attention_output, "head", 1),
            Slot(self.ffn_in, "neuron", 0, self.groups("ffn_in")),
            Slot(self.ffn_out, "neuron", 1),
        )


def _has(block: nn.Module, path: str) -> bool:
    try:
        block.get_submodule(path)
    except AttributeError:
        return False
    return True


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
ELECTRA = replace(BERT, name="ELECTRA", model_types=("electra",))
XLM_ROBERTA = replace(BERT, name="XLM-RoBERTa", model_types=("xlm-roberta",))
DEBERTA_V2 = replace(
    BERT,
    name="DeBERTa-v2",  # DeBERTa-v3 checkpoints are model_type "deberta-v2" too
    model_types=("deberta-v2",),
    query="attention.self.query_proj",
    key="attention.self.key_proj",
    value="attention.self.value_proj",
    # share_att_key=False: the relative-position embeddings get per-head projections of their own
    head_extras=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
)
MODERNBERT = EncoderFamily(
    name="ModernBERT",
    model_types=("modernbert",),
    layers="layers",
    blocks="layers.*",
    query="attn.Wqkv",
    key="attn.Wqkv",
    value="attn.Wqkv",
    attention_output="attn.Wo",
    ffn_in="mlp.Wi",
    ffn_out="mlp.Wo",
    heads_field="num_attention_heads",
    hidden_field="hidden_size",
    ffn_field="intermediate_size",
    fused_qkv=True,
    gated_ffn=True,
    first_block_norm="attn_norm",
    per_layer_fields=("layer_types",),  # "full_attention" / "sliding_attention" (local), one per layer
)
ENCODER_FAMILIES: tuple[EncoderFamily, ...] = (
    BERT,
    ROBERTA,
    ALBERT,
    DISTILBERT,
    ELECTRA,
    XLM_ROBERTA,
    DEBERTA_V2,
    MODERNBERT,
)


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
