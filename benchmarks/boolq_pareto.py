"""latencysolver against what people do without it, on the same data, machine and run (issue 7).

    .venv/bin/python benchmarks/boolq_pareto.py [--study studies/boolq-pareto.yaml]
        [--data ../shared/data/boolq-dev-split] [--trials N] [--steps N] [--out benchmarks/results/boolq_pareto]
        [--storage URL] [--resume] [--skip-random] [--cache-dir DIR] [--teacher PATH] [--progress]

1. Loads the data and fine-tunes (or loads the cached) teacher: ``latencysolver.search.preparation.prepare``;
   encodes the test split too.
2. Baselines, in this process and with the study's latency protocol: the teacher as it is (fp32 torch), in
   ONNX Runtime fp32, in ONNX Runtime with dynamic int8 (per-channel; what Hugging Face Optimum's one-command
   recipe does), and with torch's dynamic int8.  Each is converted by ``student.to_runnable``, scored on
   validation and test, and timed by ``latency.measure_paired`` against the fp32 torch teacher.
3. The study (``run_study``, the YAML's sampler), then the same study with ``RandomSampler`` and the same trial
   budget (study name + ``-random``) in the same storage.
4. For each feasible Pareto-front trial of the study: validation accuracy, p50 and paired speed-up as the trial
   recorded them, and test accuracy measured here on the student loaded back from the trial's artifacts
   (``student.load_student``: the model as it ran, quantization included).
5. Hypervolume of each study's feasible trials in (validation accuracy, speed-up) above a fixed reference point
   (the validation majority-class rate, 1.0x), the issue's targets with their margins, and the wall time.

Writes ``results.md``, ``results.json``, ``front.html`` and ``front.png`` into ``--out``; the studies live in
``--out/study.db`` (artifacts in ``--out/study-artifacts/``), made fresh on every run unless ``--resume``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import FrozenTrial, TrialState

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import StudyConfig, load_study_config
from latencysolver.data.batches import EncodedSplit, encode_split
from latencysolver.errors import LatencySolverError, StorageError
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import latency_inputs, measure_paired
from latencysolver.models.loading import count_parameters
from latencysolver.models.student import load_student, to_runnable
from latencysolver.results.front import feasible_trials, pareto_trials
from latencysolver.results.records import trial_record
from latencysolver.results.storage import artifact_store_of
from latencysolver.search.objective import model_size_bytes
from latencysolver.search.preparation import Prepared, RunOptions, prepare
from latencysolver.search.run import run_study
from latencysolver.training.evaluate import predict_logits, scores

# name -> (quant_dtype setting for to_runnable, what it is)
BASELINES: dict[str, tuple[str, str]] = {
    "fp32 torch teacher": ("fp32", "the fine-tuned teacher as is (torch eager, fp32)"),
    "ORT fp32 teacher": ("ort-fp32", "teacher exported to ONNX Runtime, fp32"),
    "ORT int8 teacher": (
        "ort-int8",
        "teacher in ONNX Runtime, dynamic int8, per-channel 7-bit weights (the Optimum recipe, reduce_range)",
    ),
    "torch int8 teacher": ("int8", "teacher with torch dynamic int8 (quantize_dynamic, per-channel)"),
}
# where each baseline's label goes in the plot: their points sit close together near 1-3x and the same accuracy
LABELS = {
    "fp32 torch teacher": "top center",
    "ORT fp32 teacher": "bottom center",
    "ORT int8 teacher": "top center",
    "torch int8 teacher": "middle right",
}
REFERENCE = "fp32 torch teacher"
TARGET_SPEEDUP = 8.0
VALIDATION_POINTS = 1.0  # accuracy points (0.01) of the teacher on validation
TEST_POINTS = 2.0
WALL_BUDGET_S = 3 * 3600
EPS = 1e-9


@dataclass
class Row:
    """One line of the table: a baseline or a front trial."""

    name: str
    recipe: str
    val_accuracy: float
    test_accuracy: float | None
    p50_ms: float
    speedup: float
    speedup_cv: float
    parameters: int
    size_bytes: int
    trial: int | None = None
    teacher_p50_ms: float | None = None  # the fp32 teacher's p50 in the same pairs


@dataclass
class Target:
    name: str
    met: bool | None  # None: not measured
    detail: str


class Clock:
    """One progress line per phase, with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = {}
        self._last = self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.0f}s] {message}", flush=True)

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round(now - self._last, 1)
        self._last = now
        self.say(f"{phase}: done in {self.phases[phase]:.0f} s")


