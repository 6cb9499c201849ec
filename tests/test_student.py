"""The compression pipeline as a trial runs it: compress → (distill) → finalize → quantize, save → load."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from latencysolver.compression import LowRankLinear, count_quantized_linears, encoder_layers, quantize
from latencysolver.config.recipe import Recipe
from latencysolver.models.student import compress, load_student, save_student
from tests.test_architectures import FAMILIES


@pytest.fixture()
def teacher():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    return BertForSequenceClassification(config).eval()


def inputs():
    torch.manual_seed(1)
    return {"input_ids": torch.randint(0, 100, (3, 10)), "attention_mask": torch.ones(3, 10, dtype=torch.long)}


def test_compress_leaves_the_teacher_alone(teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    compress(teacher, Recipe(prune_ratio=0.5, skip_prob=0.5, rank=4)).finalize()
    assert len(encoder_layers(teacher)) == 4
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_deterministic_skip_removes_layers_before_distilling(teacher):
    student = compress(teacher, Recipe(skip_prob=0.5, skip_mode="deterministic"))
    assert student.kept_layers == (0, 2)
    assert len(encoder_layers(student.model)) == 2  # already in its inference shape while training
    assert student.model.config.num_hidden_layers == 2
    model = student.finalize()
    assert len(encoder_layers(model)) == 2
    assert model(**inputs()).logits.shape == (3, 2)


def test_stochastic_skip_trains_all_layers_with_layerdrop_then_keeps_a_seeded_subset(teacher):
    student = compress(teacher, Recipe(skip_prob=0.5, skip_mode="stochastic", seed=3))
    layers = encoder_layers(student.model)
    assert len(layers) == 4
    ran = []
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, layer in enumerate(layers)]
    student.model.train()
    for _ in range(20):
        student.model(**inputs())
    assert 20 <= len(ran) < 80  # LayerDrop skipped some layers in training passes
    for h in hooks:
        h.remove()
    model = student.finalize()
    assert len(encoder_layers(model)) == 2
    again = compress(teacher, Recipe(skip_prob=0.5, skip_mode="stochastic", seed=3))
    assert again.kept_layers == student.kept_layers  # the seed fixes the choice


def test_prune_then_low_rank_then_int8(teacher):
    student = compress(teacher, Recipe(prune_ratio=0.5, rank=4, quant_dtype="int8"))
    model = student.finalize()
    low_rank = [m for m in model.modules() if isinstance(m, LowRankLinear)]
    # hidden 32 / FFN 64: rank 4 saves FLOPs for all 6 Linears of each of the 4 layers
    assert len(low_rank) == 24 and all(m.rank == 4 for m in low_rank)
    assert "weight_orig" not in str(list(model.state_dict()))
    q = quantize(model, "int8")
    assert count_quantized_linears(q) == sum(isinstance(m, torch.nn.Linear) for m in model.modules())


def test_save_and_load_give_the_same_logits(teacher, tmp_path):
    recipe = Recipe(prune_ratio=0.3, skip_prob=0.25, rank=8, quant_dtype="int8", skip_mode="stochastic", seed=5)
    student = compress(teacher, recipe)
    model = student.finalize()
    expected = quantize(model, recipe.quant_dtype)(**inputs()).logits
    save_student(model, recipe, student.kept_layers, tmp_path, extra={"max_length": 64})
    loaded = load_student(tmp_path)
    assert loaded.recipe == recipe
    assert loaded.info["kept_layers"] == list(student.kept_layers)
    assert torch.equal(loaded.model(**inputs()).logits, expected)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(prune_ratio=0.5, prune_kind="structured", skip_prob=0.5, rank=0.5, quant_dtype="int8"),
        Recipe(prune_ratio=0.5, skip_prob=0.5, skip_mode="stochastic", rank=4),
    ],
    ids=["structured+skip+rank-fraction+int8", "magnitude+layerdrop+rank"],
)
def test_every_family_goes_through_compress_save_load(family, recipe, tmp_path):
    """The trial pipeline on each architecture: the saved student comes back with the same logits."""
    from tests.test_architectures import tiny_model

    teacher = tiny_model(family).eval()
    student = compress(teacher, recipe)
    model = student.finalize()
    assert len(encoder_layers(model)) == 1  # 2 layers (ALBERT: repetitions), skip 0.5
    save_student(model, recipe, student.kept_layers, tmp_path)
    loaded = load_student(tmp_path)
    x = {"input_ids": torch.randint(3, 100, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with torch.no_grad():
        expected = quantize(model, recipe.quant_dtype)(**x).logits
        assert torch.allclose(loaded.model(**x).logits, expected, atol=1e-5)
    assert len(encoder_layers(loaded.model)) == 1


def test_a_modernbert_student_without_its_first_layer_saves_and_loads(tmp_path):
    """Seed 1 keeps layer 1 (local attention, with an attention LayerNorm that a rebuilt block 0 lacks)."""
    from tests.test_architectures import tiny_model

    teacher = tiny_model("ModernBERT")
    recipe = Recipe(prune_ratio=0.5, prune_kind="structured", skip_prob=0.5, skip_mode="stochastic", seed=1, rank=4)
    student = compress(teacher, recipe)
    model = student.finalize()
    assert student.kept_layers == (1,) and model.config.layer_types == ["sliding_attention"]
    save_student(model, recipe, student.kept_layers, tmp_path)
    assert (tmp_path / "student.json").read_text().count('"first_block_norm": true') == 1
    loaded = load_student(tmp_path).model
    assert isinstance(loaded.model.layers[0].attn_norm, torch.nn.LayerNorm)
    x = {"input_ids": torch.randint(3, 100, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with torch.no_grad():
        assert torch.equal(loaded(**x).logits, model(**x).logits)
