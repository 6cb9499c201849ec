"""Export: model.onnx for every trial (int8 exactly when the trial is), the card's test accuracy, and the
selection rules (--best RULE, --max-latency-ms) on studies of hand-made trials, in both latency directions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from latencysolver import load
from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.results.records import is_feasible, study_record, trial_record
from latencysolver.results.selection import RULES, SelectionError, select_best, select_under_latency
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.stats import wilson_interval
from tests.conftest import export_cli, write_study_yaml, write_synthetic_boolq

QUANT = ("fp32", "int8", "ort-int8", "bf16")  # one trial each, in this order
INT8_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "ConvInteger", "DynamicQuantizeMatMul"}


# The tiny teacher learns the synthetic rule with these (24 steps): confident logits, both answers predicted.
# tests/test_predict.py uses the same data and teacher, and the same cache folder: one fine-tune per session.
TEACHER = {"epochs": 6, "batch_size": 16, "learning_rate": 1.0e-2}
ROWS = {"train": 64, "validation": 40, "test": 32}


def shared_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "export-predict-cache")


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    """Synthetic BoolQ; every 4th test label is flipped, so test accuracy differs from validation's."""
    folder = write_synthetic_boolq(tmp_path_factory.mktemp("export-data"), ROWS, seed=3)
    rows = rows_of(folder / "test.jsonl")
    for i in range(0, len(rows), 4):
        rows[i]["label"] = not rows[i]["label"]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_model_dir, study_data):
    """A 4-trial study, one trial per quant_dtype of QUANT (enqueued), each exported once through the CLI.

    Every trial is feasible, whatever 3 distillation steps make of the tiny student: no accuracy floor (0) and no
    early stop, so the selection rules below always have trials to pick from (this is about export, not quality).
    """
    folder = tmp_path_factory.mktemp("export-study")
    space = {
        "prune_ratio": 0.0,
        "quant_dtype": {"choices": list(QUANT)},
        "skip_prob": 0.0,
        "rank": "off",
        "temperature": 2.0,
        "alpha": 0.5,
    }
    config = load_study_config(
        write_study_yaml(
            folder,
            tiny_model_dir,
            study_data,
            search_space=space,
            n_trials=len(QUANT),
            teacher=TEACHER,
            constraints={"min_accuracy": 0.0},
            early_stop={"after": None},
        )
    )
    pinned = optuna.create_study(study_name="tiny", storage=config.storage, directions=["maximize", "maximize"])
    for dtype in QUANT:
        pinned.enqueue_trial({"quant_dtype": dtype})
    study = run_study(config, RunOptions(cache_dir=shared_cache(tmp_path_factory), progress=False), log=lambda _: None)
    record = study_record(study)
    assert record.teacher.accuracy > record.data.majority_rate
    trials = {trial_record(t).recipe_dict["quant_dtype"]: t for t in study.get_trials()}
    assert sorted(trials) == sorted(QUANT)
    outs = {}
    for dtype, trial in trials.items():
        out = folder / f"export-{dtype}"
        assert export_cli(config.storage, str(trial.number), str(out), "--no-progress") == 0
        outs[dtype] = out
    return config, study, trials, outs


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def onnx_answers(path: Path, clf, rows: list[dict]) -> list[int]:
    """model.onnx run by onnxruntime directly (not through latencysolver), one row at a time."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    answers = []
    for r in rows:
        enc = clf.tokenizer(
            r["question"], r["passage"], truncation="only_second", max_length=clf.max_length, return_tensors="np"
        )
        (logits,) = session.run(["logits"], {n: enc[n].astype(np.int64) for n in names})
        answers.append(int(logits.argmax(-1)[0]))
    return answers


def op_types(path: Path) -> set[str]:
    import onnx

    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    if any(t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for t in model.graph.initializer):
        ops.add("<int8 initializer>")
    return ops


@pytest.mark.parametrize("dtype, agreement", [("fp32", 0.99), ("int8", 0.95)])
def test_onnx_file_predicts_what_the_exported_model_predicts(exports, study_data, dtype, agreement):
    _, _, _, outs = exports
    out = outs[dtype]
    clf = load(out)
    rows = rows_of(study_data / "validation.jsonl")
    torch_answers = clf.logits([r["question"] for r in rows], [r["passage"] for r in rows]).argmax(-1).tolist()
    assert len(set(torch_answers)) == 2, "a constant model would agree with anything"
    same = np.mean([a == b for a, b in zip(onnx_answers(out / "model.onnx", clf, rows), torch_answers, strict=True)])
    assert same >= agreement, f"{dtype}: ONNX agrees with torch on only {same:.1%} of validation rows"


def test_onnx_is_int8_exactly_when_the_trial_is(exports):
    _, _, _, outs = exports
    for dtype, out in outs.items():
        ops = op_types(out / "model.onnx")
        quantized = bool(ops & (INT8_OPS | {"<int8 initializer>"}))
        assert quantized == dtype.endswith("int8"), (dtype, sorted(ops))
        onnx = json.loads((out / "metrics.json").read_text())["onnx"]
        assert onnx["precision"] == ("int8" if dtype.endswith("int8") else "fp32")
        assert onnx["source"] == ("trial artifact" if dtype.startswith("ort-") else "exported at export time")
    card = (outs["bf16"] / "README.md").read_text()
    assert "model.onnx` is fp32" in card and "bf16" in card  # the card says why a bf16 trial ships fp32 ONNX


def test_ort_trial_ships_the_graph_it_measured(exports):
    config, study, trials, outs = exports
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    from latencysolver.results.storage import artifact_store_of

    trial = trials["ort-int8"]
    storage = optuna.storages.get_storage(config.storage)
    meta = {m.filename: m for m in get_all_artifact_meta(trial, storage=storage)}["model.onnx"]
    stored = outs["ort-int8"].parent / "stored.onnx"
    download_artifact(artifact_store=artifact_store_of(study), artifact_id=meta.artifact_id, file_path=str(stored))
    assert stored.read_bytes() == (outs["ort-int8"] / "model.onnx").read_bytes()
    assert type(load(outs["ort-int8"]).model).__name__ == "OnnxClassifier"  # load() runs the same file


def test_card_reports_the_test_split_accuracy(exports, study_data):
    _, study, trials, outs = exports
    rows = rows_of(study_data / "test.jsonl")
    labels = [bool(r["label"]) for r in rows]
    for dtype, out in outs.items():
        predicted = [p.answer for p in load(out).predict([r["question"] for r in rows], [r["passage"] for r in rows])]
        accuracy = np.mean([p == y for p, y in zip(predicted, labels, strict=True)])
        tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
        f1 = (
            2
            * tp
            / (
                2 * tp
                + sum(p and not y for p, y in zip(predicted, labels, strict=True))
                + sum(y and not p for p, y in zip(predicted, labels, strict=True))
            )
            if tp
            else 0.0
        )
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["test"]["rows"] == len(rows)
        assert metrics["test"]["accuracy"] == pytest.approx(accuracy, abs=1e-9), dtype
        assert metrics["test"]["f1"] == pytest.approx(f1, abs=1e-9), dtype
        card = (out / "README.md").read_text()
        wilson = wilson_interval(round(accuracy * len(rows)), len(rows))  # issue 17: the interval, recomputed
        assert metrics["test"]["accuracy_interval"]["low"] == pytest.approx(wilson.low, abs=1e-12)
        assert metrics["test"]["accuracy_interval"]["high"] == pytest.approx(wilson.high, abs=1e-12)
        assert re.search(rf"\| test accuracy \| {accuracy:.4f} \[{wilson.low:.3f}, {wilson.high:.3f}\] \|", card), dtype
        vs = metrics["test"]["vs_teacher"]  # paired with the teacher's own answers on the same test rows
        assert vs["student_accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert vs["teacher_accuracy"] == pytest.approx(teacher_test_accuracy(study, rows), abs=1e-12)
        assert "| vs teacher on test (points, paired) |" in card
        # validation (from the search), teacher, hardware, recipe and data are on the card too
        trial = trials[dtype]
        assert f"{trial.values[0]:.4f}" in card and trial_record(trial).hardware_key in card
        assert metrics["latency"]["hardware"]["key"] == trial_record(trial).hardware_key
        assert metrics["latency"]["hardware"]["describe"] in card
        assert metrics["recipe"] == trial_record(trial).recipe_dict and metrics["teacher"]["base_model"]
        assert "not\ncomparable" in card or "not comparable" in card
        assert metrics["data"]["majority_rate"] == study_record(study).data.majority_rate


def test_no_test_split_is_reported_not_fatal(exports, tmp_path, capsys):
    config, _, trials, _ = exports
    no_test = write_synthetic_boolq(tmp_path / "data", {"train": 8, "validation": 8})
    out = tmp_path / "out"
    assert (
        export_cli(config.storage, str(trials["fp32"].number), str(out), "--data", str(no_test), "--no-progress") == 0
    )
    assert "test: not measured" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"] is None and "no test split" in metrics["test_unavailable"]
    assert "Test: not measured" in (out / "README.md").read_text()
    assert (out / "model.onnx").is_file()


@pytest.mark.parametrize("missing", ["model.safetensors", "predictions.json", "config.json"])
def test_artifacts_folder_without_the_trials_files_is_one_line(exports, tmp_path, capsys, missing):
    """Issue 16: `export --artifacts DIR` where DIR lacks the trial's files: one line naming the file."""
    import shutil

    from optuna.artifacts import get_all_artifact_meta

    config, study, trials, _ = exports
    trial = trials["fp32"]
    metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=optuna.storages.get_storage(config.storage))}
    folder = tmp_path / "artifacts"
    if missing == "model.safetensors":  # an empty folder: the first file looked for is the weights
        folder.mkdir()
    else:
        shutil.copytree(study_record(study).artifact_dir, folder)
        (folder / metas[missing].artifact_id).unlink()
    out = tmp_path / "out"
    code = export_cli(config.storage, str(trial.number), str(out), "--artifacts", str(folder), "--no-progress")
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert repr(missing) in lines[0] and str(folder) in lines[0], lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["artifacts"]


