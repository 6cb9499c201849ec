"""End to end on the real thing, kept small: the shared BoolQ split and the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from latencysolver import load
from latencysolver.cli import main
from latencysolver.data.text import load_data
from latencysolver.results.records import study_record
from tests.conftest import REPO, SHARED_DATA

# The real 22.7M-parameter MiniLM fine-tuned and distilled: minutes on a CPU.  `make test-slow` runs it.
pytestmark = pytest.mark.slow


def test_two_trial_study_on_shared_boolq_with_packaged_minilm(tmp_path, capsys):
    assert SHARED_DATA.is_dir(), f"the shared BoolQ split is expected at {SHARED_DATA}"
    study = yaml.safe_load((REPO / "studies" / "boolq-quick.yaml").read_text())
    study.update(
        name="integration",
        search_space=str(REPO / "search_spaces" / "quick.yaml"),
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        data={"source": "google/boolq", "max_length": 128, "limit_train": 48, "limit_validation": 32},
        n_trials=2,
        teacher={"epochs": 1, "batch_size": 16},
        distillation={"steps": 3, "batch_size": 8},
        latency={"rows": 4, "warmup": 1, "repeats": 2},
        # plumbing, not quality: 3 distillation steps on 48 rows cannot beat the majority class
        constraints={"min_accuracy": 0.0},
        usual_recipes=False,  # two distilled trials; the usual recipes have a fast test of their own
    )
    path = tmp_path / "integration.yaml"
    path.write_text(yaml.safe_dump(study))

    # --data overrides the hub name with the local folder, exactly as `make demo` does
    assert (
        main(["run", str(path), "--data", str(SHARED_DATA), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
        == 0
    )
    out = capsys.readouterr().out
    assert "Pareto front of study 'integration'" in out

    loaded = optuna.load_study(study_name="integration", storage=study["storage"])
    trials = loaded.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    record = study_record(loaded)
    assert record.teacher.parameters > 20_000_000  # the real MiniLM (22.7M), not a tiny stand-in
    assert record.data.train_rows == 48

    export = tmp_path / "export"
    assert (
        main(
            [
                "export",
                "--study",
                "integration",
                "--storage",
                study["storage"],
                "--best",
                "--fallback",
                "knee",
                "--out",
                str(export),
            ]
        )
        == 0
    )
    model = load(export)
    validation = load_data(str(SHARED_DATA), limit_validation=32).validation
    predicted = [int(p.answer) for p in model.predict(list(validation.text), list(validation.text_pair))]
    assert predicted == json.loads((export / "predictions.json").read_text())["predictions"]
