"""benchmarks/pareto.py end to end on the tiny fixtures, its baseline table, and its targets."""

from __future__ import annotations

import json
import sys

import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta

from latencysolver.config.knobs import KNOB
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import load_study_config
from latencysolver.data.batches import encode_split
from latencysolver.data.text import load_data
from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.models.student import load_student
from latencysolver.results.front import feasible_trials, hypervolume
from latencysolver.results.records import study_record, trial_record
from latencysolver.results.storage import artifact_store_of
from latencysolver.stats import wilson_interval
from latencysolver.training.evaluate import predict_logits, scores
from tests.conftest import load_benchmark

bench = load_benchmark("pareto")
measure, targets = sys.modules["pareto_measure"], sys.modules["pareto_targets"]  # its helpers, loaded by it


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
            "--config",
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
            "--retrain",
            "3",
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
    test = encode_split(load_data(str(synthetic_data_dir)).test, tokenizer, config.data.max_length)
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
    for s, key in ((study, "tpe"), (random_study, "random")):
        points = [(t.values[0], t.values[1]) for t in feasible_trials(s)]
        (arm,) = saved["hypervolume"]["by_sampler"][key]
        assert arm["hypervolume"] == pytest.approx(hypervolume(points, (ref["accuracy"], ref["speedup"])))
    assert saved["targets"][-1]["met"] is True  # seconds, not hours
    # one sampler seed: no spread, so no lead is called either way
    hv_target = saved["targets"][2]
    assert hv_target["met"] is None and "one seed has no spread" in hv_target["detail"]

    # intervals and paired differences, recomputed from the stored predictions
    teacher = saved["baselines"][0]
    assert teacher["val_vs_teacher"] is None
    assert teacher["val_interval"]["estimate"] == pytest.approx(teacher["val_accuracy"])
    labels = load_data(str(synthetic_data_dir)).validation.label
    teacher_predictions = study_record(study).teacher_predictions
    for row in saved["front"]:
        trial = study.trials[row["trial"]]
        folder = tmp_path / f"trial-{trial.number}"
        predicted = json.loads((folder / "predictions.json").read_text())["predictions"]
        correct = [int(p == y) for p, y in zip(predicted, labels, strict=True)]
        teacher_correct = [int(p == y) for p, y in zip(teacher_predictions, labels, strict=True)]
        assert row["val_interval"] == wilson_interval(sum(correct), len(correct)).to_dict()
        vs = row["val_vs_teacher"]
        assert vs["student_only"] == sum(c and not t for c, t in zip(correct, teacher_correct, strict=True))
        assert vs["teacher_only"] == sum(t and not c for c, t in zip(correct, teacher_correct, strict=True))
        assert row["val_vs_ort_int8"] is not None and row["test_vs_teacher"] is not None

    # --retrain 3: each front recipe distilled again in the sibling study, its figures as that trial recorded them
    retrained = {
        t.user_attrs["retrain_of"]: t for t in optuna.load_study(study_name="tiny:retrain", storage=storage).trials
    }
    for row in saved["front"]:
        again = retrained[row["trial"]]
        assert row["retrained"]["steps"] == 3 == again.user_attrs["retrain_steps"]
        assert row["retrained"]["validation"] == again.values[0]
        assert row["retrained"]["test"] == again.user_attrs["test_accuracy"]
    assert "retrained val" in (out / "results.md").read_text()


