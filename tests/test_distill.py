"""The distillation loss against its formula, computed by hand, and a few real distillation steps on a tiny BERT."""

from __future__ import annotations

import json
import math

import pytest
import torch

from latencysolver.batches import EncodedSplit, encode_split, eval_batches
from latencysolver.config import TrainConfig
from latencysolver.data import BoolQSplit
from latencysolver.distill import distill, distillation_loss
from latencysolver.errors import TrialFailure
from latencysolver.models import load_classifier, load_tokenizer

# --------------------------------------------------------------------------------------------------------------
# The formula, with explicit sums in float64 Python arithmetic
# --------------------------------------------------------------------------------------------------------------


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _by_hand(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, T: float, alpha: float) -> float:
    """alpha * T^2 * mean_i KL(softmax(t_i/T) || softmax(s_i/T)) + (1 - alpha) * mean_i CE(s_i, y_i)."""
    s_rows, t_rows, ys = student.double().tolist(), teacher.double().tolist(), labels.tolist()
    n = len(ys)
    kl_total = 0.0
    ce_total = 0.0
    for s, t, y in zip(s_rows, t_rows, ys):
        p = _softmax([v / T for v in t])
        q = _softmax([v / T for v in s])
        kl_total += sum(p_c * (math.log(p_c) - math.log(q_c)) for p_c, q_c in zip(p, q))
        ce_total += -math.log(_softmax(s)[y])
    return alpha * T * T * (kl_total / n) + (1 - alpha) * (ce_total / n)


def _random_case(seed: int, rows: int = 6, classes: int = 2):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(rows, classes, generator=g) * 3
    teacher = torch.randn(rows, classes, generator=g) * 3
    labels = torch.randint(0, classes, (rows,), generator=g)
    return student, teacher, labels


@pytest.mark.parametrize("seed, rows, classes, T, alpha", [
    (0, 6, 2, 2.0, 0.5),
    (1, 8, 2, 1.0, 0.3),
    (2, 5, 3, 4.0, 0.8),
    (3, 1, 2, 0.5, 0.9),
    (4, 16, 4, 7.5, 0.25),
])
def test_loss_matches_formula(seed, rows, classes, T, alpha):
    student, teacher, labels = _random_case(seed, rows, classes)
    loss = distillation_loss(student, teacher, labels, T, alpha)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(_by_hand(student, teacher, labels, T, alpha), rel=1e-5, abs=1e-6)


def test_alpha_zero_is_plain_cross_entropy():
    student, teacher, labels = _random_case(5, 7)
    loss = distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.0)
    hand = sum(-math.log(_softmax(s)[y]) for s, y in zip(student.tolist(), labels.tolist())) / 7
    assert loss.item() == pytest.approx(hand, rel=1e-5)
    # the teacher plays no part at all
    other_teacher = torch.randn_like(teacher) * 10
    assert distillation_loss(student, other_teacher, labels, 3.0, 0.0).item() == pytest.approx(loss.item(), rel=1e-6)


def test_alpha_one_ignores_labels():
    student, teacher, labels = _random_case(6, 7)
    loss = distillation_loss(student, teacher, labels, temperature=2.0, alpha=1.0)
    assert distillation_loss(student, teacher, 1 - labels, 2.0, 1.0).item() == pytest.approx(loss.item(), rel=1e-6)
    assert loss.item() == pytest.approx(_by_hand(student, teacher, labels, 2.0, 1.0), rel=1e-5)
    assert loss.item() > 0


