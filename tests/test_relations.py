"""The self-attention relation loss (training/relations.py): hand-computed on a tiny case, zero for a student that
equals its teacher's layers, blind to padding and to pruned widths, in every family, and pulling a student's
relations towards the teacher's when distilling."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from latencysolver.compression import encoder_layers
from latencysolver.config.recipe import Recipe
from latencysolver.config.training import TrainConfig
from latencysolver.models.student import compress
from latencysolver.training.distillation import distill, hidden_targets
from latencysolver.training.relations import capture_projections, relation_heads, relation_loss
from tests.test_architectures import tiny_batch, tiny_model


def _projections(model, batch):
    with capture_projections(model) as seen, torch.no_grad():
        model(**batch)
        return {role: list(found) for role, found in seen.items()}


def test_relation_heads_divide_both_widths():
    assert relation_heads(384, 384, 12) == 12
    assert relation_heads(192, 384, 12) == 12  # half the heads pruned: 12 heads of 16 against 12 of 32
    assert relation_heads(100, 384, 12) == 4  # gcd 4
    assert relation_heads(7, 384, 12) == 1


def test_the_loss_is_the_kl_of_the_softmaxed_relations_by_hand():
    # one row, two tokens, width 1, one relation head: relation[i][k] = softmax_k(a_i * a_k)
    student = {role: [torch.tensor([[[1.0], [0.0]]])] for role in ("query", "key", "value")}
    teacher = {role: [torch.tensor([[[2.0], [1.0]]])] for role in ("query", "key", "value")}
    mask = torch.ones(1, 2)
    loss = relation_loss(student, teacher, None, mask, most_heads=1)

    def softmax(xs):
        e = [math.exp(x) for x in xs]
        return [v / sum(e) for v in e]

    s_rows = [softmax([1 * 1, 1 * 0]), softmax([0, 0])]
    t_rows = [softmax([4, 2]), softmax([2, 1])]
    kl = [sum(p * math.log(p / q) for p, q in zip(t, s, strict=True)) for t, s in zip(t_rows, s_rows, strict=True)]
    assert loss.item() == pytest.approx(sum(kl) / 2, rel=1e-5)  # the same for Q, K and V: their mean is it


def test_padding_changes_nothing():
    torch.manual_seed(0)
    student = {role: [torch.randn(1, 3, 4)] for role in ("query", "key", "value")}
    teacher = {role: [torch.randn(1, 3, 8)] for role in ("query", "key", "value")}
    loss = relation_loss(student, teacher, None, torch.ones(1, 3), most_heads=2)
    padded_s = {role: [torch.cat([x[0], torch.randn(1, 2, 4)], dim=1)] for role, x in student.items()}
    padded_t = {role: [torch.cat([x[0], torch.randn(1, 2, 8)], dim=1)] for role, x in teacher.items()}
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]])
    assert relation_loss(padded_s, padded_t, None, mask, most_heads=2).item() == pytest.approx(loss.item(), rel=1e-5)


def test_a_student_equal_to_its_teachers_layers_has_zero_loss_in_every_family(family):
    teacher = tiny_model(family)
    student = copy.deepcopy(teacher)
    batch = tiny_batch()
    t, s = _projections(teacher, batch), _projections(student, batch)
    depth = len(encoder_layers(teacher))
    assert len(t["query"]) == depth  # one capture per layer run (ALBERT: per repetition)
    targets = hidden_targets(tuple(range(depth)), depth)
    heads = int(teacher.config.num_attention_heads if hasattr(teacher.config, "num_attention_heads") else 4)
    loss = relation_loss(s, t, targets, batch["attention_mask"], heads)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_a_pruned_skipped_student_maps_uniformly_and_gets_a_gradient():
    teacher = tiny_model("BERT", num_hidden_layers=4)
    recipe = Recipe(skip_prob=0.5, prune_ratio=0.5, prune_kind="structured")
    student = compress(teacher, recipe)
    assert student.kept_layers == (0, 2) and hidden_targets(student.kept_layers, 4) == [1, 3]
    batch = tiny_batch()
    t = _projections(teacher, batch)
    with capture_projections(student.model) as s:
        student.model(**batch)
        assert s["query"][0].shape[-1] == 16 and t["query"][0].shape[-1] == 32  # 2 of 4 heads kept
        loss = relation_loss(s, t, [1, 3], batch["attention_mask"], 4)
        loss.backward()
    assert loss.item() > 0
    query = encoder_layers(student.model)[0].attention.self.query.weight
    assert query.grad is not None and query.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ran 2 layers, but 3 targets"):
        relation_loss(s, t, [1, 2, 3], batch["attention_mask"], 4)


def _mean_relation_loss(student, teacher, batch) -> float:
    return relation_loss(
        _projections(student, batch), _projections(teacher, batch), [1], batch["attention_mask"], 4
    ).item()


def test_attention_weight_pulls_the_students_relations_towards_the_teachers(encoded_tiny_split):
    split, logits = encoded_tiny_split
    teacher = tiny_model("BERT", seed=3)
    with torch.no_grad():  # a random layer 1 relates tokens as layer 0 does: give it relations of its own
        torch.manual_seed(1)
        for p in encoder_layers(teacher)[1].attention.self.parameters():
            p.mul_(4.0)
    config = TrainConfig(steps=25, batch_size=8, learning_rate=3e-3, warmup_ratio=0.0, weight_decay=0.0, seed=0)
    batch = tiny_batch()
    after = {}
    for weight in (0.0, 1.0):
        student = compress(teacher, Recipe(skip_prob=0.5))  # keeps layer 0 of 2: learns layer 1's relations
        start = _mean_relation_loss(student.model.eval(), teacher, batch)
        distill(
            student.model,
            split,
            logits,
            config,
            2.0,
            0.5,
            progress=False,
            attention_weight=weight,
            teacher=teacher,
            hidden_layers=[1],
        )
        after[weight] = _mean_relation_loss(student.model.eval(), teacher, batch)
    assert after[1.0] < 0.7 * start and after[1.0] < after[0.0], (start, after)


@pytest.fixture()
def encoded_tiny_split():
    from latencysolver.data.batches import EncodedSplit

    generator = torch.Generator().manual_seed(2)
    rows = [tuple(torch.randint(3, 100, (int(n),), generator=generator).tolist()) for n in torch.randint(4, 12, (32,))]
    split = EncodedSplit(input_ids=tuple(rows), token_type_ids=None, labels=tuple(i % 2 for i in range(32)))
    return split, torch.randn(32, 2, generator=generator)