def test_the_baseline_table_of_a_tiny_teacher(tmp_path, study_yaml, session_cache):
    """The four baselines on the tiny study: settings, scores recomputed from their predictions, and the table."""
    from latencysolver.search.preparation import RunOptions, prepare, scoring_splits

    config = load_study_config(study_yaml())
    options = RunOptions(cache_dir=session_cache, progress=False)
    prepared = prepare(config, options, log=lambda _: None)
    splits, teacher = scoring_splits(prepared, config, options, log=lambda _: None)
    rows = measure.measure_baselines(prepared, splits, config, tmp_path, log=lambda _: None)
    measure.add_statistics(rows, splits)
    assert [r.name for r in rows] == list(measure.BASELINES)
    fp32 = rows[0]
    assert fp32.val_predictions == teacher["validation"] and fp32.test_predictions == teacher["test"]
    assert fp32.val_vs_teacher is None and fp32.val_interval["estimate"] == pytest.approx(fp32.val_accuracy)
    for r in rows[1:]:
        labels = splits["test"].labels
        correct = [int(p == y) for p, y in zip(r.test_predictions, labels, strict=True)]
        assert r.test_accuracy == pytest.approx(sum(correct) / len(correct))
        assert r.test_interval == wilson_interval(sum(correct), len(correct)).to_dict()
        assert r.test_vs_teacher["n"] == len(labels) and r.val_vs_teacher is not None
        assert (r.val_vs_ort_int8 is None) == (r.name == "ORT int8 teacher")
        assert r.speedup > 0 and r.teacher_p50_ms > 0
    results = {
        "study": {"name": "tiny"},
        "data": {"name": "tiny data", "source": "s", "train": 1, "validation": 2, "test": 3},
        "protocol": "p",
        "hardware": "h",
        "date": "d",
        "hypervolume": {"reference_point": {"accuracy": 0.6, "speedup": 1.0}, "by_sampler": {}},
        "targets": [],
        "wall_seconds": 1.0,
        "budget": "b",
        "noise_warning": None,
    }
    text = sys.modules["pareto_report"].markdown(rows, results)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(lines) == 2 + len(rows) and lines[0].startswith("|  | recipe | val acc [95% CI]")
    assert lines[1] == "| --- | --- |" + " ---: |" * 8
    for line, r in zip(lines[2:], rows, strict=True):
        assert line.startswith(f"| {r.name} | ") and f"{r.val_accuracy:.3f} [" in line
    assert "| – |" in lines[2] and "retrained" not in text and text.startswith("# tiny data: latencysolver")


def test_a_random_search_study_is_not_compared_with_itself(study_yaml):
    config = load_study_config(study_yaml(sampler={"name": "random", "seed": 0}))
    args = bench.parse_args(["--sampler-seeds", "0,1"])
    samplers = bench.samplers_of(config, args)
    arms = [bench.seeded(config, s, seed, i == 0) for i, seed in enumerate([0, 1]) for s in samplers]
    assert [a.name for a in arms] == ["tiny", "tiny-seed1"] and {a.sampler.name for a in arms} == {"random"}
    tpe = load_study_config(study_yaml(sampler={"name": "tpe", "seed": 0}))
    names = [bench.seeded(tpe, s, 0, True).name for s in bench.samplers_of(tpe, args)]
    assert names == ["tiny", "tiny-random"]
    assert bench.samplers_of(tpe, bench.parse_args(["--skip-random"])) == ["tpe"]


def _row(name, val, test, speedup, *, vs_teacher=None, vs_int8=None, repeats=None):
    return measure.Row(
        name=name,
        recipe="",
        val_accuracy=val,
        test_accuracy=test,
        p50_ms=1.0,
        speedup=speedup,
        speedup_cv=0.0,
        parameters=1,
        size_bytes=1,
        trial=0,
        val_vs_teacher=vs_teacher,
        val_vs_ort_int8=vs_int8,
        repeats=repeats,
    )


def _paired(student_only, teacher_only, n=500, both_correct=300):
    """A paired comparison on ``n`` rows with the given discordant counts."""
    from latencysolver.stats import paired_difference

    student = [1] * both_correct + [1] * student_only + [0] * teacher_only
    teacher = [1] * both_correct + [0] * student_only + [1] * teacher_only
    rest = n - len(student)
    return paired_difference(student + [0] * rest, teacher + [0] * rest).to_dict()


