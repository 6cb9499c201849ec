"""``latencysolver report``: one self-contained HTML page (plotly.js inlined once) and a PNG of the front.

The page holds the Pareto front (feasible, infeasible, the front itself and the teacher), accuracy against latency
coloured by each knob, fANOVA knob importance per objective, the raw latency samples of the front's trials and
the front as a table.  Each figure is built by its own small function returning a plotly ``Figure``;
``write_report`` puts them together and writes the files (the HTML through a temporary file, so a failure never
leaves a half-written page).
"""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from latencysolver.config.knobs import KNOB, KNOB_NAMES
from latencysolver.config.recipe import Recipe
from latencysolver.errors import ReportError, first_line
from latencysolver.results.front import (
    completed_trials,
    difference_text,
    interval_text,
    pareto_trials,
    unstable_trials,
)
from latencysolver.results.records import TrialRecord, is_feasible, present, study_record, trial_record

# The knobs in the order the page shows them (the knob table's); a knob a later recipe adds comes after these.
KNOB_ORDER = KNOB_NAMES
# In the recipe but not searched (the seed is the trial number).
NOT_KNOBS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name not in KNOB)
NA = "n/a"  # a knob that cannot matter for this trial (a CNN's prune_ratio, prune_kind at ratio 0, ...)
IMPORTANCE_SEED = 0
PNG_WIDTH, PNG_HEIGHT, PNG_SCALE = 1000, 600, 2

FEASIBLE_COLOR, FRONT_COLOR, INFEASIBLE_COLOR, TEACHER_COLOR = "#1f77b4", "#ff7f0e", "#9e9e9e", "#000000"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


@dataclass(frozen=True)
class ReportResult:
    out: Path  # the HTML page
    png: Path | None  # the front as a PNG; None when skipped (see warnings)
    trials: int  # COMPLETE trials
    feasible: int
    infeasible: int
    failed: int
    front: tuple[int, ...]  # trial numbers on the feasible front, most accurate first
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------ objectives


@dataclass(frozen=True)
class LatencyAxis:
    """The study's second objective: the speed-up over the teacher (↑) or the student's p50 ms (↓)."""

    metric: str  # "speedup" or "latency_ms"
    label: str
    short: str
    teacher: float | None  # the teacher's value on this axis

    def format(self, value: float) -> str:
        return f"{value:.2f}x" if self.metric == "speedup" else f"{value:.2f} ms"


def latency_axis(study: optuna.Study) -> LatencyAxis:
    if len(study.directions) != 2:
        raise ReportError(
            f"study {study.study_name!r} has {len(study.directions)} objective(s); a latencysolver "
            "report needs two (accuracy, then speedup or latency_ms)"
        )
    names = study.metric_names or []
    metric = (
        names[1] if len(names) == 2 else ("speedup" if study.directions[1] == StudyDirection.MAXIMIZE else "latency_ms")
    )
    teacher = present(study_record(study).teacher)
    if metric == "speedup":
        return LatencyAxis(metric, "speed-up vs fp32 teacher ↑", "speed-up", 1.0 if teacher else None)
    return LatencyAxis(metric, "p50 latency ms (batch 1) ↓", "p50 ms", teacher.get("latency_p50_ms"))


def _recipe_text(trial: FrozenTrial) -> str:
    record = trial_record(trial)
    if not record.recipe_dict:
        return "(no recipe recorded)"
    if record.recipe is None:
        return f"(unreadable recipe: {record.recipe_error})"
    return record.recipe.describe()


def _hover(trials: Sequence[FrozenTrial], axis: LatencyAxis, what: str) -> dict[str, Any]:
    records = [trial_record(t) for t in trials]
    return {
        "customdata": [
            [t.number, _recipe_text(t), interval_text(r.interval()), difference_text(r.paired())]
            for t, r in zip(trials, records, strict=True)
        ],
        "hovertemplate": (
            "trial %{customdata[0]}<br>%{customdata[1]}<br>accuracy %{y:.3f} (95% CI %{customdata[2]})<br>"
            "vs teacher %{customdata[3]} points (paired, 95% CI)<br>"
            f"{axis.short} %{{x:.2f}}<extra>{what}</extra>"
        ),
        **_error_bars(trials, records),
    }


def _error_bars(trials: Sequence[FrozenTrial], records: Sequence[TrialRecord]) -> dict[str, Any]:
    """Each trial's 95% accuracy interval (Wilson, validation rows) as a vertical error bar; none recorded: none."""
    intervals = [r.interval() for r in records]
    if not any(intervals):
        return {}
    return {
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": [i.high - t.values[0] if i else 0.0 for t, i in zip(trials, intervals, strict=True)],
            "arrayminus": [t.values[0] - i.low if i else 0.0 for t, i in zip(trials, intervals, strict=True)],
            "thickness": 1,
            "width": 3,
            "color": "#888888",
        }
    }


