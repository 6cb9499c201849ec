"""Every compression pass on each supported family, on tiny random models built here (no download).

Each model: hidden 32, 2 layers, 4 heads of size 8, FFN 64, vocabulary 100.  ALBERT holds one shared block that
runs twice, so it has 1 weight-holding block where the others have 2, but all of them run 2 blocks per forward.
ELECTRA has 16-wide embeddings (so its ``embeddings_project`` runs), XLM-RoBERTa pads with id 1.  DeBERTa-v2 is
configured like DeBERTa-v3 (relative attention in log buckets, ``share_att_key``, c2p and p2c position terms, no
absolute positions); ``share_att_key=False`` gives it position projections of its own.  ModernBERT: layer 0
global, layer 1 local attention with a 4-token window (shorter than the 10-token batch), rotary positions, fused
[Q; K; V] and a gated FFN, with biases on (real checkpoints have none) so that slicing them is tested too.
Both are initialised with std 0.2 instead of 0.02: at 0.02 attention is nearly uniform, so a sub-network that
split its heads wrongly moved DeBERTa's logits by 1e-7 only; at 0.2 by 0.3.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    CamembertConfig,
    CamembertForSequenceClassification,
    DebertaConfig,
    DebertaForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from latencysolver.compression import (
    CompressionRefused,
    LowRankLinear,
    count_quantized_linears,
    drop_layers_,
    enable_layerdrop_,
    encoder_blocks,
    encoder_family,
    encoder_layers,
    encoder_linears,
    factorize_,
    magnitude_prune_,
    quantize,
    resolve_rank,
    structured_prune_,
    weight_sparsity,
)
from latencysolver.compression.elastic import elastic_shape
from latencysolver.errors import ModelError

FAMILIES = ("BERT", "RoBERTa", "ALBERT", "DistilBERT", "ELECTRA", "XLM-RoBERTa", "DeBERTa-v2", "ModernBERT")
BERT_LIKE = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    num_labels=2,
)
DEBERTA_V3_LIKE = dict(
    relative_attention=True,
    position_buckets=16,
    max_relative_positions=-1,
    share_att_key=True,
    pos_att_type=["p2c", "c2p"],
    position_biased_input=False,
    norm_rel_ebd="layer_norm",
    type_vocab_size=0,
    initializer_range=0.2,  # see the module docstring
)
MODERNBERT = dict(
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    cls_token_id=1,
    sep_token_id=2,
    global_attn_every_n_layers=2,  # layer 0 global, layer 1 local
    local_attention=4,
    attention_bias=True,
    mlp_bias=True,
    attn_implementation="sdpa",  # what from_config picks when a saved student is rebuilt; no flash-attn
    initializer_range=0.2,
)
LINEARS_PER_BLOCK = {"ModernBERT": 4}  # fused Wqkv, Wo, gated Wi, Wo; every other family 6


def tiny_model(family: str, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    if family == "BERT":
        model = BertForSequenceClassification(BertConfig(**{**BERT_LIKE, **overrides}))
    elif family == "RoBERTa":
        model = RobertaForSequenceClassification(RobertaConfig(**{**BERT_LIKE, "pad_token_id": 1, **overrides}))
    elif family == "ALBERT":
        model = AlbertForSequenceClassification(AlbertConfig(**{**BERT_LIKE, "embedding_size": 16, **overrides}))
    elif family == "DistilBERT":
        config = DistilBertConfig(
            vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64, **overrides
        )
        model = DistilBertForSequenceClassification(config)
    elif family == "ELECTRA":
        model = ElectraForSequenceClassification(ElectraConfig(**{**BERT_LIKE, "embedding_size": 16, **overrides}))
    elif family == "XLM-RoBERTa":
        config = XLMRobertaConfig(**{**BERT_LIKE, "pad_token_id": 1, **overrides})
        model = XLMRobertaForSequenceClassification(config)
    elif family == "DeBERTa-v2":
        config = DebertaV2Config(**{**BERT_LIKE, **DEBERTA_V3_LIKE, **overrides})
        model = DebertaV2ForSequenceClassification(config)
    elif family == "ModernBERT":
        model = ModernBertForSequenceClassification(ModernBertConfig(**{**BERT_LIKE, **MODERNBERT, **overrides}))
    else:
        raise ValueError(family)
    return model.eval()


def tiny_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, 100, (2, 10), generator=generator)  # above RoBERTa's pad id 1
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def blocks_run(model: nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """How many block applications one forward pass makes (ALBERT's shared block counts once per repetition)."""
    calls = []
    hooks = [block.register_forward_hook(lambda *_: calls.append(1)) for _, block in encoder_blocks(model, "test")]
    try:
        model(**batch)
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)


# --- finding the parts ----------------------------------------------------------------------------------