def test_soft_part_is_zero_when_student_equals_teacher():
    student, _, labels = _random_case(7, 9)
    teacher = student.clone()
    assert distillation_loss(student, teacher, labels, 2.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    hard = distillation_loss(student, teacher, labels, 2.0, 0.0).item()
    assert hard > 0
    assert distillation_loss(student, teacher, labels, 2.0, 0.4).item() == pytest.approx(0.6 * hard, rel=1e-5)


def test_temperature_changes_the_loss_as_the_formula_says():
    student, teacher, labels = _random_case(8, 6)
    at_1 = distillation_loss(student, teacher, labels, 1.0, 0.7).item()
    at_4 = distillation_loss(student, teacher, labels, 4.0, 0.7).item()
    hand_1, hand_4 = _by_hand(student, teacher, labels, 1.0, 0.7), _by_hand(student, teacher, labels, 4.0, 0.7)
    assert hand_1 != pytest.approx(hand_4, rel=1e-3)  # the case really depends on T
    assert at_1 == pytest.approx(hand_1, rel=1e-5)
    assert at_4 == pytest.approx(hand_4, rel=1e-5)
    # the soft part alone: T^2 * KL at T, so dropping the T^2 factor would show here
    soft_4 = distillation_loss(student, teacher, labels, 4.0, 1.0).item()
    kl_4 = _by_hand(student, teacher, labels, 4.0, 1.0) / 16.0
    assert soft_4 == pytest.approx(16.0 * kl_4, rel=1e-5)


def test_loss_has_gradients_for_the_student_only():
    student, teacher, labels = _random_case(9, 4)
    student.requires_grad_(True)
    distillation_loss(student, teacher, labels, 2.0, 0.5).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------------------
# distill() on the tiny model
# --------------------------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")  # the tiny model gains nothing from threads


@pytest.fixture(scope="module")
def encoded_train(synthetic_data_dir, tiny_model_dir) -> EncodedSplit:
    # read the jsonl directly: data loading has its own tests, and ``datasets`` would try the network
    rows = [json.loads(line) for line in (synthetic_data_dir / "train.jsonl").read_text().splitlines()]
    split = BoolQSplit(question=tuple(r["question"] for r in rows), passage=tuple(r["passage"] for r in rows),
                       title=tuple(r["title"] for r in rows), label=tuple(r["label"] for r in rows))
    return encode_split(split, load_tokenizer(str(tiny_model_dir)), max_length=48)


def _teacher_logits(split: EncodedSplit) -> torch.Tensor:
    """A confident teacher that knows the labels."""
    signs = torch.tensor(split.labels, dtype=torch.float32) * 2 - 1
    return torch.stack([-2.5 * signs, 2.5 * signs], dim=1)


def _loss_on(model, split: EncodedSplit, teacher: torch.Tensor, T: float, alpha: float) -> float:
    batch = next(eval_batches(split, batch_size=len(split)))  # every row, a fixed batch
    model.eval()
    with torch.no_grad():
        logits = model(**batch.inputs).logits
    return distillation_loss(logits, teacher[batch.indices], batch.labels, T, alpha).item()


def test_distill_lowers_the_distillation_loss(tiny_model_dir, encoded_train):
    model = load_classifier(str(tiny_model_dir))
    teacher = _teacher_logits(encoded_train)
    before = _loss_on(model, encoded_train, teacher, 2.0, 0.5)
    config = TrainConfig(steps=40, batch_size=16, learning_rate=1e-2, warmup_ratio=0.0, weight_decay=0.0, seed=0)
    result = distill(model, encoded_train, teacher, config, temperature=2.0, alpha=0.5, progress=False)
    assert not model.training  # handed back in eval mode
    after = _loss_on(model, encoded_train, teacher, 2.0, 0.5)
    assert result.steps == 40 and math.isfinite(result.final_loss)
    # 40 steps are enough to find the 'true'/'false' word (~1.19 -> ~0.1); the label prior alone gives ~1.15
    assert after < 0.6 * before, f"distillation did not learn: loss {before:.4f} -> {after:.4f}"


def test_distill_looks_up_each_rows_teacher_logits(tiny_model_dir, encoded_train, monkeypatch):
    import latencysolver.distill as distill_module

    seen = []
    real = distill_module.distillation_loss

    def spy(student_logits, teacher_logits, labels, temperature, alpha):
        seen.append((teacher_logits.detach().clone(), labels.clone(), temperature, alpha))
        return real(student_logits, teacher_logits, labels, temperature, alpha)

    monkeypatch.setattr(distill_module, "distillation_loss", spy)
    n = len(encoded_train)
    teacher = torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], dim=1)  # row i -> logits (i, 0)
    config = TrainConfig(steps=n // 16, batch_size=16, learning_rate=1e-4, warmup_ratio=0.0, seed=0)
    distill(load_classifier(str(tiny_model_dir)), encoded_train, teacher, config, 3.0, 0.25, progress=False)
    assert len(seen) == n // 16
    all_labels = torch.tensor(encoded_train.labels)
    rows = []
    for teacher_rows, labels, temperature, alpha in seen:
        assert (temperature, alpha) == (3.0, 0.25)
        index = teacher_rows[:, 0].long()
        assert torch.equal(teacher_rows[:, 1], torch.zeros(len(index)))
        assert torch.equal(all_labels[index], labels)  # each row's teacher logits sit beside its own label
        rows += index.tolist()
    assert sorted(rows) == list(range(n))  # one epoch: every row's teacher logits once


def test_distill_with_huge_learning_rate_is_a_trial_failure(tiny_model_dir, encoded_train):
    model = load_classifier(str(tiny_model_dir))
    config = TrainConfig(steps=20, batch_size=16, learning_rate=1e6, warmup_ratio=0.0, seed=0)
    with pytest.raises(TrialFailure, match="loss became"):
        distill(model, encoded_train, _teacher_logits(encoded_train), config, 2.0, 0.5, progress=False)


def test_distill_with_nan_teacher_logits_is_a_trial_failure(tiny_model_dir, encoded_train):
    model = load_classifier(str(tiny_model_dir))
    teacher = torch.full((len(encoded_train), 2), float("nan"))
    config = TrainConfig(steps=3, batch_size=8, learning_rate=1e-3, warmup_ratio=0.0, seed=0)
    with pytest.raises(TrialFailure, match="step 1/3"):
        distill(model, encoded_train, teacher, config, 2.0, 0.5, progress=False)


def test_distill_refuses_teacher_logits_of_the_wrong_length(tiny_model_dir, encoded_train):
    model = load_classifier(str(tiny_model_dir))
    teacher = _teacher_logits(encoded_train)[:-1]
    with pytest.raises(ValueError, match=f"{len(encoded_train) - 1} rows"):
        distill(model, encoded_train, teacher, TrainConfig(steps=1), 2.0, 0.5, progress=False)
