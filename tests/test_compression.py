"""Compression passes on a tiny random BERT built here (4 layers, hidden 32), so the tests need no download."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from latencysolver.compression import (
    LowRankLinear,
    count_quantized_linears,
    drop_layers_,
    effective_weight,
    enable_layerdrop_,
    encoder_layers,
    encoder_linears,
    factorize_,
    kept_layer_indices,
    magnitude_prune_,
    make_pruning_permanent_,
    quantize,
    restore_low_rank_structure_,
    saves_flops,
    weight_sparsity,
)

NUM_LAYERS = 4
# Per block: query, key, value, attention output (32x32), intermediate (32->64), output (64->32).
LINEARS_PER_BLOCK = 6


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def model() -> BertForSequenceClassification:
    return tiny_bert()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 100, (2, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0  # the second row is padded, so masking is exercised too
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def count_layer_calls(model: nn.Module) -> tuple[list[int], list]:
    """Attach a counting hook to every encoder block; returns the per-block counters and the hook handles."""
    calls = [0] * len(encoder_layers(model))

    def counter(i: int):
        def hook(module, args, output):
            calls[i] += 1

        return hook

    handles = [layer.register_forward_hook(counter(i)) for i, layer in enumerate(encoder_layers(model))]
    return calls, handles


# --- layer skipping -------------------------------------------------------------------------------------


def test_encoder_layers_finds_bert_and_distilbert_blocks(model):
    assert encoder_layers(model) is model.bert.encoder.layer
    torch.manual_seed(0)
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=100, dim=32, n_layers=3, n_heads=2, hidden_dim=64, max_position_embeddings=64)
    )
    assert encoder_layers(distil) is distil.distilbert.transformer.layer
    with pytest.raises(ValueError, match="Sequential"):
        encoder_layers(nn.Sequential(nn.Linear(2, 2)))


def test_kept_layer_indices_deterministic_rule():
    assert kept_layer_indices(6, 0.5, "deterministic", seed=0) == [0, 2, 4]
    assert kept_layer_indices(12, 2 / 3, "deterministic", seed=0) == [0, 3, 6, 9]
    assert kept_layer_indices(6, 0.0, "deterministic", seed=0) == list(range(6))
    assert kept_layer_indices(6, 0.99, "deterministic", seed=0) == [0]
    assert len(kept_layer_indices(6, 0.99, "stochastic", seed=3)) == 1


def test_kept_layer_indices_stochastic_is_seeded_sorted_and_of_size_k():
    first = kept_layer_indices(12, 0.5, "stochastic", seed=7)
    assert first == kept_layer_indices(12, 0.5, "stochastic", seed=7)
    assert len(first) == 6 and len(set(first)) == 6
    assert first == sorted(first)
    assert all(0 <= i < 12 for i in first)
    choices = {tuple(kept_layer_indices(12, 0.5, "stochastic", seed=s)) for s in range(5)}
    assert len(choices) > 1


def test_kept_layer_indices_rejects_bad_input():
    with pytest.raises(ValueError, match="'sometimes'"):
        kept_layer_indices(6, 0.5, "sometimes", seed=0)
    with pytest.raises(ValueError, match="1.0"):
        kept_layer_indices(6, 1.0, "deterministic", seed=0)
    with pytest.raises(ValueError, match="0"):
        kept_layer_indices(0, 0.5, "deterministic", seed=0)


def test_drop_layers_keeps_the_chosen_blocks(model, batch):
    before = list(encoder_layers(model))
    drop_layers_(model, [0, 2])
    assert model.config.num_hidden_layers == 2
    assert list(encoder_layers(model)) == [before[0], before[2]]
    assert encoder_layers(model)[0] is before[0] and encoder_layers(model)[1] is before[2]

    calls, _ = count_layer_calls(model)
    assert logits(model, batch).shape == (2, 2)
    assert calls == [1, 1]


def test_drop_layers_rejects_bad_indices(model):
    with pytest.raises(ValueError, match=r"\[4\]"):
        drop_layers_(model, [0, 4])
    with pytest.raises(ValueError, match=r"\[1\]"):
        drop_layers_(model, [1, 1])
    with pytest.raises(ValueError, match="at least one"):
        drop_layers_(model, [])
    assert len(encoder_layers(model)) == NUM_LAYERS  # nothing changed by the rejected calls


def test_layerdrop_samples_layers_in_training_only(model, batch):
    original = encoder_layers(model)
    calls, _ = count_layer_calls(model)
    handle = enable_layerdrop_(model, p=0.5, seed=0)

    model.train()
    ran = []
    for _ in range(100):
        before = sum(calls)
        model(**batch)
        ran.append(sum(calls) - before)
        assert model.bert.encoder.layer is original
    assert len(set(ran)) > 1
    assert min(ran) >= 1
    # Expected 2 of 4 (plus 1/16 from the at-least-one rule); the standard error over 100 passes is ~0.1.
    assert abs(sum(ran) / len(ran) - NUM_LAYERS * 0.5) < 0.4
    assert all(c > 0 for c in calls)  # every block runs sometimes

    model.eval()
    before = sum(calls)
    logits(model, batch)
    assert sum(calls) - before == NUM_LAYERS

    handle.remove()
    model.train()
    before = sum(calls)
    model(**batch)
    assert sum(calls) - before == NUM_LAYERS
    assert model.bert.encoder.layer is original


def test_layerdrop_is_seeded_and_p_zero_keeps_all(batch):
    def layers_run(seed: int, p: float) -> list[int]:
        model = tiny_bert().train()
        calls, _ = count_layer_calls(model)
        enable_layerdrop_(model, p=p, seed=seed)
        ran = []
        for _ in range(10):
            before = sum(calls)
            model(**batch)
            ran.append(sum(calls) - before)
        return ran

    assert layers_run(3, 0.5) == layers_run(3, 0.5)
    assert layers_run(3, 0.0) == [NUM_LAYERS] * 10


def test_layerdrop_restores_the_list_when_forward_fails(model):
    original = encoder_layers(model)
    enable_layerdrop_(model, p=0.5, seed=0)
    model.train()
    with pytest.raises(IndexError):
        model(input_ids=torch.full((1, 4), 1000))  # token id beyond the vocabulary
    assert model.bert.encoder.layer is original


# --- magnitude pruning ----------------------------------------------------------------------------------


def test_encoder_linears_are_only_the_blocks_linears(model):
    names = [name for name, _ in encoder_linears(model)]
    assert len(names) == NUM_LAYERS * LINEARS_PER_BLOCK
    assert all(name.startswith("bert.encoder.layer.") for name in names)
    modules = dict(model.named_modules())
    assert all(modules[name] is linear for name, linear in encoder_linears(model))


def test_magnitude_prune_zeroes_the_ratio_per_layer(model):
    untouched = {
        "embeddings": model.bert.embeddings.word_embeddings.weight.clone(),
        "pooler": model.bert.pooler.dense.weight.clone(),
        "classifier": model.classifier.weight.clone(),
    }
    magnitude_prune_(model, 0.3)
    for name, linear in encoder_linears(model):
        weight = effective_weight(linear)
        zero_fraction = (weight == 0).float().mean().item()
        assert abs(zero_fraction - 0.3) <= 1 / weight.numel(), name
        # The kept weights are the large ones: every zeroed entry was no larger than any kept entry.
        assert linear.weight_orig[weight == 0].abs().max() <= linear.weight_orig[weight != 0].abs().min()
    assert abs(weight_sparsity(model) - 0.3) < 0.01
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, untouched["embeddings"])
    assert torch.equal(model.bert.pooler.dense.weight, untouched["pooler"])
    assert torch.equal(model.classifier.weight, untouched["classifier"])
    assert not hasattr(model.classifier, "weight_mask")


def test_pruned_zeros_survive_training_and_become_permanent(model, batch):
    magnitude_prune_(model, 0.5)
    masks = {name: linear.weight_mask.clone() for name, linear in encoder_linears(model)}
    origs = {name: linear.weight_orig.detach().clone() for name, linear in encoder_linears(model)}

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = model(**batch, labels=torch.tensor([0, 1])).loss
    loss.backward()
    optimizer.step()
    model.eval()
    after_step = logits(model, batch)  # the forward pass re-applies the masks

    moved = 0
    for name, linear in encoder_linears(model):
        moved += not torch.equal(linear.weight_orig, origs[name])
        assert torch.all(linear.weight[masks[name] == 0] == 0), name
    assert moved > 0  # the step did change weights, so the zeros are held by the mask
    assert abs(weight_sparsity(model) - 0.5) < 0.01

    make_pruning_permanent_(model)
    keys = model.state_dict().keys()
    assert not any(key.endswith(("weight_orig", "weight_mask")) for key in keys)
    for name, linear in encoder_linears(model):
        assert isinstance(linear.weight, nn.Parameter)
        assert torch.all(linear.weight[masks[name] == 0] == 0), name
    assert abs(weight_sparsity(model) - 0.5) < 0.01
    assert torch.allclose(logits(model, batch), after_step)


def test_magnitude_prune_ratio_zero_is_a_noop_and_bad_ratio_raises(model):
    magnitude_prune_(model, 0.0)
    assert not any(hasattr(linear, "weight_mask") for _, linear in encoder_linears(model))
    with pytest.raises(ValueError, match="1.0"):
        magnitude_prune_(model, 1.0)
    with pytest.raises(ValueError, match="-0.1"):
        magnitude_prune_(model, -0.1)


# --- low-rank factorization -----------------------------------------------------------------------------


def test_saves_flops_arithmetic():
    # 32 x 32: dense 1024 multiply-adds per token, rank r costs 64 r.
    assert saves_flops(32, 32, 15)
    assert not saves_flops(32, 32, 16)
    assert saves_flops(32, 64, 21) and not saves_flops(32, 64, 22)  # 96 r < 2048


def test_factorize_replaces_every_encoder_linear_with_rank_8(model, batch):
    names = [name for name, _ in encoder_linears(model)]
    ranks = factorize_(model, 8)
    assert ranks == {name: 8 for name in names}
    modules = dict(model.named_modules())
    for name in names:
        low_rank = modules[name]
        assert isinstance(low_rank, LowRankLinear) and low_rank.rank == 8
        product = low_rank.up.weight @ low_rank.down.weight
        assert torch.linalg.matrix_rank(product).item() == 8
    assert logits(model, batch).shape == (2, 2)
    assert isinstance(model.classifier, nn.Linear) and isinstance(model.bert.pooler.dense, nn.Linear)
    # The factors themselves (e.g. down: 32 -> 8, where rank 4 would save FLOPs) are not factorized again.
    assert factorize_(model, 4) == {}


def test_factorize_skips_layers_where_rank_saves_nothing(model):
    assert factorize_(model, 22) == {}
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())
    # Rank 16 saves FLOPs only for the rectangular FFN layers (96 * 16 < 2048), not for 32 x 32 (64 * 16 = 1024).
    ffn = [name for name, linear in encoder_linears(model) if linear.in_features != linear.out_features]
    assert len(ffn) == 2 * NUM_LAYERS
    assert factorize_(model, 16) == {name: 16 for name in ffn}
    # Calling it again leaves the factors alone: they are already low rank.
    assert factorize_(model, 16) == {}
    with pytest.raises(ValueError, match="0"):
        factorize_(model, 0)


def test_full_rank_low_rank_linear_reproduces_the_linear():
    torch.manual_seed(0)
    linear = nn.Linear(32, 16)
    low_rank = LowRankLinear.from_linear(linear, 16)
    x = torch.randn(5, 32)
    assert torch.allclose(low_rank(x), linear(x), atol=1e-5)
    assert (low_rank.in_features, low_rank.out_features, low_rank.rank) == (32, 16, 16)
    with pytest.raises(ValueError, match="17"):
        LowRankLinear.from_linear(linear, 17)


def test_low_rank_factorizes_the_pruned_weight():
    torch.manual_seed(0)
    linear = nn.Linear(32, 16)
    torch.nn.utils.prune.l1_unstructured(linear, "weight", amount=0.5)
    low_rank = LowRankLinear.from_linear(linear, 16)
    x = torch.randn(5, 32)
    assert torch.allclose(low_rank(x), linear(x), atol=1e-5)
    assert not any(name.endswith("_mask") for name, _ in low_rank.named_buffers())


def test_weight_sparsity_after_pruning_then_factorizing(model):
    magnitude_prune_(model, 0.5)
    factorize_(model, 16)  # replaces the FFN layers only; attention projections stay pruned
    attention_zeros = 4 * 32 * 32 * 0.5
    ffn_factor_weights = (16 * 32 + 64 * 16) + (16 * 64 + 32 * 16)  # dense, no zeros
    expected = attention_zeros / (4 * 32 * 32 + ffn_factor_weights)
    assert weight_sparsity(model) == pytest.approx(expected, abs=1e-3)


def test_low_rank_state_dict_round_trip(model, batch, tmp_path):
    ranks = factorize_(model, 8)
    path = tmp_path / "student.pt"
    torch.save(model.state_dict(), path)

    fresh = tiny_bert(seed=1)
    with pytest.raises(RuntimeError):
        fresh.load_state_dict(torch.load(path), strict=True)
    restore_low_rank_structure_(fresh, ranks)
    fresh.load_state_dict(torch.load(path), strict=True)
    assert torch.equal(logits(fresh, batch), logits(model, batch))


def test_restore_low_rank_structure_names_an_unknown_layer(model):
    with pytest.raises(ValueError, match="bert.encoder.layer.9.output.dense"):
        restore_low_rank_structure_(model, {"bert.encoder.layer.9.output.dense": 4})
    with pytest.raises(ValueError, match="bert.encoder.layer.0.output"):
        restore_low_rank_structure_(model, {"bert.encoder.layer.0.output": 4})  # a BertOutput, not a Linear


# --- quantization ---------------------------------------------------------------------------------------


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    # The random tiny model has logits of order 0.01, so an absolute tolerance would say nothing.
    return ((approx.float() - exact).abs().max() / exact.abs().max()).item()


def test_int8_quantizes_every_linear_and_stays_close(model, batch):
    num_linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert num_linears == NUM_LAYERS * LINEARS_PER_BLOCK + 2  # + pooler and classifier
    reference = logits(model, batch)

    quantized = quantize(model, "int8")
    assert count_quantized_linears(quantized) == num_linears
    assert count_quantized_linears(model) == 0  # the float model is left as it was
    assert not quantized.training
    result = logits(quantized, batch)
    assert 0 < relative_error(result, reference) < 0.05
    assert torch.equal(result.argmax(-1), reference.argmax(-1))


def test_int8_quantizes_the_factors_of_low_rank_layers(model, batch):
    factorize_(model, 8)
    quantized = quantize(model, "int8")
    assert count_quantized_linears(quantized) == 2 * NUM_LAYERS * LINEARS_PER_BLOCK + 2
    assert logits(quantized, batch).shape == (2, 2)


def test_fp32_is_the_model_itself_in_eval_mode(model):
    model.train()
    assert quantize(model, "fp32") is model and not model.training


def test_half_precision_casts_a_copy(model, batch):
    reference = logits(model, batch)
    bf16 = quantize(model, "bf16")
    assert bf16 is not model and not bf16.training
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert relative_error(logits(bf16, batch), reference) < 0.1

    fp16 = quantize(model, "fp16")
    assert all(p.dtype == torch.float16 for p in fp16.parameters())


def test_fp32_is_the_model_itself_and_unknown_dtype_raises(model):
    assert quantize(model, "fp32") is model
    with pytest.raises(ValueError, match="'int4'"):
        quantize(model, "int4")
