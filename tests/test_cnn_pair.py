"""Issue 20: the pair-aware CNN (question and passage pooled apart and compared) and the representation loss
(the CNN's features pulled towards the teacher's pooled representation), on tiny models."""

from __future__ import annotations

import math

import pytest
import torch

from latencysolver.config.study import load_study_config
from latencysolver.config.training import TrainConfig
from latencysolver.data.batches import EncodedSplit
from latencysolver.errors import ConfigError
from latencysolver.models.cnn import CNNClassifier, CNNConfig, num_parameters, pair_features
from latencysolver.models.teacher import Teacher, teacher_representations
from latencysolver.results.records import trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.training.distillation import distill

pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(**overrides) -> CNNClassifier:
    torch.manual_seed(0)
    config = CNNConfig(
        **{"vocab_size": 100, "embed_dim": 16, "channels": 8, "kernel_sizes": (1, 3), "pair_aware": True, **overrides}
    )
    return CNNClassifier(config).eval()


def _pair_inputs(rows: int = 2, question: int = 4, passage: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 100, (rows, question + passage), generator=torch.Generator().manual_seed(seed))
    types = torch.cat([torch.zeros(rows, question), torch.ones(rows, passage)], dim=1).long()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": types}


def test_pair_features_by_hand():
    # one row, 2 channels, 4 positions: positions 0-1 the question, 2-3 the passage
    a = torch.tensor([[[1.0, 0.0, 2.0, 0.0], [0.0, 3.0, 1.0, 1.0]]])
    first = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    second = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    q, p = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0])
    # S[i, j] = <a_i, a_j> / sqrt(2) for question i, passage j: i=0: (2, 0); i=1: (3, 3) → best (2, 3)/sqrt(2)
    best = torch.tensor([2.0, 3.0]) / math.sqrt(2)
    expected = torch.cat([q, p, q * p, (q - p).abs(), best.max().reshape(1), best.mean().reshape(1)])
    torch.testing.assert_close(pair_features(a, first, second)[0], expected)


def test_pair_aware_shapes_parameters_and_padding():
    model = _pair()
    assert model.head.in_features == 2 * (4 * 8 + 2)
    assert sum(p.numel() for p in model.parameters()) == num_parameters(model.config)
    inputs = _pair_inputs()
    logits = model(**inputs).logits
    assert logits.shape == (2, 2)
    padded = {k: torch.cat([v, torch.zeros(2, 5, dtype=v.dtype)], dim=1) for k, v in inputs.items()}
    torch.testing.assert_close(model(**padded).logits, logits)  # padding changes nothing


