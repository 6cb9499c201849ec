"""The SST-2 studies (studies/sst2-*.yaml): they load, read ../shared/data/sst2 with nothing else given, and a
2-trial study on a 200-row slice of it runs end to end (export, ``latencysolver.load``, ``predict --text``)."""

from __future__ import annotations

import json

import pytest

from latencysolver import load
from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.data.text import configured
from latencysolver.models.loading import load_tokenizer
from tests.conftest import REPO, export_cli

SST2 = REPO.parent / "shared" / "data" / "sst2"
STUDIES = [REPO / "studies" / "sst2-quick.yaml", REPO / "studies" / "sst2-pareto.yaml"]
LABELS = ("negative", "positive")


@pytest.fixture(scope="module")
def sst2():
    if not (SST2 / "validation.jsonl").is_file():
        pytest.fail(f"shared SST-2 missing: expected {SST2}/{{train,validation,test}}.jsonl; CI always has it")
    return SST2


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_an_sst2_study_names_its_single_text_columns_and_labels(path):
    config = load_study_config(path)
    columns = config.data.columns
    assert (columns.text, columns.text_pair, columns.label) == ("sentence", None, "label")
    assert config.data.labels == LABELS and config.data.source == "../shared/data/sst2"
    assert config.search_space.values_of("architecture") == ("transformer",)


def test_both_sst2_studies_share_one_teacher():
    """One fine-tune serves both: the teacher's cache key is the model, the data and the teacher block."""
    quick, pareto = (load_study_config(path) for path in STUDIES)
    assert (quick.model, quick.data, quick.teacher) == (pareto.model, pareto.data, pareto.teacher)


def test_the_quick_study_reads_the_shared_folder_from_the_repo_root(sst2, monkeypatch):
    """``latencysolver run studies/sst2-quick.yaml`` from the repository root needs no ``--data``; every
    validation and test sentence fits in ``data.max_length`` (no row is cut)."""
    config = load_study_config(STUDIES[0])
    monkeypatch.chdir(REPO)
    data = configured(config.data, limit_train=200)
    assert data.label_names == LABELS and data.train.text_pair is None
    assert (len(data.validation), len(data.test)) == (872, 1821)
    assert data.validation.majority_rate() == pytest.approx(444 / 872)
    tokenizer = load_tokenizer(config.model)
    longest = max(len(ids) for ids in tokenizer([*data.validation.text, *data.test.text])["input_ids"])
    assert longest <= config.data.max_length


def test_a_two_trial_study_on_an_sst2_slice_exports_loads_and_predicts(sst2, study_yaml, tmp_path, capsys):
    real = load_study_config(STUDIES[0])
    c = real.data.columns
    path = study_yaml(
        search_space=str(REPO / "search_spaces" / "sst2-quick.yaml"),
        data={
            "source": "elsewhere",  # --data below replaces it, as for the real study
            "columns": {"text": c.text, "text_pair": c.text_pair, "label": c.label},
            "labels": list(LABELS),
            "max_length": real.data.max_length,
            "limit_train": 200,
            "limit_validation": 48,
            "limit_test": 48,
        },
        n_trials=2,
    )
    argv = ["run", str(path), "--data", str(sst2), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0
    assert "Pareto front of study 'tiny'" in capsys.readouterr().out

    config = load_study_config(path)
    out = tmp_path / "export"
    assert export_cli(config.storage, "0", str(out), "--no-progress") == 0
    classifier = load(out)
    assert classifier.labels == LABELS
    rows = [json.loads(line) for line in (sst2 / "test.jsonl").read_text().splitlines()[:8]]
    predictions = classifier.predict([r["sentence"] for r in rows])
    assert [p.label for p in predictions] == [LABELS[p.index] for p in predictions]

    capsys.readouterr()
    assert main(["predict", str(out), "--text", rows[0]["sentence"]]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{predictions[0].label} (p=")