def test_each_family_is_recognised_with_its_blocks_and_linears(family):
    model = tiny_model(family)
    assert encoder_family(model, "test").name == family
    blocks = encoder_blocks(model, "test")
    assert len(blocks) == (1 if family == "ALBERT" else 2)
    linears = encoder_linears(model)
    assert len(linears) == LINEARS_PER_BLOCK.get(family, 6) * len(blocks)
    modules = dict(model.named_modules())
    assert all(modules[name] is linear for name, linear in linears)
    assert all(name.startswith(blocks[0][0].rpartition(".")[0]) for name, _ in linears)
    assert len(encoder_layers(model)) == 2  # blocks *run*: ALBERT's shared block twice


def test_a_bert_look_alike_gets_the_bert_layout():
    # CamemBERT is not listed by model_type, but is laid out like RoBERTa, so like BERT, the first family.
    model = CamembertForSequenceClassification(CamembertConfig(**BERT_LIKE, pad_token_id=1))
    assert encoder_family(model, "test").name == "BERT"
    assert factorize_(model, 4) and logits(model, tiny_batch()).shape == (2, 2)


def test_the_new_families_are_found_by_model_type():
    model_types = {"ELECTRA": "electra", "XLM-RoBERTa": "xlm-roberta", "DeBERTa-v2": "deberta-v2"}
    for family, model_type in {**model_types, "ModernBERT": "modernbert"}.items():
        model = tiny_model(family)
        assert model.config.model_type == model_type
        assert encoder_family(model, "test").name == family
    # ELECTRA's embeddings are 16 wide: the projection to the 32-wide encoder is outside the blocks.
    electra = tiny_model("ELECTRA")
    assert electra.electra.embeddings_project.in_features == 16
    assert "electra.embeddings_project" not in dict(encoder_linears(electra))


def test_deberta_v1_is_refused_by_every_pass_naming_it():
    # DeBERTa (v1) fuses Q, K, V into one in_proj interleaved per head, with its query and value biases as
    # parameters outside any Linear; it is none of the families, and no pass guesses.
    model = DebertaForSequenceClassification(DebertaConfig(**BERT_LIKE)).eval()
    for pass_name, run in [
        ("structured pruning", lambda: structured_prune_(model, 0.5)),
        ("layer skip", lambda: drop_layers_(model, [0])),
        ("low-rank factorization", lambda: factorize_(model, 4)),
        ("magnitude pruning", lambda: magnitude_prune_(model, 0.5)),
        ("elastic student", lambda: elastic_shape(model)),
    ]:
        with pytest.raises(CompressionRefused, match=rf"^{pass_name}: unsupported architecture DebertaFor.*'deberta'"):
            run()


def test_an_unknown_model_is_refused_naming_the_pass():
    with pytest.raises(CompressionRefused, match=r"^magnitude pruning: unsupported architecture Sequential") as info:
        magnitude_prune_(nn.Sequential(nn.Linear(2, 2)), 0.5)
    assert isinstance(info.value, ModelError) and isinstance(info.value, ValueError)
    with pytest.raises(CompressionRefused, match=r"^low-rank factorization: .*Sequential"):
        factorize_(nn.Sequential(nn.Linear(2, 2)), 1)


# --- layer skipping -------------------------------------------------------------------------------------


def test_drop_layers_runs_fewer_blocks(family, batch):
    model = tiny_model(family)
    weights = {name: p.clone() for name, p in model.named_parameters()}
    assert blocks_run(model, batch) == 2
    drop_layers_(model, [1])
    assert blocks_run(model, batch) == 1
    assert logits(model, batch).shape == (2, 2)
    assert model.config.num_hidden_layers == 1
    assert len(encoder_layers(model)) == 1
    if family == "ALBERT":  # fewer repetitions of the same shared weights: nothing removed
        assert weights.keys() == dict(model.named_parameters()).keys()
    else:
        assert len(dict(model.named_parameters())) < len(weights)
    # The config alone rebuilds the shrunken depth.
    assert len(encoder_layers(type(model)(model.config))) == 1


def test_layerdrop_skips_at_random_in_training_only(family, batch):
    model = tiny_model(family).train()
    handle = enable_layerdrop_(model, p=0.5, seed=0)
    runs = [blocks_run(model, batch) for _ in range(20)]
    assert set(runs) == {1, 2}  # p = 0.5 over 2 blocks, at least one always runs
    assert model.config.num_hidden_layers == 2 and len(encoder_layers(model)) == 2  # restored after each pass
    model.eval()
    assert blocks_run(model, batch) == 2
    handle.remove()
    model.train()
    assert [blocks_run(model, batch) for _ in range(3)] == [2, 2, 2]


def test_albert_with_several_groups_refuses_layer_skip():
    model = tiny_model("ALBERT", num_hidden_layers=4, num_hidden_groups=2)
    with pytest.raises(CompressionRefused, match=r"^layer skip: ALBERT with num_hidden_groups=2"):
        drop_layers_(model, [0, 1])
    with pytest.raises(CompressionRefused, match=r"^LayerDrop: ALBERT with num_hidden_groups=2"):
        enable_layerdrop_(model, 0.5, seed=0)
    assert model.config.num_hidden_layers == 4
    # The passes that act on weights still work: both groups' blocks are pruned.
    magnitude_prune_(model, 0.5)
    assert len(encoder_linears(model)) == 12 and weight_sparsity(model) == pytest.approx(0.5, abs=0.01)