def test_the_speed_target_needs_speed_a_seed_mean_test_and_a_non_inferiority_bound():
    teacher = _row("fp32 torch teacher", 0.70, 0.66, 1.0)
    tight = _paired(10, 10)  # 4% discordant: bound about -1.2 points, above -2
    wide = _paired(40, 40)  # 16% discordant: bound about -3.5 points
    seeds = {"test": {"n": 3, "mean": 0.645, "sd": 0.01, "min": 0.64, "max": 0.65}}
    # 9x, test from 3 seeds 1.5 points below the teacher, a tight validation difference: met
    met = targets.speed_target([_row("trial 1", 0.70, 0.60, 9.0, vs_teacher=tight, repeats=seeds)], teacher)
    assert met.met is True and "test 0.645 (3 seeds; -1.5 pts)" in met.detail
    # the same with a wide validation interval: not met, and the closest is named with its bound
    wide_row = _row("trial 2", 0.70, 0.66, 9.0, vs_teacher=wide)
    missed = targets.speed_target([wide_row], teacher)
    assert missed.met is False and "closest: trial 2" in missed.detail and "pass --confirm N" in missed.detail
    # the single search-time test accuracy is used without repeats; 7x is too slow whatever the accuracy
    assert targets.speed_target([_row("trial 3", 0.70, 0.66, 7.0, vs_teacher=tight)], teacher).met is False


def test_the_speed_target_judges_repeated_recipes_on_the_pooled_held_out_rows():
    teacher = _row("fp32 torch teacher", 0.70, 0.66, 1.0)
    seeds = {"finished": 3, "test": {"n": 3, "mean": 0.655, "sd": 0.01, "min": 0.645, "max": 0.665}}
    # two-sided 95% over the pooled rows: -1.0 [-3.0, +1.0]; its one-sided 95% bound is -1.0 - 2.0 * 1.645 / 1.960
    pooled = {"estimate": -0.01, "low": -0.03, "high": 0.01, "confidence": 0.95, "method": "seed-pooled-paired-normal"}
    assert targets.one_sided_bound(pooled, 0.95) == pytest.approx(-0.01 - 0.02 * 1.6448536 / 1.9599640, abs=1e-7)
    row = _row("trial 1", 0.70, 0.60, 9.0, vs_teacher=_paired(10, 10), repeats=seeds)
    row.repeats_heldout_vs_teacher = pooled  # bound -2.68: the tight validation bound of one seed no longer counts
    missed = targets.speed_target([row], teacher)
    assert missed.met is False and "held-out bound (3 seeds) -2.7 pts" in missed.detail
    row.repeats_heldout_vs_teacher = {**pooled, "low": -0.02}  # bound -1.84: above -2
    assert targets.speed_target([row], teacher).met is True


def test_the_int8_target_is_faster_and_non_inferior_to_the_ort_int8_teacher():
    int8 = _row("ORT int8 teacher", 0.70, 0.65, 2.5)
    assert targets.int8_target([_row("trial 1", 0.69, 0.6, 3.0, vs_int8=_paired(12, 10))], int8).met is True
    wide = targets.int8_target([_row("trial 1", 0.69, 0.6, 3.0, vs_int8=_paired(40, 45))], int8)
    assert wide.met is False and "comes closest" in wide.detail
    slow = targets.int8_target([_row("trial 1", 0.71, 0.6, 2.0, vs_int8=_paired(10, 5))], int8)
    assert slow.met is False and "no front recipe is faster" in slow.detail


def test_a_hypervolume_lead_smaller_than_the_seed_spread_is_no_lead():
    # TPE 0.50 ± 0.05, random 0.45 ± 0.01 over 3 seeds: the lead 0.05 is not above the sd 0.05
    noisy = targets.hypervolume_target("tpe", [0.45, 0.50, 0.55], [0.44, 0.45, 0.46])
    assert noisy.met is False and "no lead" in noisy.detail
    clear = targets.hypervolume_target("tpe", [0.59, 0.60, 0.61], [0.44, 0.45, 0.46])
    assert clear.met is True
    assert targets.hypervolume_target("tpe", [0.6], [0.4]).met is None


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(prune_ratio=0.3, prune_kind="structured", quant_dtype="ort-int8", skip_prob=0.5, rank=0.5),
        Recipe(prune_ratio=0.5, skip_prob=0.25, skip_mode="stochastic", rank=8, temperature=7.65, alpha=0.82),
        Recipe(architecture="cnn", quant_dtype="int8", temperature=3.0, alpha=0.25),
        Recipe(quant_dtype="int8", max_tokens=128, recovery_steps=150, attention_weight=1.0),
    ],
    ids=["structured", "stochastic", "cnn", "tokens-recovery"],
)
def test_recipes_are_read_back_from_a_description(recipe):
    """--recipes re-runs the recipe a results.json describes, not one with some knobs at their defaults."""
    params = measure.params_from_description(recipe.describe())
    assert Recipe(**{name: KNOB[name].from_yaml(value) for name, value in params.items()}) == recipe


