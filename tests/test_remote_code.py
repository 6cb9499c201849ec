"""Exports that other tools load (issue 19, item 5): ``transformers`` rebuilds a pruned, a skipped and a low-rank
student with ``trust_remote_code=True``; without it, the config no longer passes for its family's class; plain
onnxruntime with the folder's tokenizer gives the card's ONNX accuracy."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch

from latencysolver.config.study import load_study_config
from latencysolver.models.student import load_fp32_student
from latencysolver.results.records import trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.ship.remote_code import CLASS_NAME, MODELING_FILE
from tests.conftest import export_cli, write_study_yaml

CASES = {  # the knob that changes the student's shape in each export
    "pruned": {"prune_ratio": 0.5, "skip_prob": 0.0, "rank": "off"},
    "skipped": {"prune_ratio": 0.0, "skip_prob": 0.5, "rank": "off"},
    "low-rank": {"prune_ratio": 0.0, "skip_prob": 0.0, "rank": 4},
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_model_dir, synthetic_data_dir, session_cache):
    folder = tmp_path_factory.mktemp("remote-code")
    space = {
        "prune_ratio": {"choices": [0.0, 0.5]},
        "prune_kind": "structured",
        "skip_prob": {"choices": [0.0, 0.5]},
        "rank": {"choices": ["off", 4]},
        "quant_dtype": "fp32",
    }
    config = load_study_config(
        write_study_yaml(folder, tiny_model_dir, synthetic_data_dir, search_space=space, n_trials=len(CASES))
    )
    pinned = optuna.create_study(study_name="tiny", storage=config.storage, directions=["maximize", "maximize"])
    for params in CASES.values():
        pinned.enqueue_trial(params)
    study = run_study(config, RunOptions(cache_dir=session_cache, progress=False), log=lambda _: None)
    outs = {}
    for name, trial in zip(CASES, study.get_trials(), strict=True):
        assert {k: trial_record(trial).recipe_dict[k] for k in CASES[name]} == {
            k: (None if v == "off" else v) for k, v in CASES[name].items()
        }
        out = folder / f"export-{name}"
        assert export_cli(config.storage, str(trial.number), str(out), "--no-progress") == 0
        outs[name] = out
    return outs


def _rows(synthetic_data_dir) -> list[dict]:
    return [json.loads(line) for line in (synthetic_data_dir / "test.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("case", list(CASES))
def test_from_pretrained_with_remote_code_rebuilds_the_student(exports, synthetic_data_dir, case):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = exports[case]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [CLASS_NAME] and (out / MODELING_FILE).is_file()
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    assert type(model).__name__ == CLASS_NAME
    shrunk = {
        "pruned": lambda m: m.bert.encoder.layer[0].attention.self.query.out_features < config["hidden_size"],
        "skipped": lambda m: len(m.bert.encoder.layer) < 2,
        "low-rank": lambda m: hasattr(m.bert.encoder.layer[0].attention.self.query, "down"),
    }
    assert shrunk[case](model)  # the stated change, as transformers built it
    reference = load_fp32_student(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    rows = _rows(synthetic_data_dir)[:16]
    enc = tokenizer([r["question"] for r in rows], [r["passage"] for r in rows], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.allclose(model(**enc).logits, reference(**enc).logits, atol=1e-5)


def test_without_remote_code_the_folder_no_longer_passes_for_bert(exports):
    """transformers 5 would build BertForSequenceClassification and re-initialize every shrunk weight (with only a
    warning): the export's own model type makes it refuse instead."""
    from transformers import AutoModelForSequenceClassification

    config = json.loads((exports["pruned"] / "config.json").read_text())
    assert config["model_type"] == "latencysolver_bert" and config["latencysolver_model_type"] == "bert"
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(exports["pruned"], trust_remote_code=False)


def test_plain_onnxruntime_gives_the_cards_onnx_accuracy(exports, synthetic_data_dir):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    out = exports["pruned"]
    metrics = json.loads((out / "metrics.json").read_text())
    card_accuracy = metrics["onnx"]["test"].get("accuracy", metrics["test"]["accuracy"])
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    tokenizer = AutoTokenizer.from_pretrained(out)
    max_length = json.loads((out / "student.json").read_text())["max_length"]
    rows = _rows(synthetic_data_dir)
    answers = []
    for r in rows:
        enc = tokenizer(
            r["question"], r["passage"], truncation="only_second", max_length=max_length, return_tensors="np"
        )
        (logits,) = session.run(["logits"], {n: enc[n].astype(np.int64) for n in names})
        answers.append(int(logits.argmax(-1)[0]))
    accuracy = np.mean([a == int(r["label"]) for a, r in zip(answers, rows, strict=True)])
    assert accuracy == pytest.approx(card_accuracy)


