"""latencysolver predict: one question, or a JSON-lines file (one prediction per row, in order, as
``latencysolver.load(...).predict`` answers); bad input is one FILE:LINE error, exit 1, and no output file."""

from __future__ import annotations

import json
import re

import pytest

from latencysolver import load
from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from tests.conftest import export_cli, write_study_yaml, write_synthetic_boolq

# the data and teacher of tests/test_export.py, and its cache folder: one teacher fine-tune per session
TEACHER = {"epochs": 6, "batch_size": 16, "learning_rate": 1.0e-2}
ROWS = {"train": 64, "validation": 40, "test": 32}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    """A one-trial study (torch fp32 student), exported through the CLI; and the synthetic data folder."""
    folder = tmp_path_factory.mktemp("predict-study")
    data = write_synthetic_boolq(folder / "data", ROWS, seed=3)
    space = {
        "prune_ratio": 0.0,
        "quant_dtype": "fp32",
        "skip_prob": 0.0,
        "rank": "off",
        "temperature": 2.0,
        "alpha": 0.5,
    }
    config = load_study_config(
        write_study_yaml(folder, tiny_model_dir, data, search_space=space, n_trials=1, teacher=TEACHER)
    )
    cache = str(tmp_path_factory.getbasetemp() / "export-predict-cache")
    run_study(config, RunOptions(cache_dir=cache, progress=False), log=lambda _: None)
    out = folder / "export"
    assert export_cli(config.storage, "0", str(out), "--no-progress") == 0
    return out, data


def input_rows(data, n: int = 12) -> list[dict]:
    """Test rows with extra keys; ids on every other row, labels on all."""
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()][:n]
    for i, row in enumerate(rows):
        if i % 2 == 0:
            row["id"] = f"q{i}"
        row["extra"] = {"anything": [1, 2]}
    return rows