def test_a_knob_the_described_recipe_leaves_inactive_gets_no_param():
    params = measure.params_from_description("prune=0.00 int8 skip=0.00(det) rank=off T=3.01 alpha=0.33")
    assert params["rank"] == "off" and params["temperature"] == 3.01
    assert "prune_kind" not in params and "skip_mode" not in params


def test_recipes_from_a_results_json_run_again_and_get_seed_repeats(
    tmp_path, tiny_model_dir, synthetic_data_dir, study_yaml
):
    path = study_yaml(
        n_trials=2,
        search_space={
            "prune_ratio": {"choices": [0.0, 0.5]},
            "prune_kind": "structured",
            "quant_dtype": {"choices": ["int8", "ort-int8"]},
            "skip_prob": {"choices": [0.0, 0.5]},
            "temperature": {"low": 1.0, "high": 4.0},
            "alpha": {"low": 0.2, "high": 0.8},
        },
        constraints={"min_accuracy": 0.0},
        early_stop={"after": None},
    )
    earlier = tmp_path / "earlier.json"
    earlier.write_text(
        json.dumps(
            {
                "front": [
                    {"name": "trial 4", "recipe": "prune=0.50(str) ort-int8 skip=0.50(det) rank=off T=2.50 alpha=0.40"},
                    {
                        "name": "trial 9",
                        "params": {
                            "prune_ratio": 0.0,
                            "quant_dtype": "int8",
                            "skip_prob": 0.0,
                            "temperature": 1.5,
                            "alpha": 0.7,
                        },
                    },
                ]
            }
        )
    )
    out = tmp_path / "out"
    args = ["--study", str(path), "--data", str(synthetic_data_dir), "--steps", "2", "--out", str(out)]
    results = bench.main([*args, "--cache-dir", str(tmp_path / "cache"), "--recipes", str(earlier), "--confirm", "2"])
    assert results["study"]["name"] == "tiny-recipes"
    front = results["front"]
    assert [row["params"]["temperature"] for row in front] == [2.5, 1.5]  # both recipes, in order, as written
    assert front[0]["params"]["prune_ratio"] == 0.5 and front[1]["params"]["quant_dtype"] == "int8"
    storage = f"sqlite:///{out / 'study.db'}"
    repeats = optuna.load_study(study_name="tiny-recipes:confirm", storage=storage).get_trials()
    assert len(repeats) == 4 and {t.user_attrs["repeat_of"] for t in repeats} == {0, 1}
    for row in front:
        assert row["repeats"]["finished"] == 2
        mine = [t for t in repeats if t.user_attrs["repeat_of"] == row["trial"]]
        mean = sum(t.values[0] for t in mine) / 2
        assert row["repeats"]["validation"]["mean"] == pytest.approx(mean)
        # pooled over seeds against the teacher on the same rows: the mean of the seeds' own differences
        pooled = row["repeats_val_vs_teacher"]
        assert pooled["estimate"] == pytest.approx(mean - results["baselines"][0]["val_accuracy"], abs=1e-6)
        assert pooled["low"] <= pooled["estimate"] <= pooled["high"] and row["repeats_test_vs_teacher"]
        # validation and test rows pooled: 24 + 24 rows, so the mean of the two splits' differences, and the
        # interval narrower than either split's alone (twice the rows)
        held_out, test = row["repeats_heldout_vs_teacher"], row["repeats_test_vs_teacher"]
        assert held_out["estimate"] == pytest.approx((pooled["estimate"] + test["estimate"]) / 2, abs=1e-9)
    assert "seed mean ± sd" in (out / "results.md").read_text()
    assert results["hypervolume"]["by_sampler"] == {}  # no search, no sampler comparison
