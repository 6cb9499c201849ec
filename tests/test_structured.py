"""Structured pruning (whole heads and FFN neurons) on tiny models of each family, and its save/restore/load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from latencysolver.compression import (
    LowRankLinear,
    drop_layers_,
    encoder_blocks,
    encoder_family,
    encoder_linears,
    factorize_,
    magnitude_prune_,
    restore_low_rank_structure_,
    restore_structured_shape_,
    structured_prune_,
    structured_shape,
)
from tests.test_architectures import logits, tiny_model

HEADS, HEAD_SIZE, NEURONS = 4, 8, 64
ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")


def parts(model: nn.Module) -> list[tuple[nn.Module, dict[str, nn.Module]]]:
    """Per weight-holding block: the attention module and its Linears by role (ModernBERT: Q, K, V are one)."""
    arch = encoder_family(model, "test")
    return [
        (block.get_submodule(arch.query.rpartition(".")[0]), {r: block.get_submodule(getattr(arch, r)) for r in ROLES})
        for _, block in encoder_blocks(model, "test")
    ]


def rows(model: nn.Module, role: str, units: list[int]) -> list[int]:
    """The rows (columns for attention_output) of a role's Linear that heads or neurons own, in every family.

    ModernBERT's fused Wqkv holds [Q; K; V], so the value rows of head h are in its last third; its gated Wi
    holds [input; gate], so neuron i owns row i and row F + i.
    """
    arch = encoder_family(model, "test")
    per_head = role in ("query", "key", "value", "attention_output")
    size, width = (HEAD_SIZE, HEADS * HEAD_SIZE) if per_head else (1, NEURONS)
    offsets = [0]
    if arch.fused_qkv and role in ("query", "key", "value"):
        offsets = [("query", "key", "value").index(role) * width]
    if arch.gated_ffn and role == "ffn_in":
        offsets = [0, NEURONS]
    return [offset + unit * size + i for offset in offsets for unit in units for i in range(size)]


def head_count(attention: nn.Module) -> int:
    return getattr(attention, "num_attention_heads", getattr(attention, "n_heads", None))


@pytest.mark.parametrize(("ratio", "heads_left", "neurons_left"), [(0.5, 2, 32), (0.25, 3, 48), (0.9, 1, 6)])
def test_ratio_removes_the_stated_heads_and_neurons(family, batch, ratio, heads_left, neurons_left):
    # round(r * 4) heads and round(r * 64) neurons go; at 0.9 that is round(3.6) = 4 heads, capped to keep 1,
    # and round(57.6) = 58 neurons.
    model = tiny_model(family)
    report = structured_prune_(model, ratio)
    assert report.heads_kept == (heads_left,) * len(report.blocks)
    assert report.neurons_kept == (neurons_left,) * len(report.blocks)
    assert all(len(removed) == HEADS - heads_left for removed in report.heads_removed)
    arch = encoder_family(model, "test")
    qkv, gate = arch.groups("query"), arch.groups("ffn_in")  # ModernBERT: [Q; K; V] and [input; gate] rows
    for attention, linears in parts(model):
        width = heads_left * HEAD_SIZE
        assert [linears[r].weight.shape for r in ("query", "key", "value")] == [(qkv * width, 32)] * 3
        assert linears["query"].bias.shape == (qkv * width,)
        assert linears["attention_output"].weight.shape == (32, width)
        assert linears["ffn_in"].weight.shape == (gate * neurons_left, 32)
        assert linears["ffn_in"].bias.shape == (gate * neurons_left,)
        assert linears["ffn_out"].weight.shape == (32, neurons_left) and linears["ffn_out"].bias.shape == (32,)
        # ModernBERT's attention keeps no head count: it reshapes to (3, -1, head_size), following Wqkv.
        assert head_count(attention) == (None if family == "ModernBERT" else heads_left)
    # The config keeps the unpruned widths (it cannot say "2 heads of size 8 in a 32-wide model").
    assert encoder_family(model, "test").head_size(model.config) == HEAD_SIZE
    assert logits(model, batch).shape == (2, 2)
    json.dumps(report.to_dict())


def test_ratio_zero_changes_nothing(family):
    model = tiny_model(family)
    before = [linears for _, linears in parts(model)]
    report = structured_prune_(model, 0.0)
    assert report.heads_removed == ((),) * len(before) and report.neurons_kept == (NEURONS,) * len(before)
    after = [linears for _, linears in parts(model)]
    assert all(a[r] is b[r] for a, b in zip(after, before, strict=True) for r in a)
    assert structured_shape(model) == {"blocks": {}}


def test_pruning_equals_silencing_the_removed_heads_and_neurons(family, batch):
    check_pruning_equals_silencing(family, batch)


def check_pruning_equals_silencing(family: str, batch: dict[str, torch.Tensor], **overrides) -> None:
    # A head whose value rows are zero adds only its (constant) value bias, which then goes through its columns
    # of the output dense; zero those columns too and it contributes nothing.  Likewise a neuron with a zero
    # output column.  So the pruned model must compute what the full one computes with those silenced.
    model = tiny_model(family, **overrides)
    silenced = tiny_model(family, **overrides)
    report = structured_prune_(model, 0.5)
    with torch.no_grad():
        for (_, linears), removed in zip(parts(silenced), report.heads_removed, strict=True):
            linears["value"].weight[rows(silenced, "value", list(removed))] = 0
            linears["attention_output"].weight[:, rows(silenced, "attention_output", list(removed))] = 0
        for (_, pruned), (_, full) in zip(parts(model), parts(silenced), strict=True):
            # The kept neurons' input rows are unchanged, so match them to find the removed ones (the first
            # NEURONS rows of the FFN input: ModernBERT's gate rows follow them).
            inputs = full["ffn_in"].weight[:NEURONS]
            kept = [int((inputs == row).all(1).nonzero()) for row in pruned["ffn_in"].weight[: report.neurons_kept[0]]]
            gone = sorted(set(range(NEURONS)) - set(kept))
            assert len(gone) == NEURONS - report.neurons_kept[0]
            full["ffn_out"].weight[:, gone] = 0
    assert torch.allclose(logits(model, batch), logits(silenced, batch), atol=1e-5)


@pytest.mark.parametrize("importance", ["magnitude", "gradient"])
def test_the_least_important_head_and_neurons_go_first(family, batch, importance):
    # Kill head 2 and neurons 5 and 9 of every block: all their weights zero, so both scores are 0 for them.
    model = tiny_model(family).train()
    with torch.no_grad():
        for _, linears in parts(model):
            for role in ("query", "key", "value"):
                linears[role].weight[rows(model, role, [2])] = 0
            linears["attention_output"].weight[:, rows(model, "attention_output", [2])] = 0
            linears["ffn_in"].weight[rows(model, "ffn_in", [5, 9])] = 0
            linears["ffn_out"].weight[:, [5, 9]] = 0
    batches = [{**batch, "labels": torch.tensor([0, 1])}] * 2
    # Ratio 0.25: 1 of 4 heads and 16 of 64 neurons go, the dead ones among them.
    report = structured_prune_(model, 0.25, importance, batches=batches if importance == "gradient" else None)
    assert report.heads_removed == ((2,),) * len(report.blocks)
    assert all(not (linears["ffn_in"].weight == 0).all(1).any() for _, linears in parts(model))
    assert model.training  # the gradient pass scores in eval mode and puts the mode back
    assert logits(model, batch).shape == (2, 2)


def test_bad_arguments_are_named(family, batch):
    model = tiny_model(family)
    with pytest.raises(ValueError, match="1.0"):
        structured_prune_(model, 1.0)
    with pytest.raises(ValueError, match="'fisher'"):
        structured_prune_(model, 0.5, "fisher")
    with pytest.raises(ValueError, match="batches=None"):
        structured_prune_(model, 0.5, "gradient")
    with pytest.raises(ValueError, match="no loss"):
        structured_prune_(model, 0.5, "gradient", batches=[batch])
    with pytest.raises(ValueError, match="at least one batch"):
        structured_prune_(model, 0.5, "gradient", batches=[])
    width = 32 * encoder_family(model, "test").groups("query")
    assert all(linears["query"].out_features == width for _, linears in parts(model))  # nothing pruned


def test_refuses_an_already_factorized_model():
    model = tiny_model("BERT")
    factorize_(model, 4)
    with pytest.raises(ValueError, match=r"attention\.self\.query is a LowRankLinear"):
        structured_prune_(model, 0.5)


def test_an_unstructured_mask_is_baked_into_the_shrunk_linears(batch):
    model = tiny_model("BERT")
    magnitude_prune_(model, 0.5)
    structured_prune_(model, 0.0)  # removes nothing, so the masked Linears stay as they are
    assert all(hasattr(linears["ffn_in"], "weight_mask") for _, linears in parts(model))
    structured_prune_(model, 0.5)
    for _, linears in parts(model):
        assert type(linears["ffn_in"]) is nn.Linear and not hasattr(linears["ffn_in"], "weight_mask")
        assert (linears["ffn_in"].weight == 0).float().mean() > 0.3  # the zeros came along
    assert logits(model, batch).shape == (2, 2)


# --- on disk ----------------------------------------------------------------------------------------------


def save(model: nn.Module, folder) -> None:
    """What ``save_student`` writes: safetensors, config.json, and the shapes in a JSON file."""
    save_model(model, str(folder / "model.safetensors"))
    model.config.save_pretrained(folder)
    low_rank = {name: m.rank for name, m in model.named_modules() if isinstance(m, LowRankLinear)}
    (folder / "student.json").write_text(json.dumps({"structured": structured_shape(model), "low_rank": low_rank}))


def load(folder) -> nn.Module:
    info = json.loads((folder / "student.json").read_text())
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
    restore_structured_shape_(model, info["structured"])
    restore_low_rank_structure_(model, info["low_rank"])  # after: its skeletons take the shrunk widths
    load_model(model, str(folder / "model.safetensors"), strict=True)
    return model.eval()


def test_save_restore_load_reproduces_the_logits(family, batch, tmp_path):
    model = tiny_model(family)
    report = structured_prune_(model, 0.5)
    assert structured_shape(model)["blocks"] == {name: {"heads": 2, "neurons": 32} for name in report.blocks}
    save(model, tmp_path)
    fresh = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tmp_path))
    with pytest.raises(RuntimeError):
        load_model(fresh, str(tmp_path / "model.safetensors"), strict=True)
    assert torch.equal(logits(load(tmp_path), batch), logits(model, batch))


def test_the_report_dict_also_restores(batch, tmp_path):
    model = tiny_model("DistilBERT")
    report = structured_prune_(model, 0.25)
    save(model, tmp_path)
    fresh = tiny_model("DistilBERT", seed=1)
    restore_structured_shape_(fresh, json.loads(json.dumps(report.to_dict())))
    load_model(fresh, str(tmp_path / "model.safetensors"), strict=True)
    assert torch.equal(logits(fresh, batch), logits(model, batch))


# ModernBERT: block 1 (local attention, with an attention LayerNorm) becomes block 0, which a model built from the
# config makes without that norm; structured_shape records it and the restore puts it back.
@pytest.mark.parametrize("family", ["BERT", "ALBERT", "DeBERTa-v2", "ModernBERT"])
def test_round_trip_with_layer_skip_and_low_rank(family, batch, tmp_path):
    model = tiny_model(family)
    structured_prune_(model, 0.5)
    drop_layers_(model, [1])  # after pruning, as a stochastic-skip student does: block 1 becomes block 0
    factorize_(model, 4)
    assert any(isinstance(m, LowRankLinear) for m in model.modules())
    assert structured_shape(model).get("first_block_norm", False) == (family == "ModernBERT")
    save(model, tmp_path)
    assert torch.equal(logits(load(tmp_path), batch), logits(model, batch))


def test_restore_names_what_is_wrong():
    model = tiny_model("BERT")
    with pytest.raises(ValueError, match="'bert.encoder.layer.7'"):
        restore_structured_shape_(model, {"blocks": {"bert.encoder.layer.7": {"heads": 2, "neurons": 8}}})
    with pytest.raises(ValueError, match="heads must be a positive integer, but got 0"):
        restore_structured_shape_(model, {"blocks": {"bert.encoder.layer.0": {"heads": 0, "neurons": 8}}})
    with pytest.raises(ValueError, match="expected"):
        restore_structured_shape_(model, {"layers": {}})


def test_head_ratio_zero_prunes_the_ffn_only():
    model = tiny_model("BERT")
    report = structured_prune_(model, 0.5, head_ratio=0.0)
    assert report.heads_kept == (HEADS, HEADS) and report.neurons_kept == (NEURONS // 2, NEURONS // 2)
    layer = model.base_model.encoder.layer[0]
    assert layer.attention.self.query.out_features == HEADS * HEAD_SIZE
    assert layer.intermediate.dense.out_features == NEURONS // 2
    with pytest.raises(ValueError, match="head_ratio must be in"):
        structured_prune_(tiny_model("BERT"), 0.5, head_ratio=1.0)


# --- DeBERTa with position projections of its own ---------------------------------------------------------


def test_deberta_unshared_position_projections_lose_the_removed_heads(batch, tmp_path):
    # share_att_key=False: pos_key_proj (c2p) and pos_query_proj (p2c) project the relative-position embeddings
    # per head, and the attention reshapes them by num_attention_heads, so they must shrink with Q, K and V.
    model = tiny_model("DeBERTa-v2", share_att_key=False)
    structured_prune_(model, 0.5)
    for _, block in encoder_blocks(model, "test"):
        attention = block.attention.self
        assert attention.num_attention_heads == 2 and attention.all_head_size == 16
        for projection in (attention.pos_key_proj, attention.pos_query_proj):
            assert projection.weight.shape == (16, 32) and projection.bias.shape == (16,)
    assert len(encoder_linears(model)) == 16  # 8 Linears per block
    save(model, tmp_path)
    assert torch.equal(logits(load(tmp_path), batch), logits(model, batch))
    check_pruning_equals_silencing("DeBERTa-v2", batch, share_att_key=False)


def test_a_missing_first_block_norm_is_refused_by_family():
    with pytest.raises(ValueError, match="BERT has no first_block_norm"):
        restore_structured_shape_(tiny_model("BERT"), {"blocks": {}, "first_block_norm": True})
