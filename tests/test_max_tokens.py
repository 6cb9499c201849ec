"""Issue 18, item 5: ``max_tokens``, the sequence length the student reads, as a knob."""

from __future__ import annotations

import json

import pytest

import latencysolver
import latencysolver.latency.stability as stability
from latencysolver.cli import main
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import load_study_config
from latencysolver.data.batches import collate, encode_pairs, truncate, truncate_inputs
from latencysolver.data.text import load_data
from latencysolver.errors import ConfigError
from latencysolver.models.loading import load_tokenizer
from latencysolver.results.records import trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from tests.conftest import export_cli, write_study_yaml


def test_cutting_encoded_rows_equals_encoding_them_shorter(tiny_model_dir, synthetic_data_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    split = load_data(str(synthetic_data_dir)).validation
    full = encode_pairs(tokenizer, split.text, split.text_pair, 64, labels=split.label)
    short = encode_pairs(tokenizer, split.text, split.text_pair, 16, labels=split.label)
    assert max(full.lengths()) > 16  # the synthetic passages are longer: the cut is exercised
    assert truncate(full, 16) == short  # question whole, passage cut, closing separator kept
    # a batch of one, as the latency rows are: the same cut on tensors
    row = max(range(len(full)), key=lambda i: full.lengths()[i])
    cut = truncate_inputs(collate(full, [row]).inputs, 16)
    assert cut["input_ids"][0].tolist() == list(short.input_ids[row])
    assert cut["attention_mask"].shape == (1, 16)
    assert truncate_inputs(collate(short, [row]).inputs, 16)["input_ids"].shape == (1, 16)  # short rows untouched


def test_the_knob_reads_and_refuses_like_the_others(study_yaml):
    assert Recipe(max_tokens=96).describe().endswith("tokens=96")
    assert Recipe.from_dict(Recipe(max_tokens=64).to_dict()).max_tokens == 64
    assert Recipe.from_dict({"prune_ratio": 0.1}).max_tokens is None  # recipes stored before the knob
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 16"):
        Recipe(max_tokens=8)
    config = load_study_config(study_yaml(search_space={"max_tokens": {"choices": ["full", 32]}}))
    assert config.search_space.max_tokens.values == ("full", 32)
    with pytest.raises(ConfigError, match=r"max_tokens 128 is above data.max_length 64"):
        load_study_config(study_yaml(search_space={"max_tokens": {"choices": [32, 128]}}))


def test_a_max_tokens_trial_reads_fewer_tokens_everywhere_and_its_export_too(
    tmp_path, tiny_model_dir, synthetic_data_dir, monkeypatch
):
    monkeypatch.setenv("LATENCYSOLVER_CACHE", str(tmp_path / "cache"))
    widths: dict[str, set[int]] = {"student": set(), "teacher": set()}
    real = stability.measure_paired

    def spy(model, reference, inputs, config, reference_inputs=None):
        widths["student"] |= {x["input_ids"].shape[1] for x in inputs}
        widths["teacher"] |= {x["input_ids"].shape[1] for x in reference_inputs or inputs}
        return real(model, reference, inputs, config, reference_inputs)

    monkeypatch.setattr(stability, "measure_paired", spy)
    path = write_study_yaml(
        tmp_path,
        tiny_model_dir,
        synthetic_data_dir,
        n_trials=1,
        search_space={"quant_dtype": "fp32", "max_tokens": 16},
        constraints={"min_accuracy": 0.0},
        early_stop={"after": None},
    )
    config = load_study_config(path)
    study = run_study(config, RunOptions(progress=False), log=lambda _: None)
    (trial,) = study.get_trials()
    assert trial_record(trial).recipe.max_tokens == 16
    assert max(widths["student"]) <= 16 < max(widths["teacher"])  # the teacher is timed at the full length
    out = tmp_path / "export"
    assert export_cli(config.storage, "0", out) == 0
    assert json.loads((out / "student.json").read_text())["max_length"] == 16
    clf = latencysolver.load(out)
    assert clf.max_length == 16
    # load() cuts the same way the trial did: it gives the trial's own validation answers back
    split = load_data(str(synthetic_data_dir)).validation
    answers = clf.logits(list(split.text), list(split.text_pair)).argmax(dim=-1).tolist()
    assert answers == json.loads((out / "predictions.json").read_text())["predictions"]
    assert (
        main(["predict", str(out), "--question", "is the river fact real", "--passage", "the river fact is true"]) == 0
    )