# ------------------------------------------------------------------------------------------------ setup


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default=str(REPO / "studies" / "boolq-pareto.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--trials", type=int, help="trial budget of each study (default: the YAML's n_trials)")
    parser.add_argument("--steps", type=int, help="distillation steps per trial (default: the YAML's)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "boolq_pareto"))
    parser.add_argument("--storage", help="Optuna storage URL (default: a fresh sqlite:///OUT/study.db)")
    parser.add_argument("--resume", action="store_true", help="continue the studies already in the storage")
    parser.add_argument("--skip-random", action="store_true", help="no random-search study (quick looks)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--teacher", help="fine-tuned teacher folder (default: the study's cached teacher)")
    parser.add_argument("--progress", action="store_true", help="show progress bars while training")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace, out: Path) -> StudyConfig:
    config = load_study_config(
        args.study, data=args.data, n_trials=args.trials, storage=args.storage or f"sqlite:///{out / 'study.db'}"
    )
    if args.steps is not None:
        if args.steps < 1:
            raise LatencySolverError(f"--steps: expected a positive integer, got {args.steps!r}")
        config = dataclasses.replace(config, distillation=dataclasses.replace(config.distillation, steps=args.steps))
    return config


def random_config(config: StudyConfig) -> StudyConfig:
    """The same study with random search: same objective, space, budget, seed and storage, another name."""
    return dataclasses.replace(
        config, name=f"{config.name}-random", sampler=dataclasses.replace(config.sampler, name="random")
    )


def fresh_storage(args: argparse.Namespace, out: Path, names: list[str], storage_url: str) -> None:
    """Unless --resume: remove the default SQLite file and its artifacts; refuse to reuse a given storage."""
    if args.resume:
        return
    if args.storage is None:
        (out / "study.db").unlink(missing_ok=True)
        shutil.rmtree(out / "study-artifacts", ignore_errors=True)
        return
    existing = set(optuna.get_all_study_names(storage_url))
    taken = [n for n in names if n in existing]
    if taken:
        raise StorageError(
            f"--storage {args.storage!r} already has study {taken[0]!r}; pass --resume to continue "
            "it or use another storage"
        )


# ------------------------------------------------------------------------------------------------ measuring


def accuracy(model: Any, split: EncodedSplit | None, pad_id: int) -> float | None:
    if split is None:
        return None
    return scores(predict_logits(model, split, pad_id=pad_id, progress=False), split.labels).accuracy


def measure_baselines(
    prepared: Prepared, test: EncodedSplit | None, config: StudyConfig, workdir: Path, clock: Clock
) -> list[Row]:
    teacher = prepared.teacher.model.eval()
    inputs = latency_inputs(prepared.validation, config.latency, prepared.pad_id)
    rows = []
    for name, (setting, what) in BASELINES.items():
        runnable = to_runnable(teacher, setting, inputs[0], workdir / setting, config.latency.threads)
        paired = measure_paired(runnable, teacher, inputs, config.latency)
        rows.append(
            Row(
                name=name,
                recipe=what,
                val_accuracy=accuracy(runnable, prepared.validation, prepared.pad_id),
                test_accuracy=accuracy(runnable, test, prepared.pad_id),
                p50_ms=paired.model.p50_ms,
                speedup=paired.speedup,
                speedup_cv=paired.speedup_cv,
                parameters=count_parameters(teacher),
                size_bytes=model_size_bytes(runnable),
                teacher_p50_ms=paired.reference.p50_ms,
            )
        )
        clock.say(
            f"baseline {name}: validation {rows[-1].val_accuracy:.3f}, p50 {rows[-1].p50_ms:.2f} ms, "
            f"{rows[-1].speedup:.2f}x"
        )
    return rows