def write_jsonl(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_jsonl_gets_one_prediction_per_row_in_order(exported, tmp_path, capsys):
    out, data = exported
    rows = input_rows(data)
    source, target = tmp_path / "rows.jsonl", tmp_path / "preds.jsonl"
    # a blank line is skipped, and line numbers stay those of the file
    write_jsonl(source, [*rows[:5], "", *rows[5:]])
    capsys.readouterr()
    assert (
        main(
            ["predict", str(out), "--input", str(source), "--output", str(target), "--batch-size", "5", "--no-progress"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    preds = [json.loads(line) for line in target.read_text().splitlines()]
    expected = load(out).predict([r["question"] for r in rows], [r["passage"] for r in rows])
    assert len(preds) == len(rows)
    assert [p["line"] for p in preds] == [*range(1, 6), *range(7, len(rows) + 2)]
    assert [p["id"] for p in preds] == [r.get("id") for r in rows]
    assert [p["label"] for p in preds] == [e.answer for e in expected]
    assert [p["answer"] for p in preds] == ["yes" if e.answer else "no" for e in expected]
    assert [p["probability"] for p in preds] == pytest.approx([e.probability for e in expected], abs=1e-5)
    assert all(set(p) == {"line", "id", "answer", "label", "probability"} for p in preds)
    assert {p["answer"] for p in preds} == {"yes", "no"}  # the model answers both ways
    accuracy = sum(p["label"] == r["label"] for p, r in zip(preds, rows, strict=True)) / len(rows)
    assert f"accuracy {accuracy:.3f} on the {len(rows)} labelled rows" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl", "rows.jsonl"]  # no temp file left


def test_jsonl_without_output_prints_to_stdout(exported, tmp_path, capsys):
    out, data = exported
    rows = [{k: v for k, v in r.items() if k != "label"} for r in input_rows(data, 4)]  # no labels: no accuracy
    source = tmp_path / "rows.jsonl"
    write_jsonl(source, rows)
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(source)]) == 0
    captured = capsys.readouterr()
    preds = [json.loads(line) for line in captured.out.splitlines()]
    assert [p["line"] for p in preds] == [1, 2, 3, 4]
    assert "predicted 4 rows" in captured.err and "accuracy" not in captured.err


def test_single_question_prints_answer_and_probability(exported, capsys):
    out, data = exported
    row = input_rows(data, 1)[0]
    capsys.readouterr()
    assert main(["predict", str(out), "--question", row["question"], "--passage", row["passage"]]) == 0
    printed = capsys.readouterr().out.strip()
    match = re.fullmatch(r"(yes|no) \(p=(0\.\d{3}|1\.000)\)", printed)
    assert match, printed
    expected = load(out).predict([row["question"]], [row["passage"]])[0]
    assert match.group(1) == ("yes" if expected.answer else "no")
    assert float(match.group(2)) == pytest.approx(expected.probability, abs=5e-4)
    assert float(match.group(2)) >= 0.5  # the probability of the answer given


@pytest.mark.parametrize(
    "bad_line, bad, expected",
    [
        (3, '{"question": "is it", "passage": "the river fact is true"', r":3: not JSON"),
        (2, {"question": "is it"}, r":2: missing 'passage'"),
        (2, {"question": 7, "passage": "x"}, r":2: 'question' must be a string, got 7"),
        (3, {"question": "is it", "passage": "   "}, r":3: 'passage' is empty"),
        (2, ["is it", "yes"], r":2: expected a JSON object"),
        (3, {"question": "is it", "passage": "x", "label": "maybe"}, r":3: 'label' must be true/false or 0/1"),
    ],
)
def test_bad_row_is_one_line_exit_1_and_no_output(exported, tmp_path, capsys, bad_line, bad, expected):
    out, data = exported
    rows = input_rows(data, 4)
    rows[bad_line - 1] = bad
    source, target = tmp_path / "rows.jsonl", tmp_path / "preds.jsonl"
    write_jsonl(source, rows)
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(source), "--output", str(target)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"latencysolver: error: {source}:{bad_line}: "), err
    assert re.search(expected, err[0]), err[0]
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # no output, no temp file


@pytest.mark.parametrize("how", ["same path", "another spelling", "symlink", "hard link"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(exported, tmp_path, capsys, monkeypatch, how):
    import hashlib
    import os

    out, data = exported
    source = tmp_path / "rows.jsonl"
    write_jsonl(source, input_rows(data, 4))
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    target = {"same path": source, "another spelling": tmp_path / "." / "sub" / ".." / "rows.jsonl"}.get(how)
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        target = tmp_path / "sub" / "preds.jsonl"
        target.symlink_to(source)
    elif how == "hard link":
        target = tmp_path / "sub" / "preds.jsonl"
        os.link(source, target)
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(source), "--output", str(target), "--no-progress"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"latencysolver: error: --output {str(target)!r}: "), err
    assert f"the same file as --input {str(source)!r}" in err[0]
    assert captured.out == ""
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["rows.jsonl", "sub", *(["preds.jsonl"] if how in ("symlink", "hard link") else [])]
    )  # no temporary file left


def test_missing_or_non_export_folder_is_one_line(exported, tmp_path, capsys):
    _, data = exported
    for folder, expected in ((tmp_path / "nope", "no such folder"), (data, "not a latencysolver export")):
        capsys.readouterr()
        assert main(["predict", str(folder), "--question", "q", "--passage", "p"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize(
    "args",
    [
        ["--question", "is it"],  # no passage
        ["--question", "is it", "--passage", "p", "--input", "rows.jsonl"],  # both modes
        [],  # neither mode
        ["--input", "rows.jsonl", "--passage", "p"],
        ["--question", "q", "--passage", "p", "--output", "x.jsonl"],
    ],
)
def test_usage_errors_are_argparse_errors(exported, args, capsys):
    out, _ = exported
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(out), *args])
    assert exc.value.code == 2
    assert "usage: latencysolver predict" in capsys.readouterr().err


def test_an_ort_export_predicts_too(tmp_path, exported):
    """predict goes through latencysolver.load, so an onnxruntime export works the same (its model.onnx)."""
    out, data = exported
    student = json.loads((out / "student.json").read_text())
    assert student["recipe"]["quant_dtype"] == "fp32" and (out / "model.onnx").is_file()
    ort = tmp_path / "ort"
    ort.mkdir()
    for path in out.iterdir():
        (ort / path.name).write_bytes(path.read_bytes())
    student["recipe"]["quant_dtype"] = "ort-fp32"  # the exported fp32 graph, now run by onnxruntime
    (ort / "student.json").write_text(json.dumps(student))
    rows = input_rows(data, 8)
    torch_answers = [p.answer for p in load(out).predict([r["question"] for r in rows], [r["passage"] for r in rows])]
    assert type(load(ort).model).__name__ == "OnnxClassifier"
    source, target = tmp_path / "rows.jsonl", tmp_path / "preds.jsonl"
    write_jsonl(source, rows)
    assert main(["predict", str(ort), "--input", str(source), "--output", str(target)]) == 0
    assert [json.loads(line)["label"] for line in target.read_text().splitlines()] == torch_answers


@pytest.mark.parametrize(
    "bad, expected",
    [
        ('{"question": ' + "[" * 100_000 + "]" * 100_000 + ', "passage": "x"}', r":2: nested too deeply"),
        ('{"question": "x", "passage": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}", r":2: nested too deeply"),
    ],
    ids=["lists", "objects"],
)
def test_deeply_nested_line_is_named_by_file_and_line(tmp_path, bad, expected):
    # issue 16: a RecursionError of 3,000 lines; the FILE:LINE message was never reached
    from latencysolver.errors import DataError
    from latencysolver.ship.predict import read_rows

    source = tmp_path / "rows.jsonl"
    source.write_text('{"question": "q", "passage": "p"}\n' + bad + "\n")
    with pytest.raises(DataError) as info:
        read_rows(source)
    message = str(info.value)
    assert message.startswith(f"{source}:2: ") and "\n" not in message and len(message) < 200, message[:300]
    assert re.search(expected, message), message


def copy_export(out, target):
    target.mkdir()
    for path in out.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("recorded", [True, False], ids=["fingerprint", "older-export"])
def test_an_export_without_its_tokenizer_is_refused_in_one_line(exported, tmp_path, capsys, recorded):
    """Issue 16: with tokenizer*.json deleted, AutoTokenizer built a 5-token vocabulary and predict still answered.

    An export records its tokenizer's size and hash; one made before has the size checked against config.json.
    """
    from latencysolver.errors import ModelError
    from latencysolver.ship.bench import load_target

    out, _ = exported
    broken = copy_export(out, tmp_path / "no-tokenizer")
    student = json.loads((broken / "student.json").read_text())
    assert student["tokenizer"]["vocab_size"] == len(load(out).tokenizer.get_vocab())
    if not recorded:
        del student["tokenizer"]
        (broken / "student.json").write_text(json.dumps(student))
        assert load(broken).predict(["is it"], ["it is true"])  # an intact older export still loads
    deleted = [p.name for p in broken.glob("tokenizer*.json")]
    assert deleted
    for name in deleted:
        (broken / name).unlink()
    with pytest.raises(ModelError, match="tokenizer"):
        load(broken)
    with pytest.raises(ModelError, match="tokenizer"):
        load_target(str(broken))
    capsys.readouterr()
    assert main(["predict", str(broken), "--question", "is the river fact real", "--passage", "it is true"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(broken) in err[0] and "tokenizer" in err[0], err
    assert "Traceback" not in captured.err and captured.out == ""


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_json(path, change):
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


CORRUPTIONS = {
    "truncated-weights": ("model.safetensors", lambda f: _truncate(f / "model.safetensors")),
    "student-json-not-json": ("student.json", lambda f: (f / "student.json").write_text('{"recipe": {')),
    "student-json-a-list": ("student.json", lambda f: (f / "student.json").write_text("[1, 2]")),
    "student-json-no-recipe": ("student.json", lambda f: _edit_json(f / "student.json", lambda s: s.pop("recipe"))),
    "student-json-no-low-rank": (
        "student.json",
        lambda f: _edit_json(f / "student.json", lambda s: s.pop("low_rank")),
    ),
    "student-json-bad-recipe": (
        "student.json",
        lambda f: _edit_json(f / "student.json", lambda s: s["recipe"].update(quant_dtype="int4")),
    ),
    "student-json-bad-max-length": (
        "student.json",
        lambda f: _edit_json(f / "student.json", lambda s: s.update(max_length="long")),
    ),
    "config-json-not-json": ("config.json", lambda f: (f / "config.json").write_text("{")),
    "tokenizer-json-not-json": ("tokenizer.json", lambda f: (f / "tokenizer.json").write_text("{")),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("command", ["predict", "bench"])
def test_a_corrupted_export_is_one_line_naming_the_file(exported, tmp_path, capsys, corruption, command):
    """Issue 16: truncated weights, a malformed student.json: exit 1, one line naming the file, no traceback."""
    from latencysolver.errors import ModelError

    out, data = exported
    name, corrupt = CORRUPTIONS[corruption]
    broken = copy_export(out, tmp_path / "broken")
    corrupt(broken)
    with pytest.raises(ModelError, match=re.escape(str(broken / name))):
        load(broken)
    capsys.readouterr()
    args = (
        ["predict", str(broken), "--question", "is the river fact real", "--passage", "it is true"]
        if command == "predict"
        else ["bench", str(broken), "--data", str(data), "--rows", "2", "--warmup", "0", "--repeats", "1"]
    )
    assert main(args) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(broken / name) in err[0], err
    assert "Traceback" not in captured.err


LONG_NAME = "a-folder-name-longer-than-a-message-shows-of-other-values-" * 2


def test_a_long_missing_input_file_is_named_whole(tmp_path):
    from latencysolver.errors import DataError
    from latencysolver.ship.predict import read_rows

    missing = tmp_path / LONG_NAME / "rows.jsonl"
    with pytest.raises(DataError) as info:
        read_rows(missing)
    assert str(info.value) == f"--input {str(missing)!r}: no such file"


def test_a_long_missing_teacher_folder_is_named_whole(tmp_path):
    from latencysolver.errors import ModelError
    from latencysolver.models.teacher import given_teacher_key

    missing = str(tmp_path / LONG_NAME / "teacher")
    with pytest.raises(ModelError) as info:
        given_teacher_key(missing)
    assert str(info.value) == f"--teacher: not a folder: {missing!r}"
