"""benchmarks/boolq_pareto.py end to end on the tiny fixtures, and its 2-D hypervolume on hand-made fronts."""

from __future__ import annotations

import importlib.util
import json
import sys

import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta

from latencysolver.config.study import load_study_config
from latencysolver.data.batches import encode_split
from latencysolver.data.boolq import load_boolq
from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.models.student import load_student
from latencysolver.results.front import feasible_trials
from latencysolver.results.records import study_record, trial_record
from latencysolver.results.storage import artifact_store_of
from latencysolver.training.evaluate import predict_logits, scores
from tests.conftest import REPO


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("boolq_pareto", REPO / "benchmarks" / "boolq_pareto.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def test_hypervolume_of_a_hand_made_front():
    # reference (0.5, 1): a staircase; sliced by speed-up, y in [1, 2] is 0.3 wide, [2, 4] 0.2, [4, 6] 0.1:
    # 0.3*1 + 0.2*2 + 0.1*2 = 0.9
    points = [(0.8, 2.0), (0.7, 4.0), (0.6, 6.0)]
    assert bench.hypervolume(points, (0.5, 1.0)) == pytest.approx(0.9)
    # a dominated point and points at or below the reference change nothing
    assert bench.hypervolume(points + [(0.65, 3.0), (0.5, 9.0), (0.9, 1.0)], (0.5, 1.0)) == pytest.approx(0.9)
    assert bench.hypervolume([(0.9, 3.0)], (0.5, 1.0)) == pytest.approx(0.8)
    assert bench.hypervolume([], (0.5, 1.0)) == 0.0


def _accuracy(model, split, pad_id):
    return scores(predict_logits(model, split, pad_id=pad_id, progress=False), split.labels).accuracy


def test_benchmark_end_to_end(tmp_path, tiny_model_dir, synthetic_data_dir, study_yaml):
    path = study_yaml(
        n_trials=2,
        sampler={"name": "tpe", "seed": 0},
        search_space={
            "prune_ratio": {"choices": [0.0, 0.5]},
            "prune_kind": "structured",
            "quant_dtype": "ort-int8",  # the student is model.onnx
            "skip_prob": {"choices": [0.0, 0.5]},
            "temperature": {"low": 1.0, "high": 4.0},
            "alpha": {"low": 0.2, "high": 0.8},
        },
        constraints={"min_accuracy": 0.0},
        early_stop={"after": None},
    )
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    results = bench.main(
        [
            "--study",
            str(path),
            "--data",
            str(synthetic_data_dir),
            "--trials",
            "2",
            "--steps",
            "2",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
        ]
    )

    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert [b["setting"] for b in saved["baselines"]] == ["fp32", "ort-fp32", "ort-int8", "int8"]
    assert all(0.0 <= b["test_accuracy"] <= 1.0 for b in saved["baselines"])
    assert (out / "results.md").read_text().count("| trial ") == len(saved["front"])
    assert (out / "front.html").stat().st_size > 0

    # the fp32 teacher's test accuracy, recomputed from the cached teacher and the test split
    config = load_study_config(path, data=str(synthetic_data_dir))
    tokenizer = load_tokenizer(config.model)
    pad_id = tokenizer.pad_token_id or 0
    test = encode_split(load_boolq(str(synthetic_data_dir)).test, tokenizer, config.data.max_length)
    teacher = load_classifier(saved["teacher"]["path"]).eval()
    assert saved["baselines"][0]["test_accuracy"] == pytest.approx(_accuracy(teacher, test, pad_id))

    # each front trial's test accuracy is what its stored student (loaded back from the artifacts) predicts
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert saved["front"], "the tiny study (no accuracy floor) has a front"
    store = artifact_store_of(study)
    for row in saved["front"]:
        trial = study.trials[row["trial"]]
        folder = tmp_path / f"trial-{trial.number}"
        folder.mkdir()
        for meta in get_all_artifact_meta(trial, storage=storage):
            download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(folder / meta.filename))
        student = load_student(folder, threads=1)
        assert row["test_accuracy"] == pytest.approx(_accuracy(student.model, test, pad_id))
        assert row["val_accuracy"] == trial.values[0] and row["speedup"] == trial_record(trial).speedup

    # the random study: same budget, RandomSampler, same storage; hypervolumes as the function computes them
    random_study = optuna.load_study(study_name="tiny-random", storage=storage)
    assert len(random_study.trials) == len(study.trials) == 2
    assert study_record(random_study).config["sampler"]["name"] == "random"
    assert study_record(study).config["sampler"]["name"] == "tpe"
    ref = saved["hypervolume"]["reference_point"]
    for s, key in ((study, "main"), (random_study, "random")):
        points = [(t.values[0], t.values[1]) for t in feasible_trials(s)]
        assert saved["hypervolume"][key] == pytest.approx(bench.hypervolume(points, (ref["accuracy"], ref["speedup"])))
    assert [t["met"] for t in saved["targets"]][3] is True  # seconds, not hours