def download_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, trial: FrozenTrial, folder: Path) -> Path:
    """The trial's stored files (student, model.onnx, predictions, latency samples) into ``folder``."""
    store = artifact_store_of(study)
    folder.mkdir(parents=True, exist_ok=True)
    for meta in get_all_artifact_meta(trial, storage=storage):
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(folder / meta.filename))
    return folder


def front_rows(
    study: optuna.Study, storage: optuna.storages.BaseStorage, test: EncodedSplit | None, pad_id: int, threads: int
) -> list[Row]:
    """Each feasible front trial as its trial recorded it, plus its test accuracy from its stored student."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in pareto_trials(study):
            a = trial_record(t)
            model = load_student(download_trial(study, storage, t, Path(tmp) / str(t.number)), threads=threads).model
            rows.append(
                Row(
                    name=f"trial {t.number}",
                    recipe=Recipe.from_dict(a.recipe_dict).describe(),
                    val_accuracy=t.values[0],
                    test_accuracy=accuracy(model, test, pad_id),
                    p50_ms=a.latency_p50_ms,
                    speedup=a.speedup,
                    speedup_cv=a.speedup_cv,
                    parameters=a.parameters,
                    size_bytes=a.size_bytes,
                    trial=t.number,
                    teacher_p50_ms=a.reference_p50_ms,
                )
            )
    return rows


# ------------------------------------------------------------------------------------------------ hypervolume


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` above ``reference``, both objectives maximized (2-D).

    Sorted by the first objective, most first: between the i-th and the next x, the dominated height is the
    best second objective among the first i points.
    """
    rx, ry = reference
    inside = sorted(((x, y) for x, y in points if x > rx and y > ry), reverse=True)
    area, best_y = 0.0, ry
    for i, (x, y) in enumerate(inside):
        best_y = max(best_y, y)
        next_x = inside[i + 1][0] if i + 1 < len(inside) else rx
        area += (x - next_x) * (best_y - ry)
    return area


def study_hypervolume(study: optuna.Study, reference: tuple[float, float]) -> float:
    return hypervolume([(t.values[0], t.values[1]) for t in feasible_trials(study)], reference)


# ------------------------------------------------------------------------------------------------ targets


def _points(delta: float) -> str:
    return f"{delta * 100:+.1f} pts"


def speed_target(front: list[Row], teacher: Row) -> Target:
    name = (
        f"a front trial >= {TARGET_SPEEDUP:g}x faster than the fp32 torch teacher within "
        f"{VALIDATION_POINTS:g} point on validation and {TEST_POINTS:g} on test"
    )
    near_val = [r for r in front if r.val_accuracy >= teacher.val_accuracy - VALIDATION_POINTS / 100 - EPS]
    near = [
        r
        for r in near_val
        if r.test_accuracy is not None
        and teacher.test_accuracy is not None
        and r.test_accuracy >= teacher.test_accuracy - TEST_POINTS / 100 - EPS
    ]
    if not near:
        if not near_val:
            best = max(front, key=lambda r: r.val_accuracy, default=None)
            why = (
                f"most accurate front trial: {best.name} at {_points(best.val_accuracy - teacher.val_accuracy)} "
                "on validation"
                if best
                else "the front is empty"
            )
            return Target(name, False, f"no front trial within {VALIDATION_POINTS:g} point on validation ({why})")
        fast = max(near_val, key=lambda r: r.speedup)
        test = "no test split" if fast.test_accuracy is None else _points(fast.test_accuracy - teacher.test_accuracy)
        return Target(
            name,
            False,
            f"none also within {TEST_POINTS:g} points on test; fastest within "
            f"{VALIDATION_POINTS:g} on validation: {fast.name}, {fast.speedup:.1f}x, test {test}",
        )
    best = max(near, key=lambda r: r.speedup)
    gap = best.speedup - TARGET_SPEEDUP
    margin = f"{gap:.1f}x above {TARGET_SPEEDUP:g}x" if gap >= 0 else f"{-gap:.1f}x short of {TARGET_SPEEDUP:g}x"
    return Target(
        name,
        gap >= 0,
        f"best speed-up within both: {best.speedup:.1f}x ({best.name}, validation "
        f"{_points(best.val_accuracy - teacher.val_accuracy)}, test "
        f"{_points(best.test_accuracy - teacher.test_accuracy)}), {margin}",
    )


