"""Any text classification data (issue 19, item 4): ``data.columns`` and ``data.labels``, single texts and more
than two classes, end to end through a study, its export, ``predict`` and ``latencysolver.load``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from latencysolver import load
from latencysolver.cache import content_hash
from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.data.text import Columns, load_data
from latencysolver.errors import ConfigError, DataError
from latencysolver.results.records import study_record, trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.training.evaluate import scores
from tests.conftest import export_cli, write_study_yaml

COLOURS = ("red", "green", "blue")
COLUMNS = {"text": "sentence", "text_pair": None, "label": "colour"}


def write_colours(folder: Path, rows: dict[str, int], seed: int = 0) -> Path:
    """A learnable 3-class single-text set: the sentence names its colour; the label is the colour's name."""
    rng = random.Random(seed)
    words = ["river", "city", "music", "science", "history", "movie", "island", "law"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in rows.items():
        with open(folder / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                colour = COLOURS[i % 3] if split == "train" else rng.choice(COLOURS)
                filler = " ".join(rng.choices(words, k=rng.randint(2, 10)))
                fh.write(json.dumps({"sentence": f"the {colour} {filler}", "colour": colour, "id": i}) + "\n")
    return folder


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    return write_colours(tmp_path_factory.mktemp("colours"), {"train": 60, "validation": 30, "test": 30})


def test_columns_and_string_labels(colours):
    data = load_data(str(colours), columns=Columns(**COLUMNS))
    assert data.label_names == ("blue", "green", "red")  # sorted names of the train split
    assert data.train.text_pair is None and data.train.text[0].startswith("the red")
    assert data.train.label[:3] == (2, 1, 0)
    given = load_data(str(colours), columns=Columns(**COLUMNS), labels=COLOURS)  # the order of data.labels
    assert given.label_names == COLOURS and given.train.label[:3] == (0, 1, 2)
    assert data.train.fingerprint() != given.train.fingerprint()  # another class order is other data


def test_boolq_keeps_its_fingerprint(synthetic_data_dir):
    """BoolQ's columns hash as before data.columns existed, so existing studies stay bound to their data."""
    rows = [json.loads(line) for line in (synthetic_data_dir / "train.jsonl").read_text().splitlines()]
    split = load_data(str(synthetic_data_dir)).train
    expected = content_hash(
        tuple(r["question"] for r in rows),
        tuple(r["passage"] for r in rows),
        tuple(r["title"] for r in rows),
        tuple(bool(r["label"]) for r in rows),
    )
    assert split.fingerprint() == expected


@pytest.mark.parametrize(
    "columns, labels, needles",
    [
        ({**COLUMNS, "text": "text"}, None, ["train.jsonl", "no 'text' column", "data.columns.text"]),
        ({**COLUMNS, "label": "label"}, None, ["train.jsonl", "no 'label' column", "data.columns.label"]),
        (COLUMNS, ("red", "green"), ["row 3", "column 'colour'", "data.labels ['red', 'green']", "got 'blue'"]),
    ],
)
def test_a_bad_mapping_is_one_line_naming_file_column_and_value(colours, columns, labels, needles):
    with pytest.raises(DataError) as info:
        load_data(str(colours), columns=Columns(**columns), labels=labels)
    message = str(info.value)
    assert "\n" not in message and str(colours) in message
    for needle in needles:
        assert needle in message, message


def test_bad_columns_in_the_yaml_name_the_key(study_yaml):
    with pytest.raises(ConfigError) as info:
        load_study_config(study_yaml(data={"source": "x", "columns": {"text": "a", "label": "a"}}))
    assert info.value.key == "data.columns.label"
    with pytest.raises(ConfigError) as info:
        load_study_config(study_yaml(data={"source": "x", "labels": ["yes"]}))
    assert info.value.key == "data.labels"


@pytest.mark.parametrize(
    "columns, expected",
    [
        ({"text": "sentence", "label": "colour"}, ("sentence", None, "colour")),  # names text: single text
        ({"text": "sentence", "text_pair": None, "label": "colour"}, ("sentence", None, "colour")),
        ({"text": "question", "text_pair": "passage"}, ("question", "passage", "label")),
        ({"label": "answer"}, ("question", "passage", "answer")),  # text not named: BoolQ's pair
        (None, ("question", "passage", "label")),  # no columns at all: BoolQ's
    ],
    ids=["text-only", "text-pair-null", "explicit-pair", "label-only", "absent"],
)
def test_a_columns_mapping_without_text_pair_is_single_text(study_yaml, colours, columns, expected):
    """``columns: {text: review, label: stars}`` inherited BoolQ's ``passage`` as the pair, and the data then
    failed with "has no 'passage' column"; a stored config (every key written) reads back the same."""
    from latencysolver.config.study import config_from_dict, config_to_dict
    from latencysolver.data.text import configured

    data = {"source": str(colours), "max_length": 32, **({"columns": columns} if columns is not None else {})}
    config = load_study_config(study_yaml(data=data))
    c = config.data.columns
    assert (c.text, c.text_pair, c.label) == expected
    assert config_from_dict(config_to_dict(config), "stored") == config
    if expected[0] == "sentence":
        loaded = configured(config.data)
        assert loaded.train.text_pair is None and loaded.label_names == ("blue", "green", "red")


def test_macro_f1_for_three_classes():
    logits = torch.eye(3)[[0, 0, 1, 2, 2, 2]]  # predictions 0 0 1 2 2 2
    labels = (0, 1, 1, 2, 2, 0)
    # per class: 0: tp 1 fp 1 fn 1 → 0.5; 1: tp 1 fp 0 fn 1 → 2/3; 2: tp 2 fp 1 fn 0 → 0.8
    result = scores(logits, labels)
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.f1 == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)


def test_a_three_class_single_text_study_runs_exports_and_predicts(colours, tiny_model_dir, tmp_path, capsys):
    data = {"source": str(colours), "max_length": 32, "columns": COLUMNS, "labels": list(COLOURS)}
    space = {"prune_ratio": 0.0, "quant_dtype": "fp32", "skip_prob": 0.0, "rank": "off"}
    path = write_study_yaml(
        tmp_path,
        tiny_model_dir,
        colours,
        data=data,
        search_space=space,
        n_trials=1,
        teacher={"epochs": 4, "batch_size": 16, "learning_rate": 1.0e-2},
    )
    config = load_study_config(path)
    study = run_study(config, RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=lambda _: None)
    record = study_record(study)
    assert (
        record.data.majority_rate
        == load_data(str(colours), columns=Columns(**COLUMNS), labels=COLOURS).validation.majority_rate()
    )
    (trial,) = study.get_trials()
    assert 0.0 <= trial.values[0] <= 1.0 and trial_record(trial).f1 is not None
    out = tmp_path / "export"
    assert export_cli(config.storage, "0", str(out), "--no-progress") == 0

    card = (out / "README.md").read_text()
    assert card.startswith("# 3-class text classifier (red, green, blue)") and "| validation F1 (macro) |" in card
    assert "BoolQ" not in card and '--text "a text"' in card and "--text-pair" not in card
    clf = load(out)
    assert clf.labels == COLOURS
    rows = [json.loads(line) for line in (colours / "test.jsonl").read_text().splitlines()]
    predictions = clf.predict([r["sentence"] for r in rows])
    assert {p.label for p in predictions} <= set(COLOURS)
    assert all(p.label == COLOURS[p.index] for p in predictions)

    capsys.readouterr()
    assert main(["predict", str(out), "--text", rows[0]["sentence"]]) == 0
    assert capsys.readouterr().out.strip().startswith(predictions[0].label + " (p=")

    preds = tmp_path / "preds.jsonl"
    assert main(["predict", str(out), "--input", str(colours / "test.jsonl"), "--output", str(preds)]) == 0
    written = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [w["label"] for w in written] == [p.label for p in predictions]
    assert [w["index"] for w in written] == [p.index for p in predictions]
    correct = sum(p.label == r["colour"] for p, r in zip(predictions, rows, strict=True))
    summary = capsys.readouterr().out
    assert f"accuracy {correct / len(rows):.3f} on the {len(rows)} labelled rows" in summary

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sentence": "the red law", "colour": "purple"}) + "\n")
    assert main(["predict", str(out), "--input", str(bad)]) == 1
    assert "'colour' must be one of ['red', 'green', 'blue']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # single texts only: a usage error
        main(["predict", str(out), "--text", "the red law", "--text-pair", "x"])
    assert usage.value.code == 2 and "this export reads single texts ('sentence')" in capsys.readouterr().err


@pytest.mark.parametrize("labels", [("yes", "no"), ("True", "False"), ("1", "0"), ("positive", "negative")])
def test_class_names_that_invert_true_false_labels_are_refused(synthetic_data_dir, labels):
    """True/false labels are indices 1/0 into data.labels: ``[yes, no]`` would call every true row "no", and
    every export would answer the opposite word at the same accuracy."""
    with pytest.raises(DataError) as info:
        load_data(str(synthetic_data_dir), labels=labels)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{synthetic_data_dir / 'train.jsonl'}: "), message
    assert f"data.labels {list(labels)}" in message and "column 'label' holds true/false" in message, message
    assert f"data.labels: [{labels[1]}, {labels[0]}]" in message, message


@pytest.mark.parametrize("labels", [("no", "yes"), ("negative", "positive"), ("different", "duplicate")])
def test_class_names_in_false_true_order_follow_the_booleans(synthetic_data_dir, labels):
    data = load_data(str(synthetic_data_dir), labels=labels)
    rows = [json.loads(line) for line in (synthetic_data_dir / "train.jsonl").read_text().splitlines()]
    assert data.label_names == labels
    assert [data.label_names[k] for k in data.train.label] == [labels[int(r["label"])] for r in rows]