# --- weight passes --------------------------------------------------------------------------------------


def test_magnitude_prune_sparsifies_every_encoder_linear(family, batch):
    model = tiny_model(family)
    magnitude_prune_(model, 0.5)
    assert weight_sparsity(model) == pytest.approx(0.5, abs=0.01)
    assert all(hasattr(linear, "weight_mask") for _, linear in encoder_linears(model))
    assert logits(model, batch).shape == (2, 2)


def test_low_rank_absolute_and_fraction(family, batch):
    model = tiny_model(family)
    names = [name for name, _ in encoder_linears(model)]
    assert factorize_(model, 4) == {name: 4 for name in names}
    assert logits(model, batch).shape == (2, 2)

    model = tiny_model(family)
    # A quarter of full rank: 32 x 32 projections and 32 <-> 64 FFN layers both have full rank 32, so 8.
    ranks = factorize_(model, 0.25)
    assert ranks == {name: 8 for name in names}
    modules = dict(model.named_modules())
    assert all(isinstance(modules[name], LowRankLinear) and modules[name].rank == 8 for name in names)
    assert logits(model, batch).shape == (2, 2)


def test_low_rank_leaves_layers_dense_where_the_rank_saves_no_flops(family):
    model = tiny_model(family)
    # Half of full rank is 16: a 32 x 32 projection would cost 16 * 64 = 1024 = its dense cost, so it stays;
    # an FFN layer costs 16 * 96 = 1536 < 2048 factorized, so it is replaced.
    shapes = {name: (linear.in_features, linear.out_features) for name, linear in encoder_linears(model)}
    ranks = factorize_(model, 0.5)
    modules = dict(model.named_modules())
    for name, shape in shapes.items():
        if shape == (32, 32):
            assert type(modules[name]) is nn.Linear and name not in ranks
        else:
            assert isinstance(modules[name], LowRankLinear) and ranks[name] == modules[name].rank == 16


def test_int8_quantizes_every_linear(family, batch):
    model = tiny_model(family)
    quantized = quantize(model, "int8")
    assert count_quantized_linears(quantized) == sum(isinstance(m, nn.Linear) for m in model.modules())
    assert logits(quantized, batch).shape == (2, 2)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_casts_everything_and_stays_close(family, batch, dtype):
    model = tiny_model(family)
    half = quantize(model, dtype)
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert {p.dtype for p in half.parameters()} == {expected}
    got, reference = logits(half, batch), logits(model, batch)
    assert got.dtype == expected and got.shape == (2, 2)
    # measured: at most 2% of the largest logit (ModernBERT in bf16: 0.031 of 1.52)
    assert (got.float() - reference).abs().max() < 0.05 * reference.abs().max() + 1e-3


def test_resolve_rank():
    assert resolve_rank(4, 32, 64) == 4
    assert resolve_rank(100, 32, 64) == 32  # capped at full rank
    assert resolve_rank(0.25, 768, 3072) == 192
    assert resolve_rank(0.01, 32, 32) == 1  # at least 1
    for bad in (0, -2, 0.0, 1.0, 1.5, True, "4"):  # 1.0: full rank, refused as by the search space
        with pytest.raises(ValueError, match=repr(bad).replace(".", r"\.")):
            resolve_rank(bad, 32, 32)


# --- what is new in the newer families ------------------------------------------------------------------


def test_modernbert_layer_skip_keeps_each_layers_attention_kind(batch, tmp_path):
    # Layer 0 is global, layer 1 local (window 4 < 10 tokens).  Keeping layer 1 alone must keep it local, in the
    # model and in the saved config, and keep its attention LayerNorm (a fresh block 0 has none).
    model = tiny_model("ModernBERT")
    layer_1 = model.model.layers[1]
    assert model.config.layer_types == ["full_attention", "sliding_attention"]
    drop_layers_(model, [1])
    assert list(model.model.layers) == [layer_1] and layer_1.attention_type == "sliding_attention"
    assert model.config.layer_types == ["sliding_attention"] and model.config.num_hidden_layers == 1
    assert isinstance(layer_1.attn_norm, nn.LayerNorm)
    model.config.save_pretrained(tmp_path)  # validates len(layer_types) == num_hidden_layers
    rebuilt = type(model)(type(model.config).from_pretrained(tmp_path))
    assert rebuilt.model.layers[0].attention_type == "sliding_attention"
    assert logits(model, batch).shape == (2, 2)


def test_deberta_layer_skip_keeps_the_relative_position_embeddings(batch):
    model = tiny_model("DeBERTa-v2")
    rel = model.deberta.encoder.rel_embeddings
    drop_layers_(model, [1])
    assert model.deberta.encoder.rel_embeddings is rel and len(model.deberta.encoder.layer) == 1
    assert logits(model, batch).shape == (2, 2)