def dominance_target(front: list[Row], baseline: Row) -> Target:
    name = f"the front dominates the {baseline.name} (some trial at least as accurate on validation and faster)"
    as_good = [r for r in front if r.val_accuracy >= baseline.val_accuracy - EPS]
    if not as_good:
        best = max(front, key=lambda r: r.val_accuracy, default=None)
        return Target(
            name,
            False,
            "no front trial is as accurate"
            + (
                f": the most accurate, {best.name}, is {_points(best.val_accuracy - baseline.val_accuracy)} "
                f"behind ({best.val_accuracy:.3f} vs {baseline.val_accuracy:.3f})"
                if best
                else ""
            ),
        )
    fast = max(as_good, key=lambda r: r.speedup)
    ratio = fast.speedup / baseline.speedup
    return Target(
        name,
        ratio > 1.0,
        f"{fast.name}: validation {fast.val_accuracy:.3f} vs {baseline.val_accuracy:.3f}, "
        f"{fast.speedup:.2f}x vs {baseline.speedup:.2f}x ({ratio:.2f} times its speed)",
    )


def hypervolume_target(main: float, random: float | None) -> Target:
    name = "hypervolume after the budget beats random search with the same budget"
    if random is None:
        return Target(name, None, "random search skipped (--skip-random)")
    change = f"{(main / random - 1):+.0%}" if random > 0 else "random search: 0"
    return Target(name, main > random, f"{main:.4f} vs {random:.4f} ({change})")


def wall_target(seconds: float, budget: str) -> Target:
    left = WALL_BUDGET_S - seconds
    margin = f"{left / 60:.0f} min to spare" if left >= 0 else f"{-left / 60:.0f} min over"
    return Target(
        f"whole benchmark within {WALL_BUDGET_S // 3600} hours",
        left >= 0,
        f"{seconds / 60:.1f} min ({margin}); budget: {budget}",
    )


def noise_warning(rows: list[Row], spread: float = 1.5) -> str | None:
    """The fp32 teacher's p50 should read about the same in every pair; when it does not, the machine was busy.

    Paired ratios cancel noise that slows both models alike, but not CPU contention that slows torch's OpenMP
    threads far more than onnxruntime's (seen here: the teacher at 919 ms next to ONNX Runtime, 30 ms alone).
    """
    seen = {r.name: r.teacher_p50_ms for r in rows if r.teacher_p50_ms}
    if len(seen) < 2 or max(seen.values()) <= spread * min(seen.values()):
        return None
    low, high = min(seen, key=seen.get), max(seen, key=seen.get)
    return (
        f"warning: the fp32 teacher's paired p50 ranged {seen[low]:.1f} ms ({low}) to {seen[high]:.1f} ms "
        f"({high}): the machine's speed changed during the run (other jobs, or a shared host); compare "
        "speed-ups, not milliseconds, and expect them to move more than their ±CV between runs"
    )


# ------------------------------------------------------------------------------------------------ output


COLUMNS = ("", "recipe", "val acc", "test acc", "p50 ms", "speed-up (paired)", "params", "size MB")


def cells(row: Row) -> tuple[str, ...]:
    test = "–" if row.test_accuracy is None else f"{row.test_accuracy:.3f}"
    return (
        row.name,
        row.recipe,
        f"{row.val_accuracy:.3f}",
        test,
        f"{row.p50_ms:.2f}",
        f"{row.speedup:.2f}x ±{row.speedup_cv:.0%}",
        f"{row.parameters:,}",
        f"{row.size_bytes / 1e6:.1f}",
    )