def test_unreadable_data_override_is_one_line_and_writes_nothing(exports, tmp_path, capsys):
    config, _, trials, _ = exports
    out = tmp_path / "out"
    code = export_cli(
        config.storage, str(trials["fp32"].number), str(out), "--data", str(tmp_path / "missing"), "--no-progress"
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "data folder not found" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no staging folder left either


def test_cli_prints_the_rule_and_the_trial(exports, tmp_path, capsys):
    config, study, _, _ = exports
    feasible = [t for t in study.get_trials() if is_feasible(t)]
    if len(feasible) != len(QUANT):  # the fixture makes every trial feasible; anything else is a bug to see
        pytest.fail(
            f"expected {len(QUANT)} feasible trials, got {len(feasible)}: constraints "
            f"{[t.constraints for t in study.get_trials()]}"
        )
    expected = select_best(study, "knee").trial.number
    assert (
        main(
            [
                "export",
                "--study",
                "tiny",
                "--storage",
                config.storage,
                "--best",
                "knee",
                "--out",
                str(tmp_path / "k"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert re.search(rf"^selected trial {expected} by --best knee: ", out, re.MULTILINE)
    assert json.loads((tmp_path / "k" / "metrics.json").read_text())["selection"]["rule"] == "knee"
    assert "Selected with `--best knee`: the knee of" in (tmp_path / "k" / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ selection


def hand_made(
    direction: str, trials: list[tuple], teacher_accuracy: float = 0.70, storage: str | None = None
) -> optuna.Study:
    """``trials``: (accuracy, speed-up, p50 ms[, feasible]); the second objective is the speed-up when
    ``direction`` is "maximize", the p50 ms when "minimize"."""
    study = optuna.create_study(study_name="hand", storage=storage, directions=["maximize", direction])
    study.set_user_attr("teacher", {"accuracy": teacher_accuracy})
    for accuracy, speedup, p50, *rest in trials:
        feasible = rest[0] if rest else True
        study.add_trial(
            optuna.trial.create_trial(
                values=[accuracy, speedup if direction == "maximize" else p50],
                user_attrs={"recipe": {"quant_dtype": "int8"}, "latency_p50_ms": p50, "speedup": speedup},
                constraints={"min_accuracy": 0.0, "max_latency_ms": 0.0 if feasible else 0.5},
            )
        )
    return study


FRONT_RULES = [r for r in RULES if r != "non-inferior"]  # the rules over the front; non-inferior: its own test


# A front of four trials, the same in both directions (speed-up = 20 ms / p50), plus a dominated trial (4)
# and an infeasible one (5) that beats everything on both objectives.
#   trial  accuracy  speed-up  p50 ms
#     0     0.70      1.0     20.0     most accurate
#     1     0.69      3.0      6.67    knee; within 0.01 of the teacher (0.70): near-teacher
#     2     0.60      4.0      5.0
#     3     0.50      5.0      4.0     fastest
#     4     0.55      2.0     10.0     dominated by 1
#     5     0.99     50.0      0.4     infeasible
FRONT = [
    (0.70, 1.0, 20.0),
    (0.69, 3.0, 20 / 3),
    (0.60, 4.0, 5.0),
    (0.50, 5.0, 4.0),
    (0.55, 2.0, 10.0),
    (0.99, 50.0, 0.4, False),
]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_each_rule_picks_its_trial_and_never_an_infeasible_one(direction):
    study = hand_made(direction, FRONT)
    picked = {rule: select_best(study, rule).trial.number for rule in FRONT_RULES}
    assert picked == {"near-teacher": 1, "max-accuracy": 0, "min-latency": 3, "knee": 1}
    assert select_best(study, "near-teacher").trial.number == 1
    assert select_best(study, "near-teacher", tolerance=0.0).trial.number == 0  # only the teacher's own accuracy
    assert select_best(study, "near-teacher", tolerance=-1.0).trial.number == 0  # none close: most accurate
    assert select_best(study, "near-teacher", tolerance=1.0).trial.number == 3  # all close: fastest
    assert select_under_latency(study, 6.0).trial.number == 2  # 1 (6.67 ms) is over; 5 (0.4 ms) infeasible
    assert select_under_latency(study, 7.0).trial.number == 1
    assert select_under_latency(study, 100.0).trial.number == 0


def test_knee_on_a_known_front_in_both_directions():
    # speed-up: accuracy scales to (1, .5, 0) and speed-up (1, 3, 9) to (0, .25, 1): trial 1 is at
    # hypot(.5, .75) = .90, trial 0 and 2 at 1.0
    assert (
        select_best(hand_made("maximize", [(0.8, 1.0, 9.0), (0.7, 3.0, 3.0), (0.6, 9.0, 1.0)]), "knee").trial.number
        == 1
    )
    # the same milliseconds minimized: p50 (9, 3, 1) scales to (0, .75, 1), trial 1 at hypot(.5, .25) = .56;
    # a fourth, barely less accurate and much faster trial becomes the knee: scaled (.95, .975)
    ms = [(0.8, 1.0, 9.0), (0.7, 3.0, 3.0), (0.6, 9.0, 1.0)]
    assert select_best(hand_made("minimize", ms), "knee").trial.number == 1
    assert select_best(hand_made("minimize", [*ms, (0.79, 2.0, 1.2)]), "knee").trial.number == 3


def test_ties_are_broken_the_documented_way():
    # two trials with the very same objectives: every rule picks the lower trial number
    twins = [(0.7, 2.0, 5.0), (0.7, 2.0, 5.0)]
    for rule in FRONT_RULES:
        assert select_best(hand_made("maximize", twins), rule).trial.number == 0
    # a two-trial front: both ends are at distance 1 from the ideal point, the knee is the more accurate one
    assert select_best(hand_made("maximize", [(0.6, 4.0, 2.0), (0.7, 2.0, 5.0)]), "knee").trial.number == 1
    # --max-latency-ms, equal accuracy: the faster by the study's own objective
    pair = [(0.7, 3.0, 4.0), (0.7, 2.5, 3.0)]  # trial 0: larger speed-up; trial 1: lower p50
    assert select_under_latency(hand_made("maximize", pair), 10.0).trial.number == 0
    assert select_under_latency(hand_made("minimize", pair), 10.0).trial.number == 1


def test_no_feasible_trial_or_none_under_the_bound_is_an_error():
    only_infeasible = hand_made("maximize", [(0.9, 9.0, 1.0, False)])
    for rule in FRONT_RULES:
        with pytest.raises(SelectionError, match="no completed feasible trials"):
            select_best(only_infeasible, rule)
    with pytest.raises(SelectionError, match="no completed feasible trials"):
        select_under_latency(only_infeasible, 5.0)
    study = hand_made("minimize", FRONT)
    with pytest.raises(
        SelectionError,
        match=r"--max-latency-ms 3: .* p50 <= 3 ms; the fastest feasible p50 is "
        r"4\.00 ms \(trial 3\)",
    ):
        select_under_latency(study, 3.0)


def test_cli_max_latency_without_a_match_is_one_line(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'hand.db'}"
    hand_made("maximize", FRONT, storage=storage)
    code = main(
        ["export", "--study", "hand", "--storage", storage, "--max-latency-ms", "2.5", "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("latencysolver: error: --max-latency-ms 2.5:") and "4.00 ms" in err
    assert not (tmp_path / "out").exists()


def test_cli_selection_options_are_exclusive_and_checked(tmp_path, capsys):
    from latencysolver.cli import _BEST_RULES

    assert _BEST_RULES == RULES
    base = ["export", "--study", "hand", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--out", str(tmp_path / "o")]
    for extra in (
        [],
        ["--best", "fastest"],
        ["--best", "knee", "--trial", "1"],
        ["--trial", "1", "--max-latency-ms", "3"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(base + extra)
        assert exc.value.code == 2
        assert "usage:" in capsys.readouterr().err


def paired_trials(direction: str, trials: list[tuple], storage: str | None = None) -> optuna.Study:
    """``trials``: (speed-up, student_only, teacher_only, feasible) on 500 rows where the teacher is right on 350;
    each trial's paired record is computed from those counts by ``latencysolver.stats``."""
    from latencysolver.stats import paired_difference

    study = optuna.create_study(study_name="paired", storage=storage, directions=["maximize", direction])
    study.set_user_attr("teacher", {"accuracy": 0.70})
    for speedup, student_only, teacher_only, feasible in trials:
        teacher = [True] * 350 + [False] * 150
        student = list(teacher)
        for i in range(teacher_only):  # rows the teacher gets right and the student wrong
            student[i] = False
        for i in range(student_only):  # rows the teacher gets wrong and the student right
            student[350 + i] = True
        paired = paired_difference(student, teacher)
        study.add_trial(
            optuna.trial.create_trial(
                values=[paired.student_accuracy, speedup if direction == "maximize" else 20 / speedup],
                user_attrs={
                    "recipe": {"quant_dtype": "int8"},
                    "latency_p50_ms": 20 / speedup,
                    "speedup": speedup,
                    "vs_teacher": paired.to_dict(),
                },
                constraints={"min_accuracy": 0.0, "max_latency_ms": 0.0 if feasible else 0.5},
            )
        )
    return study


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_non_inferior_picks_the_fastest_trial_the_rows_can_vouch_for(direction):
    # trial 0: 9x, 10 points down on 60 discordant rows: bound far below -0.04, rejected though fastest
    # trial 1: 6x, 1 point down on 5 discordant rows (narrow): bound about -0.025 > -0.04, picked
    # trial 2: 3x, the teacher's accuracy on 2 discordant rows: qualifies, but slower than 1
    # trial 3: 12x, the teacher's accuracy, infeasible: never picked
    study = paired_trials(direction, [(9.0, 5, 55, True), (6.0, 0, 5, True), (3.0, 1, 1, True), (12.0, 0, 0, False)])
    bounds = [trial_record(t).paired().lower_bound(0.95) for t in study.trials]
    assert bounds[0] < -0.04 < bounds[1] and bounds[2] > -0.04
    chosen = select_best(study, "non-inferior", margin=0.04, confidence=0.95)
    assert chosen.trial.number == 1 and chosen.rule == "non-inferior"
    assert select_best(study, "non-inferior", margin=0.2).trial.number == 0  # a wide margin lets the 9x one in
    with pytest.raises(SelectionError, match=r"the closest is trial 2 with -0\.0"):
        select_best(study, "non-inferior", margin=0.001)


def test_non_inferior_through_the_cli_exits_1_or_falls_back(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'paired.db'}"
    paired_trials("maximize", [(9.0, 5, 55, True), (6.0, 0, 5, True)], storage)
    args = ["export", "--study", "paired", "--storage", storage, "--best", "--margin", "0.001", "--out"]
    from latencysolver.cli import main

    assert main([*args, str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the closest is trial 1" in err[0]
    assert not (tmp_path / "a").exists()


def teacher_test_accuracy(study: optuna.Study, rows: list[dict]) -> float:
    """The study's teacher on ``rows``, through transformers alone (not latencysolver's evaluation)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from latencysolver.results.records import study_record

    folder = study_record(study).teacher.path
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tokenizer(
        [r["question"] for r in rows],
        [r["passage"] for r in rows],
        truncation="only_second",
        max_length=64,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1).tolist()
    return float(np.mean([bool(p) == bool(r["label"]) for p, r in zip(predicted, rows, strict=True)]))
