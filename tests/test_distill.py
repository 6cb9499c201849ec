"""The distillation loss against its formula, computed by hand, and a few real distillation steps on a tiny BERT."""

from __future__ import annotations

import json
import math

import pytest
import torch

from latencysolver.config.training import TrainConfig
from latencysolver.data.batches import EncodedSplit, encode_split, eval_batches
from latencysolver.data.text import TextSplit
from latencysolver.errors import TrialFailure
from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.training.distillation import distill, distillation_loss, hidden_state_loss, hidden_targets

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
    for s, t, y in zip(s_rows, t_rows, ys, strict=True):
        p = _softmax([v / T for v in t])
        q = _softmax([v / T for v in s])
        kl_total += sum(p_c * (math.log(p_c) - math.log(q_c)) for p_c, q_c in zip(p, q, strict=True))
        ce_total += -math.log(_softmax(s)[y])
    return alpha * T * T * (kl_total / n) + (1 - alpha) * (ce_total / n)


def _random_case(seed: int, rows: int = 6, classes: int = 2):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(rows, classes, generator=g) * 3
    teacher = torch.randn(rows, classes, generator=g) * 3
    labels = torch.randint(0, classes, (rows,), generator=g)
    return student, teacher, labels


@pytest.mark.parametrize(
    "seed, rows, classes, T, alpha",
    [
        (0, 6, 2, 2.0, 0.5),
        (1, 8, 2, 1.0, 0.3),
        (2, 5, 3, 4.0, 0.8),
        (3, 1, 2, 0.5, 0.9),
        (4, 16, 4, 7.5, 0.25),
    ],
)
def test_loss_matches_formula(seed, rows, classes, T, alpha):
    student, teacher, labels = _random_case(seed, rows, classes)
    loss = distillation_loss(student, teacher, labels, T, alpha)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(_by_hand(student, teacher, labels, T, alpha), rel=1e-5, abs=1e-6)


def test_alpha_zero_is_plain_cross_entropy():
    student, teacher, labels = _random_case(5, 7)
    loss = distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.0)
    hand = sum(-math.log(_softmax(s)[y]) for s, y in zip(student.tolist(), labels.tolist(), strict=True)) / 7
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
    split = TextSplit(
        text=tuple(r["question"] for r in rows),
        text_pair=tuple(r["passage"] for r in rows),
        label=tuple(int(r["label"]) for r in rows),
        label_names=("no", "yes"),
    )
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
    import latencysolver.training.distillation as distill_module

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


# --------------------------------------------------------------------------------------------------------------
# The hidden-state term
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kept, depth, targets",
    [
        ([0, 3], 6, [2, 5]),  # 2 of 6: layer 0 stands in for 0-2, layer 3 for 3-5
        ([0, 2, 4], 6, [1, 3, 5]),
        ([0, 1, 3, 4], 6, [0, 2, 3, 5]),
        ([0, 1, 2], 3, [0, 1, 2]),  # nothing skipped: each layer learns its own output
        ([2], 4, [3]),
    ],
)
def test_hidden_targets_are_the_ends_of_the_replaced_blocks(kept, depth, targets):
    assert hidden_targets(kept, depth) == targets


@pytest.mark.parametrize("kept, depth", [([], 6), ([3, 1], 6), ([0, 0], 6), ([0, 6], 6), ([-1, 2], 6)])
def test_hidden_targets_refuse_impossible_layers(kept, depth):
    with pytest.raises(ValueError, match="kept layers"):
        hidden_targets(kept, depth)


def _hidden(layers: int, seed: int, shape=(3, 5, 4)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=g) for _ in range(layers + 1))