def summary_lines(results: dict[str, Any]) -> list[str]:
    hv = results["hypervolume"]
    ref = hv["reference_point"]
    lines = [
        (
            f"hypervolume of the feasible trials in (validation accuracy ↑, speed-up ↑) above the reference "
            f"point (accuracy {ref['accuracy']:.3f} = validation majority class, speed-up {ref['speedup']:.1f}x):"
        ),
        (
            f"  {results['study']['sampler']} (seed {results['study']['seed']}): {hv['main']:.4f} "
            f"({hv['main_feasible']} feasible of {results['study']['trials']} trials)"
        ),
    ]
    if hv["random"] is not None:
        lines.append(
            f"  random search (seed {results['study']['seed']}): {hv['random']:.4f} "
            f"({hv['random_feasible']} feasible of {results['random_study']['trials']} trials)"
        )
    else:
        lines.append("  random search: not run (--skip-random)")
    for t in results["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        lines.append(f"target: {t['name']}: {verdict} — {t['detail']}")
    lines.append(f"wall time: {results['wall_seconds'] / 60:.1f} min; budget: {results['budget']}")
    if results["noise_warning"]:
        lines.append(results["noise_warning"])
    return lines


def print_results(rows: list[Row], results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"BoolQ: baselines and the Pareto front of study {results['study']['name']!r}")
    for i, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if i < 2 else "right")
    for i, row in enumerate(rows):
        table.add_row(*cells(row), end_section=i == len(BASELINES) - 1)
    Console(width=200).print(table)
    for line in summary_lines(results):  # plain lines: rich would wrap them at its width
        print(line, flush=True)