def test_the_passage_starts_after_the_first_separator_without_token_types():
    model = _pair(type_vocab_size=0, sep_token_id=2)
    ids = torch.tensor([[5, 6, 2, 7, 8, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    second = model._second_segment(ids, None, mask.float().unsqueeze(1))
    assert second[0, 0].tolist() == [0, 0, 0, 1, 1, 1, 0]  # after the first </s>; padding never
    with pytest.raises(ValueError, match="needs token type ids or a sep_token_id"):
        _pair(type_vocab_size=0)(input_ids=ids, attention_mask=mask)


def test_the_passage_matters_to_a_pair_aware_cnn_through_the_interaction():
    model = _pair()
    inputs = _pair_inputs(rows=1)
    other = dict(inputs, input_ids=inputs["input_ids"].clone())
    other["input_ids"][0, 4:] = torch.randint(3, 100, (7,), generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(model(**inputs).logits, model(**other).logits)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning", "ignore:.*axis name.*:UserWarning")
def test_pair_aware_cnn_exports_to_onnx(tmp_path):
    from tests.test_cnn import onnx_session

    pytest.importorskip("onnxruntime")
    model = _pair()
    session = onnx_session(model, _pair_inputs(), tmp_path / "pair.onnx")
    inputs = _pair_inputs(rows=3, question=5, passage=9, seed=4)
    inputs["attention_mask"][1, 11:] = 0
    (logits,) = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})
    torch.testing.assert_close(torch.from_numpy(logits), model(**inputs).logits, atol=1e-5, rtol=1e-5)


def test_the_projection_is_outside_the_logits():
    plain, projected = _pair(), _pair(representation_dim=12)
    inputs = _pair_inputs()
    torch.testing.assert_close(projected(**inputs).logits, plain(**inputs).logits)
    out = projected(**inputs, output_hidden_states=True)
    assert out.hidden_states[-1].shape == (2, 12) and plain(**inputs, output_hidden_states=True).hidden_states is None


def test_the_representation_loss_pulls_features_towards_the_targets():
    rows = 32
    split = EncodedSplit(
        input_ids=tuple(tuple(int(t) for t in _pair_inputs(1, seed=i)["input_ids"][0]) for i in range(rows)),
        token_type_ids=tuple((0,) * 4 + (1,) * 7 for _ in range(rows)),
        labels=tuple(i % 2 for i in range(rows)),
    )
    targets = torch.randn(rows, 12, generator=torch.Generator().manual_seed(1))
    logits = torch.zeros(rows, 2)

    def distance(model: CNNClassifier) -> float:
        from latencysolver.data.batches import collate

        batch = collate(split, list(range(rows)))
        with torch.no_grad():
            features = model(**batch.inputs, output_hidden_states=True).hidden_states[-1]
        return float((1 - torch.nn.functional.cosine_similarity(features, targets, dim=-1)).mean())

    config = TrainConfig(steps=60, batch_size=8, learning_rate=1e-2, warmup_ratio=0.0, weight_decay=0.0)
    model = _pair(representation_dim=12)
    before = distance(model)
    distill(model, split, logits, config, 2.0, 0.5, progress=False, representations=targets, representation_weight=1.0)
    untrained = _pair(representation_dim=12)
    distill(untrained, split, logits, config, 2.0, 0.5, progress=False)  # the same run without the term
    assert distance(model) < before - 0.2 and distance(model) < distance(untrained) - 0.2
    with pytest.raises(ValueError, match="representation of every train row"):
        distill(model, split, logits, config, 2.0, 0.5, progress=False, representation_weight=1.0)


def test_teacher_representations_are_the_first_tokens_last_hidden_state_and_cached(tmp_path, tiny_model_dir):
    from latencysolver.data.batches import collate
    from latencysolver.models.loading import load_classifier

    model = load_classifier(str(tiny_model_dir)).eval()
    split = EncodedSplit(input_ids=((1, 5, 6, 2), (1, 7, 2)), token_type_ids=None, labels=(0, 1))
    teacher = Teacher(path=tiny_model_dir, key="k", model=model, train_logits=torch.zeros(2, 2))
    reps = teacher_representations(teacher, split, tmp_path, "f", pad_id=0, progress=False, device=torch.device("cpu"))
    with torch.inference_mode():
        row = collate(split, [1]).inputs
        expected = model(**row, output_hidden_states=True).hidden_states[-1][0, 0]
    torch.testing.assert_close(reps[1], expected)
    assert (tmp_path / "representations" / "k-f.pt").is_file()
    teacher.model.forward = None  # type: ignore[assignment]  # a second call must read the cache, not run it
    again = teacher_representations(teacher, split, tmp_path, "f", pad_id=0, progress=False, device=torch.device("cpu"))
    torch.testing.assert_close(again, reps)


def test_a_pair_aware_cnn_study_with_the_representation_loss_runs_and_exports(study_yaml, tmp_path):
    from latencysolver import load
    from tests.conftest import export_cli

    space = {"architecture": "cnn", "quant_dtype": "fp32", "temperature": 2.0, "alpha": 0.5}
    cnn = {"embed_dim": 16, "channels": 8, "kernel_sizes": [3], "pair_aware": True, "representation_weight": 1.0}
    path = study_yaml(
        search_space=space,
        cnn=cnn,
        cnn_distillation={"steps": 4, "batch_size": 8},
        n_trials=1,
        early_stop={"after": None},
    )
    config = load_study_config(path)
    study = run_study(config, RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=lambda _: None)
    (trial,) = study.get_trials()
    assert trial_record(trial).distill_steps == 4
    assert list((tmp_path / "cache" / "representations").glob("*.pt"))  # computed once, cached
    out = tmp_path / "export"
    assert export_cli(config.storage, "0", str(out), "--no-progress") == 0
    clf = load(out)
    assert clf.model.config.pair_aware and clf.model.config.representation_dim > 0
    with pytest.raises(ConfigError, match="representation_weight must be >= 0"):
        load_study_config(study_yaml(cnn={"representation_weight": -1}))