def test_hidden_state_loss_is_the_masked_mse_of_the_paired_layers():
    student, teacher = _hidden(2, 0), _hidden(4, 1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    by_hand = []
    for j, t in enumerate([1, 3]):  # student layer j against teacher layer t: hidden_states[j + 1], [t + 1]
        total, count = 0.0, 0
        for b in range(3):
            for i in range(5):
                if mask[b, i]:
                    total += sum(
                        (s - r) ** 2
                        for s, r in zip(student[j + 1][b, i].tolist(), teacher[t + 1][b, i].tolist(), strict=True)
                    )
                    count += 4
        by_hand.append(total / count)
    loss = hidden_state_loss(student, teacher, [1, 3], mask)
    assert loss.item() == pytest.approx(sum(by_hand) / 2, rel=1e-5)
    # padded positions play no part
    noisy = tuple(h.clone() for h in student)
    for h in noisy:
        h[1, 3:] += 100.0
    assert hidden_state_loss(noisy, teacher, [1, 3], mask).item() == pytest.approx(loss.item(), rel=1e-6)
    # the embeddings (entry 0) are never compared
    moved = (student[0] + 5.0, *student[1:])
    assert hidden_state_loss(moved, teacher, [1, 3], mask).item() == pytest.approx(loss.item(), rel=1e-6)


def test_hidden_state_loss_final_only_and_layer_count_check():
    student, teacher = _hidden(3, 2), _hidden(6, 3)
    mask = torch.ones(3, 5)
    final = ((student[-1] - teacher[-1]) ** 2).mean().item()
    assert hidden_state_loss(student, teacher, None, mask).item() == pytest.approx(final, rel=1e-5)
    assert hidden_state_loss(teacher, teacher, None, mask).item() == 0.0
    with pytest.raises(ValueError, match="3 layers, but 2 targets"):
        hidden_state_loss(student, teacher, [2, 5], mask)


def _final_hidden_mse(student, teacher, split: EncodedSplit) -> float:
    batch = next(eval_batches(split, batch_size=len(split)))
    with torch.no_grad():
        s = student(**batch.inputs, output_hidden_states=True).hidden_states
        t = teacher(**batch.inputs, output_hidden_states=True).hidden_states
    return hidden_state_loss(s, t, None, batch.inputs["attention_mask"]).item()


def test_hidden_weight_pulls_a_skipped_student_towards_the_teachers_hidden_states(tiny_model_dir, encoded_train):
    from latencysolver.config.recipe import Recipe
    from latencysolver.models.student import compress

    teacher = load_classifier(str(tiny_model_dir)).eval()
    with torch.no_grad():  # a randomly initialised layer 1 barely changes its input: give it work to copy
        torch.manual_seed(1)
        for p in teacher.bert.encoder.layer[1].parameters():
            p.add_(torch.randn_like(p))
    logits = _teacher_logits(encoded_train)
    config = TrainConfig(steps=30, batch_size=16, learning_rate=3e-3, warmup_ratio=0.0, weight_decay=0.0, seed=0)
    mse = {}
    for weight in (0.0, 5.0):
        student = compress(teacher, Recipe(skip_prob=0.5))  # keeps layer 0 of 2: it must learn layer 1's output
        assert student.kept_layers == (0,)
        targets = hidden_targets(student.kept_layers, 2)
        assert targets == [1]
        start = _final_hidden_mse(student.model.eval(), teacher, encoded_train)
        distill(
            student.model,
            encoded_train,
            logits,
            config,
            2.0,
            0.5,
            progress=False,
            hidden_weight=weight,
            teacher=teacher if weight else None,
            hidden_layers=targets,
        )
        mse[weight] = _final_hidden_mse(student.model, teacher, encoded_train)
    assert mse[5.0] < 0.5 * start, (start, mse)
    assert mse[5.0] < 0.5 * mse[0.0], mse


def test_hidden_weight_runs_the_teacher_once_per_step_and_zero_never(tiny_model_dir, encoded_train):
    from latencysolver.config.recipe import Recipe
    from latencysolver.models.student import compress

    teacher = load_classifier(str(tiny_model_dir)).eval()
    calls = []
    config = TrainConfig(steps=4, batch_size=8, learning_rate=1e-4, warmup_ratio=0.0, seed=0)
    for weight, expected in ((0.0, []), (1.0, [True] * 4)):
        student = compress(teacher, Recipe(skip_prob=0.5))  # a deep copy: hooks registered after it
        hook = teacher.register_forward_hook(lambda module, args, out: calls.append(out.hidden_states is not None))
        calls.clear()
        distill(
            student.model,
            encoded_train,
            _teacher_logits(encoded_train),
            config,
            2.0,
            0.5,
            progress=False,
            hidden_weight=weight,
            teacher=teacher,
            hidden_layers=[1],
        )
        hook.remove()
        assert calls == expected
    assert not teacher.training


def test_hidden_weight_needs_a_teacher_and_must_not_be_negative(tiny_model_dir, encoded_train):
    model = load_classifier(str(tiny_model_dir))
    config = TrainConfig(steps=1, batch_size=8, learning_rate=1e-4, warmup_ratio=0.0, seed=0)
    with pytest.raises(ValueError, match="needs the teacher"):
        distill(
            model, encoded_train, _teacher_logits(encoded_train), config, 2.0, 0.5, progress=False, hidden_weight=1.0
        )
    with pytest.raises(ValueError, match="hidden_weight must be >= 0"):
        distill(
            model,
            encoded_train,
            _teacher_logits(encoded_train),
            config,
            2.0,
            0.5,
            progress=False,
            hidden_weight=-1.0,
            teacher=model,
        )


def test_hidden_weight_under_layerdrop_compares_the_final_outputs(tiny_model_dir, encoded_train):
    from latencysolver.config.recipe import Recipe
    from latencysolver.models.student import compress

    teacher = load_classifier(str(tiny_model_dir)).eval()
    student = compress(teacher, Recipe(skip_prob=0.5, skip_mode="stochastic", seed=1))  # a layer fewer some steps
    config = TrainConfig(steps=8, batch_size=8, learning_rate=1e-4, warmup_ratio=0.0, seed=0)
    result = distill(
        student.model,
        encoded_train,
        _teacher_logits(encoded_train),
        config,
        2.0,
        0.5,
        progress=False,
        hidden_weight=1.0,
        teacher=teacher,
        hidden_layers=None,
    )
    assert result.steps == 8 and math.isfinite(result.final_loss)


def test_recipe_hidden_weight_is_off_by_default_and_old_recipes_still_load():
    from latencysolver.config.recipe import Recipe

    old = Recipe().to_dict()
    del old["hidden_weight"]  # a recipe stored before the knob existed
    assert Recipe.from_dict(old).hidden_weight == 0.0
    assert "hidden" not in Recipe().describe()
    assert "hidden=2" in Recipe(hidden_weight=2.0).describe()
    with pytest.raises(ValueError, match="hidden_weight must be a number >= 0, but got -0.5"):
        Recipe(hidden_weight=-0.5)