def markdown(rows: list[Row], results: dict[str, Any]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n| --- | --- |" + " ---: |" * (len(COLUMNS) - 2) + "\n"
    body = "".join("| " + " | ".join(cells(r)) + " |\n" for r in rows)
    protocol = results["protocol"]
    notes = (
        f"Data: {results['data']['source']} ({results['data']['train']} train / {results['data']['validation']} "
        f"validation / {results['data']['test']} test rows). Latency: {protocol}.\n"
        f"Hardware: {results['hardware']}. Run {results['date']}.\n"
    )
    return f"# BoolQ: latencysolver against its baselines\n\n{notes}\n{head}{body}\n" + "".join(
        f"  - {line.strip()}\n" if line.startswith("  ") else f"- {line}\n" for line in summary_lines(results)
    )


def figure(
    study: optuna.Study,
    random_study: optuna.Study | None,
    front: list[Row],
    baselines: list[Row],
    reference: tuple[float, float],
):
    import plotly.graph_objects as go

    def trials(s: optuna.Study) -> list[FrozenTrial]:
        return s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def hover(t: FrozenTrial) -> str:
        return f"trial {t.number}<br>{Recipe.from_dict(trial_record(t).recipe_dict).describe()}"

    fig = go.Figure()
    main = trials(study)
    fig.add_trace(
        go.Scatter(
            x=[t.values[1] for t in main],
            y=[t.values[0] for t in main],
            mode="markers",
            name=f"{study.study_name}: all trials",
            opacity=0.35,
            text=[hover(t) for t in main],
            marker={"color": "#1f77b4", "size": 8},
        )
    )
    if random_study is not None:
        rand = trials(random_study)
        fig.add_trace(
            go.Scatter(
                x=[t.values[1] for t in rand],
                y=[t.values[0] for t in rand],
                mode="markers",
                name=f"{random_study.study_name}: all trials",
                opacity=0.6,
                text=[hover(t) for t in rand],
                marker={"color": "#ff7f0e", "size": 8, "symbol": "x"},
            )
        )
    ordered = sorted(front, key=lambda r: r.speedup)
    fig.add_trace(
        go.Scatter(
            x=[r.speedup for r in ordered],
            y=[r.val_accuracy for r in ordered],
            mode="lines+markers",
            line={"shape": "vh", "color": "#1f77b4"},
            marker={"size": 11, "color": "#1f77b4", "line": {"width": 1, "color": "black"}},
            name="Pareto front (feasible)",
            text=[f"{r.name}<br>{r.recipe}" for r in ordered],
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[r.speedup for r in baselines],
            y=[r.val_accuracy for r in baselines],
            mode="markers+text",
            text=[r.name for r in baselines],
            textposition=[LABELS.get(r.name, "top center") for r in baselines],
            marker={"symbol": "diamond", "size": 12, "color": "black"},
            name="baselines",
        )
    )
    teacher = baselines[0]
    fig.add_hline(
        y=teacher.val_accuracy - VALIDATION_POINTS / 100,
        line_dash="dot",
        line_color="green",
        annotation_text=f"teacher - {VALIDATION_POINTS:g} point",
        annotation_position="bottom left",
    )
    fig.add_vline(
        x=TARGET_SPEEDUP,
        line_dash="dot",
        line_color="green",
        annotation_text=f"{TARGET_SPEEDUP:g}x",
        annotation_position="top left",
    )
    fig.add_hline(
        y=reference[0],
        line_dash="dash",
        line_color="grey",
        annotation_text="majority class (hypervolume reference)",
        annotation_position="bottom right",
    )
    fastest = max(
        [r.speedup for r in baselines + front]
        + [TARGET_SPEEDUP]
        + [t.values[1] for s in (study, random_study) if s is not None for t in trials(s)]
    )
    fig.update_xaxes(range=[0, fastest * 1.15])  # room for the labels of the fastest points
    fig.update_layout(
        title="BoolQ validation accuracy vs paired speed-up over the fp32 torch teacher (batch 1)",
        xaxis_title="speed-up over the fp32 torch teacher (paired, batch 1)",
        yaxis_title="validation accuracy",
        template="plotly_white",
        width=1000,
        height=600,
    )
    return fig


def write_plot(fig, out: Path, clock: Clock) -> str | None:
    """front.html (self-contained, works offline) and front.png via kaleido; a warning line if the PNG fails."""
    fig.write_html(str(out / "front.html"), include_plotlyjs=True)
    try:
        fig.write_image(str(out / "front.png"), width=1000, height=600, scale=2)
    # kaleido needs Chrome/Chromium (Debian: /usr/bin/chromium) and raises its own error types; the HTML is written
    except Exception as exc:  # noqa: BLE001
        (out / "front.png").unlink(missing_ok=True)
        warning = f"warning: front.png not written (kaleido: {type(exc).__name__}: {str(exc).strip()[:200]})"
        clock.say(warning)
        return warning
    return None


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    clock = Clock()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, out, clock)
    except LatencySolverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace, out: Path, clock: Clock) -> dict[str, Any]:
    config = load_config(args, out)
    random_cfg = None if args.skip_random else random_config(config)
    fresh_storage(args, out, [config.name] + ([random_cfg.name] if random_cfg else []), config.storage)
    options = RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher, progress=args.progress)
    budget = (
        f"{config.n_trials} trials per study x {2 if random_cfg else 1} "
        f"({config.sampler.name}{', random' if random_cfg else ''}), "
        f"{config.distillation.steps} distillation steps per trial"
    )
    clock.say(f"benchmark: study {config.name!r} ({config.config_file}), {budget}; out {out}")

    prepared = prepare(config, options, log=clock.say)
    test = (
        encode_split(prepared.data.test, prepared.tokenizer, config.data.max_length, prepared.cache_root, config.model)
        if prepared.data.test is not None
        else None
    )
    if test is None:
        clock.say(f"warning: {config.data.source} has no test split: test accuracies are left out")
    clock.done("data and teacher")

    with tempfile.TemporaryDirectory() as tmp:
        baselines = measure_baselines(prepared, test, config, Path(tmp), clock)
    clock.done("baselines")

    study = run_study(config, options, log=clock.say)
    clock.done(f"study {config.name}")
    random_study = None
    if random_cfg is not None:
        random_study = run_study(random_cfg, options, log=clock.say)
        clock.done(f"study {random_cfg.name}")

    storage = optuna.storages.RDBStorage(config.storage)
    front = front_rows(
        optuna.load_study(study_name=config.name, storage=storage),
        storage,
        test,
        prepared.pad_id,
        config.latency.threads,
    )
    clock.done("test accuracy of the front")

    majority = prepared.data.validation.majority_rate()
    reference = (majority, 1.0)
    hv_main = study_hypervolume(study, reference)
    hv_random = study_hypervolume(random_study, reference) if random_study is not None else None
    fig = figure(study, random_study, front, baselines, reference)
    plot_warning = write_plot(fig, out, clock)
    clock.done("plot")

    wall = clock.elapsed()
    by_name = {b.name: b for b in baselines}
    targets = [
        speed_target(front, by_name[REFERENCE]),
        dominance_target(front, by_name["ORT int8 teacher"]),
        hypervolume_target(hv_main, hv_random),
        wall_target(wall, budget),
    ]
    rows = baselines + front
    results = _results(
        config,
        prepared,
        test,
        rows,
        front,
        study,
        random_study,
        reference,
        hv_main,
        hv_random,
        targets,
        wall,
        budget,
        clock,
        plot_warning,
        args,
    )
    print_results(rows, results)
    (out / "results.md").write_text(markdown(rows, results), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    clock.say(f"wrote {out / 'results.md'}, results.json, front.html" + ("" if plot_warning else ", front.png"))
    return results


def _results(
    config: StudyConfig,
    prepared: Prepared,
    test: EncodedSplit | None,
    rows: list[Row],
    front: list[Row],
    study: optuna.Study,
    random_study: optuna.Study | None,
    reference: tuple[float, float],
    hv_main: float,
    hv_random: float | None,
    targets: list[Target],
    wall: float,
    budget: str,
    clock: Clock,
    plot_warning: str | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    lat = config.latency
    data = prepared.data
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "arguments": {k: v for k, v in vars(args).items()},
        "study": {
            "name": config.name,
            "config_file": config.config_file,
            "sampler": config.sampler.name,
            "seed": config.sampler.seed,
            "trials": len(study.get_trials(deepcopy=False)),
            "n_trials": config.n_trials,
            "distillation_steps": config.distillation.steps,
            "search_space": config.search_space.to_dict(),
            "storage": config.storage,
        },
        "random_study": None
        if random_study is None
        else {
            "name": random_study.study_name,
            "sampler": "random",
            "seed": config.sampler.seed,
            "trials": len(random_study.get_trials(deepcopy=False)),
        },
        "data": {
            "source": data.source,
            "train": len(data.train),
            "validation": len(data.validation),
            "test": len(test) if test is not None else 0,
            "validation_majority_rate": data.validation.majority_rate(),
            "test_majority_rate": data.test.majority_rate() if data.test is not None else None,
        },
        "teacher": {"path": str(prepared.teacher.path), "key": prepared.teacher.key},
        "protocol": (
            f"batch 1, {lat.threads} threads, {lat.rows} seeded validation rows (seed {lat.seed}), "
            f"{lat.warmup} warm-up and {lat.repeats} timed passes; speed-up paired call by call against "
            "the fp32 torch teacher (median ratio)"
        ),
        "hardware": hardware_fingerprint(lat.threads).describe(),
        "baselines": [dataclasses.asdict(r) | {"setting": BASELINES[r.name][0]} for r in rows if r.trial is None],
        "front": [dataclasses.asdict(r) for r in front],
        "hypervolume": {
            "reference_point": {"accuracy": reference[0], "speedup": reference[1]},
            "main": hv_main,
            "random": hv_random,
            "main_feasible": len(feasible_trials(study)),
            "random_feasible": len(feasible_trials(random_study)) if random_study else None,
        },
        "targets": [dataclasses.asdict(t) for t in targets],
        "wall_seconds": round(wall, 1),
        "phases_seconds": clock.phases,
        "budget": budget,
        "plot_warning": plot_warning,
        "noise_warning": noise_warning(rows),
    }


if __name__ == "__main__":
    main()