def test_every_family_compressed_loads_through_remote_code(family, tmp_path):
    """Pruned (heads and neurons), block 0 dropped and factorized, on each family: from_pretrained with the export's
    code gives the student's logits."""
    from transformers import AutoModelForSequenceClassification

    from latencysolver.compression import drop_layers_, factorize_, structured_prune_
    from latencysolver.config.recipe import Recipe
    from latencysolver.models.student import save_student
    from latencysolver.ship.remote_code import write_remote_code
    from tests.test_architectures import tiny_batch, tiny_model

    model = tiny_model(family)
    structured_prune_(model, 0.5)
    drop_layers_(model, [1])
    factorize_(model, 4)
    model.eval()
    save_student(model, Recipe(), (1,), tmp_path)
    write_remote_code(tmp_path, model)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    batch = tiny_batch()
    with torch.inference_mode():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-5)


@pytest.fixture()
def never_asked(monkeypatch):
    """transformers' "Do you wish to run the custom code? [y/N]" (which waits 15 s at a terminal), recorded and
    answered as a closed stdin would be; the list of the questions asked."""
    import transformers.dynamic_module_utils as dynamic

    asked: list[str] = []

    def prompt(question=""):
        asked.append(question)
        raise EOFError("stdin is closed")

    monkeypatch.setattr(dynamic, "TIME_OUT_REMOTE_CODE", 15)  # the prompt, not its CI variant (an error at once)
    monkeypatch.setattr("builtins.input", prompt)
    return asked


BENCH = ["--threads", "1", "--rows", "4", "--warmup", "1", "--repeats", "2", "--batch-size", "0"]


def test_bench_reads_an_export_with_remote_code_without_asking(
    exports, synthetic_data_dir, tmp_path, never_asked, capsys
):
    from latencysolver.cli import main

    out = exports["pruned"]
    data = ["--data", str(synthetic_data_dir), "--cache-dir", str(tmp_path)]
    code = main(["bench", str(out), "--max-length", "48", "--reference", str(out), *data, *BENCH])
    assert (code, never_asked) == (0, [])
    # the export's config is read (as its family's), so --max-length is checked against its 128 positions
    assert main(["bench", str(out), "--max-length", "200", *data, *BENCH]) == 1  # within the tokenizer's 512
    assert "200 tokens is more than the model takes (128 positions)" in capsys.readouterr().err
    assert never_asked == []


def test_loading_an_export_as_a_model_never_asks(exports, never_asked, tmp_path):
    import shutil

    from latencysolver.errors import ModelError
    from latencysolver.models.loading import load_classifier, load_model_config, load_tokenizer

    out = exports["skipped"]
    assert load_model_config(str(out)).max_position_embeddings == 128
    assert load_tokenizer(str(out)).vocab_size > 1000
    model = load_classifier(str(out))
    reference = load_fp32_student(out)
    assert type(model) is type(reference) and model.config.num_labels == 2
    weights = zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)
    # a folder with code that is not our export (no student.json): refused in one line, not asked about
    other = tmp_path / "not-ours"
    shutil.copytree(out, other)
    (other / "student.json").unlink()
    with pytest.raises(ModelError, match="contains custom code") as refused:
        load_classifier(str(other))
    assert "\n" not in str(refused.value)
    assert never_asked == []


def test_run_with_an_export_as_teacher_never_asks(exports, study_yaml, tmp_path, monkeypatch, never_asked, capsys):
    from latencysolver.cli import main

    monkeypatch.setenv("LATENCYSOLVER_CACHE", str(tmp_path / "cache"))
    path = study_yaml(n_trials=1, search_space={"quant_dtype": "fp32"})
    code = main(["run", str(path), "--teacher", str(exports["skipped"]), "--no-progress"])
    captured = capsys.readouterr()
    assert (code, never_asked) == (0, []), captured.err
    assert f"teacher: using the fine-tuned checkpoint {exports['skipped']}" in captured.out