# ------------------------------------------------------------------------------------------------ figures


def _front_line(front: Sequence[FrozenTrial], axis: LatencyAxis) -> tuple[list[float], list[float]]:
    """The front as a staircase: the edge of the region its trials dominate."""
    points = sorted((t.values[1], t.values[0]) for t in front)
    xs: list[float] = []
    ys: list[float] = []
    for i, (x, y) in enumerate(points):
        if i:  # speed-up ↑: down to the next point's accuracy, then across; ms ↓: across, then up
            corner = (xs[-1], y) if axis.metric == "speedup" else (x, ys[-1])
            xs.append(corner[0])
            ys.append(corner[1])
        xs.append(x)
        ys.append(y)
    return xs, ys


def pareto_figure(study: optuna.Study) -> go.Figure:
    """Every COMPLETE trial, feasible and infeasible apart; the feasible front starred and joined; the teacher."""
    axis = latency_axis(study)
    complete = completed_trials(study)
    unstable = {t.number for t in unstable_trials(study)}
    feasible = [t for t in complete if is_feasible(t) and t.number not in unstable]
    infeasible = [t for t in complete if not is_feasible(t) or t.number in unstable]
    front = pareto_trials(study)
    on_front = {t.number for t in front}
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            uid="feasible",
            name="feasible trials (★ Pareto front)",
            mode="markers",
            x=[t.values[1] for t in feasible],
            y=[t.values[0] for t in feasible],
            marker={
                "color": [FRONT_COLOR if t.number in on_front else FEASIBLE_COLOR for t in feasible],
                "symbol": ["star" if t.number in on_front else "circle" for t in feasible],
                "size": [16 if t.number in on_front else 9 for t in feasible],
                "line": {"width": 1, "color": "#333333"},
            },
            **_hover(feasible, axis, "feasible"),
        )
    )
    fig.add_trace(
        go.Scatter(
            uid="infeasible",
            name="infeasible trials (constraints not met)" + (", or latency unstable" if unstable else ""),
            mode="markers",
            x=[t.values[1] for t in infeasible],
            y=[t.values[0] for t in infeasible],
            marker={"color": INFEASIBLE_COLOR, "symbol": "x", "size": 9},
            **_hover(infeasible, axis, "infeasible"),
        )
    )
    xs, ys = _front_line(front, axis)
    fig.add_trace(
        go.Scatter(
            uid="front",
            name="Pareto front (feasible)",
            mode="lines",
            x=xs,
            y=ys,
            line={"color": FRONT_COLOR, "width": 2},
            hoverinfo="skip",
        )
    )
    teacher = present(study_record(study).teacher)
    if teacher and axis.teacher is not None:
        fig.add_trace(
            go.Scatter(
                uid="teacher",
                name="teacher (fp32 baseline)",
                mode="markers",
                x=[axis.teacher],
                y=[teacher["accuracy"]],
                marker={"color": TEACHER_COLOR, "symbol": "diamond", "size": 13},
                hovertemplate=(
                    f"teacher: fine-tuned fp32 {html.escape(str(teacher.get('base_model', '')))}<br>"
                    f"accuracy %{{y:.3f}}<br>p50 {teacher.get('latency_p50_ms', float('nan')):.2f} ms"
                    "<extra>teacher</extra>"
                ),
            )
        )
    fig.update_layout(
        title=f"Pareto front of study {html.escape(repr(study.study_name))}",
        xaxis_title=axis.label,
        yaxis_title="validation accuracy ↑",
        height=560,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def _active_knob_value(recipe: dict[str, Any], name: str) -> Any:
    """The knob's value, or NA where it cannot matter (``KnobSpec.inactive_when``, which suggest_recipe obeys)."""
    spec = KNOB.get(name)
    if spec is None:  # a key no longer (or not yet) in the table: shown as stored
        return recipe.get(name)
    if spec.inactive_when(recipe):
        return NA
    return spec.to_yaml(recipe.get(name))


def is_numeric(value: Any) -> bool:
    """An int or a float, NaN and inf included (the page formats them), but not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def knob_values(study: optuna.Study) -> dict[str, list[tuple[FrozenTrial, Any]]]:
    """Per knob that takes more than one value over the COMPLETE trials: (trial, value or NA), in KNOB_ORDER."""
    complete = completed_trials(study)
    recipes = {t.number: recipe for t in complete if (recipe := trial_record(t).recipe_dict)}
    trials = [t for t in complete if t.number in recipes]
    names = [k for k in KNOB_ORDER if any(k in recipes[t.number] for t in trials)]
    names += sorted({k for t in trials for k in recipes[t.number]} - set(names) - set(NOT_KNOBS))
    knobs = {}
    for name in names:
        values = [(t, _active_knob_value(recipes[t.number], name)) for t in trials]
        distinct = {json.dumps(v, sort_keys=True, default=str) for _, v in values if v != NA}
        if len(distinct) > 1:
            knobs[name] = values
    return knobs


def knob_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """Accuracy against latency, one small figure per knob that varies: a colour per value, or a colour scale."""
    axis = latency_axis(study)
    figures = {}
    for name, values in knob_values(study).items():
        fig = go.Figure()
        active = [(t, v) for t, v in values if v != NA]
        inactive = [t for t, v in values if v == NA]

        def symbols(trials):
            return ["circle" if is_feasible(t) else "x" for t in trials]

        if all(is_numeric(v) for _, v in active):
            trials = [t for t, _ in active]
            fig.add_trace(
                go.Scatter(
                    name=name,
                    mode="markers",
                    showlegend=False,
                    x=[t.values[1] for t in trials],
                    y=[t.values[0] for t in trials],
                    marker={
                        "color": [v for _, v in active],
                        "colorscale": "Viridis",
                        "showscale": True,
                        "size": 10,
                        "symbol": symbols(trials),
                        "colorbar": {"title": {"text": name}, "thickness": 12},
                    },
                    **_hover(trials, axis, f"{name}"),
                )
            )
        else:
            groups: dict[str, list[FrozenTrial]] = {}
            for t, v in active:
                groups.setdefault(str(v), []).append(t)
            for i, (value, trials) in enumerate(sorted(groups.items())):
                fig.add_trace(
                    go.Scatter(
                        name=f"{value}",
                        mode="markers",
                        x=[t.values[1] for t in trials],
                        y=[t.values[0] for t in trials],
                        marker={"color": PALETTE[i % len(PALETTE)], "size": 10, "symbol": symbols(trials)},
                        **_hover(trials, axis, f"{name}={value}"),
                    )
                )
        if inactive:
            fig.add_trace(
                go.Scatter(
                    name=NA,
                    mode="markers",
                    x=[t.values[1] for t in inactive],
                    y=[t.values[0] for t in inactive],
                    marker={"color": "#cccccc", "size": 8, "symbol": symbols(inactive)},
                    **_hover(inactive, axis, f"{name} n/a"),
                )
            )
        fig.update_layout(
            title={"text": name, "font": {"size": 14}},
            height=320,
            template="plotly_white",
            margin={"l": 50, "r": 20, "t": 40, "b": 45},
            legend={"title": {"text": name}},
            xaxis_title=axis.label,
            yaxis_title="accuracy ↑",
        )
        figures[name] = fig
    return figures


class ImportanceUnavailable(Exception):
    """Why knob importance cannot be computed for this study (shown on the page instead of the chart)."""


def param_importances(study: optuna.Study, index: int) -> dict[str, float]:
    """fANOVA importance (seeded) of each sampled knob for objective ``index``, over the COMPLETE trials."""
    complete = completed_trials(study)
    if len(complete) < 2:
        raise ImportanceUnavailable(f"knob importance needs at least 2 completed trials; the study has {len(complete)}")
    varying = {
        name
        for t in complete
        for name in t.params
        if len({json.dumps(u.params.get(name), default=str) for u in complete}) > 1
    }
    if not varying:
        raise ImportanceUnavailable(
            "knob importance needs knobs that vary; no sampled knob took more than one "
            "value over the completed trials (fixed knobs are not sampled)"
        )
    if importlib.util.find_spec("sklearn") is None:
        raise ImportanceUnavailable("knob importance (fANOVA) needs scikit-learn: pip install scikit-learn")
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=evaluator, target=lambda t: t.values[index]
        )
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        reason = first_line(exc)
        if "zero total variance" in reason:
            reason = "the objective has the same value in every completed trial"
        raise ImportanceUnavailable(f"knob importance could not be computed: {reason}") from None
    if not importances or not any(v > 0 for v in importances.values()):
        raise ImportanceUnavailable(
            "knob importance could not be computed: every knob scored 0 (no knob "
            "explains any of the objective's variation over the completed trials)"
        )
    return importances


def importance_figure(study: optuna.Study, index: int) -> go.Figure | str:
    """A bar chart of ``param_importances`` for objective ``index``, or the reason it cannot be computed."""
    labels = ["validation accuracy ↑", latency_axis(study).label]
    try:
        importances = param_importances(study, index)
    except ImportanceUnavailable as exc:
        return str(exc)
    ordered = sorted(importances.items(), key=lambda kv: kv[1])  # largest at the top of a horizontal bar chart
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in ordered],
            y=[k for k, _ in ordered],
            orientation="h",
            marker={"color": PALETTE[index % len(PALETTE)]},
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"knob importance for {labels[index]} (fANOVA, seed {IMPORTANCE_SEED})",
        xaxis_title="share of the objective's variance",
        height=120 + 36 * len(ordered),
        template="plotly_white",
        margin={"l": 110, "r": 20, "t": 50, "b": 45},
    )
    return fig
