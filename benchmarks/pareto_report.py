"""benchmarks/pareto.py's output: the table (rich on the terminal, markdown in results.md), the summary lines, and
the front figure (front.html, front.png).

A helper of pareto.py only: no other benchmark imports it (shared code lives in the package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pareto_measure import BASELINES, Row
from pareto_targets import Goals

from latencysolver.config.recipe import Recipe
from latencysolver.results.front import difference_text
from latencysolver.results.records import trial_record
from latencysolver.results.scoring import markdown_table
from latencysolver.stats import Interval, PairedComparison, SeedSummary, summarize

# where each baseline's label goes in the plot: their points sit close together near 1-3x and the same accuracy
LABELS = {
    "fp32 torch teacher": "top center",
    "ORT fp32 teacher": "bottom center",
    "ORT int8 teacher": "top center",
    "torch int8 teacher": "middle right",
}

COLUMNS = (
    "",
    "recipe",
    "val acc [95% CI]",
    "val vs teacher (pts)",
    "test acc [95% CI]",
    "test vs teacher (pts)",
    "p50 ms",
    "speed-up (paired)",
    "params",
    "size MB",
)
REPEAT_COLUMNS = (
    "seeds",
    "val, seed mean ± sd",
    "test, seed mean ± sd",
    "val vs teacher, seed-pooled (pts) [95% CI]",
    "test vs teacher, seed-pooled (pts) [95% CI]",
    "held-out (val + test) vs teacher, seed-pooled (pts) [95% CI]",
    "speed-up, seeds",
)
RETRAIN_COLUMNS = ("retrained: steps", "retrained val", "retrained test", "retrained test vs teacher (pts)")


def _accuracy_text(value: float | None, interval: dict[str, Any] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} {Interval.from_dict(interval).describe(estimate=False)}" if interval else f"{value:.3f}"


def _difference(paired: dict[str, Any] | None) -> str:
    return difference_text(PairedComparison.from_dict(paired)) if paired else "–"


def cells(row: Row) -> tuple[str, ...]:
    return (
        row.name,
        row.recipe,
        _accuracy_text(row.val_accuracy, row.val_interval),
        _difference(row.val_vs_teacher),
        _accuracy_text(row.test_accuracy, row.test_interval),
        _difference(row.test_vs_teacher),
        f"{row.p50_ms:.2f}",
        f"{row.speedup:.2f}x ±{row.speedup_cv:.0%}",
        f"{row.parameters:,}",
        f"{row.size_bytes / 1e6:.1f}",
    )


def repeat_cells(row: Row) -> tuple[str, ...]:
    """The seed repeats' columns (``--confirm``): mean ± sd over seeds; "–" for a baseline."""
    r = row.repeats
    if not r:
        return ("–",) * len(REPEAT_COLUMNS)

    def summary(key: str, **style: Any) -> str:
        return SeedSummary.from_dict(r[key]).describe(**style) if r.get(key) else "n/a"

    def pooled(raw: dict[str, Any] | None) -> str:
        if not raw:
            return "n/a"
        i = Interval.from_dict(raw)
        return f"{100 * i.estimate:+.1f} [{100 * i.low:+.1f}, {100 * i.high:+.1f}]"

    return (
        f"{r['finished']}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
        summary("validation"),
        summary("test"),
        pooled(row.repeats_val_vs_teacher),
        pooled(row.repeats_test_vs_teacher),
        pooled(row.repeats_heldout_vs_teacher),
        summary("speedup", digits=2, suffix="x"),
    )


def retrain_cells(row: Row) -> tuple[str, ...]:
    """The retrained version's columns (``--retrain``); "–" for a baseline or a recipe not retrained."""
    r = row.retrained
    if not r:
        return ("–",) * len(RETRAIN_COLUMNS)
    test = "–" if r["test"] is None else f"{r['test']:.3f}"
    return (str(r["steps"]), f"{r['validation']:.3f}", test, _difference(r["test_vs_teacher"]))


def columns_of(rows: list[Row]) -> tuple[tuple[str, ...], Any]:
    """The table's columns for these rows (the repeat and retrain columns where any row has them) and a function
    from a row to its cells."""
    repeats, retrained = any(r.repeats for r in rows), any(r.retrained for r in rows)
    columns = COLUMNS + (REPEAT_COLUMNS if repeats else ()) + (RETRAIN_COLUMNS if retrained else ())

    def row_cells(row: Row) -> tuple[str, ...]:
        return cells(row) + (repeat_cells(row) if repeats else ()) + (retrain_cells(row) if retrained else ())

    return columns, row_cells


def summary_lines(results: dict[str, Any]) -> list[str]:
    hv = results["hypervolume"]
    ref = hv["reference_point"]
    lines = [
        (
            f"hypervolume of the feasible trials in (validation accuracy ↑, speed-up ↑) above the reference "
            f"point (accuracy {ref['accuracy']:.3f} = validation majority class, speed-up {ref['speedup']:.1f}x):"
        )
    ]
    for sampler, arms in hv["by_sampler"].items():
        values = [a["hypervolume"] for a in arms]
        spread = f" — mean {summarize(values).describe(digits=4)}" if len(values) > 1 else ""
        each = ", ".join(
            f"seed {a['seed']}: {a['hypervolume']:.4f} ({a['feasible']}/{a['trials']} feasible)" for a in arms
        )
        lines.append(f"  {sampler}: {each}{spread}")
    if not hv["by_sampler"].get("random"):
        lines.append("  random search: not run")
    for t in results["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "not decided"}[t["met"]]
        lines.append(f"target: {t['name']}: {verdict} — {t['detail']}")
    lines.append(f"wall time: {results['wall_seconds'] / 60:.1f} min; budget: {results['budget']}")
    if results["noise_warning"]:
        lines.append(results["noise_warning"])
    return lines


def title(results: dict[str, Any]) -> str:
    return f"{results['data']['name']}: baselines and the Pareto front of study {results['study']['name']!r}"


def print_results(rows: list[Row], results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns, row_cells = columns_of(rows)
    table = Table(title=title(results))
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 2 else "right")
    for i, row in enumerate(rows):
        table.add_row(*row_cells(row), end_section=i == len(BASELINES) - 1)
    Console(width=260).print(table)
    for line in summary_lines(results):  # plain lines: rich would wrap them at its width
        print(line, flush=True)


def markdown(rows: list[Row], results: dict[str, Any]) -> str:
    columns, row_cells = columns_of(rows)
    table = markdown_table(columns, [row_cells(r) for r in rows], left=2)
    data, protocol = results["data"], results["protocol"]
    notes = (
        f"Data: {data['source']} ({data['train']} train / {data['validation']} validation / {data['test']} test "
        f"rows). Latency: {protocol}.\nHardware: {results['hardware']}. Run {results['date']}.\n"
    )
    return f"# {data['name']}: latencysolver against its baselines\n\n{notes}\n{table}\n" + "".join(
        f"  - {line.strip()}\n" if line.startswith("  ") else f"- {line}\n" for line in summary_lines(results)
    )


def figure(
    study: optuna.Study,
    random_study: optuna.Study | None,
    front: list[Row],
    baselines: list[Row],
    reference: tuple[float, float],
    goals: Goals,
    name: str,
):
    import plotly.graph_objects as go

    def trials(s: optuna.Study) -> list[FrozenTrial]:
        return s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def hover(t: FrozenTrial) -> str:
        return f"trial {t.number}<br>{Recipe.from_dict(trial_record(t).recipe_dict).describe()}"

    fig = go.Figure()
    arms = [(study, 0.35, {"color": "#1f77b4", "size": 8})]
    if random_study is not None:
        arms.append((random_study, 0.6, {"color": "#ff7f0e", "size": 8, "symbol": "x"}))
    for arm, opacity, marker in arms:  # every finished trial of the search, and of random search beside it
        done = trials(arm)
        fig.add_trace(
            go.Scatter(
                x=[t.values[1] for t in done],
                y=[t.values[0] for t in done],
                mode="markers",
                name=f"{arm.study_name}: all trials",
                opacity=opacity,
                text=[hover(t) for t in done],
                marker=marker,
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
            name="Pareto front (feasible), 95% CI",
            text=[f"{r.name}<br>{r.recipe}" for r in ordered],
            error_y=_error_bars(ordered),
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
            error_y=_error_bars(baselines),
        )
    )
    teacher = baselines[0]
    fig.add_hline(
        y=teacher.val_accuracy - goals.margin,
        line_dash="dot",
        line_color="green",
        annotation_text=f"teacher - {goals.margin * 100:g} points (the non-inferiority margin)",
        annotation_position="bottom left",
    )
    fig.add_vline(
        x=goals.speedup,
        line_dash="dot",
        line_color="green",
        annotation_text=f"{goals.speedup:g}x",
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
        + [goals.speedup]
        + [t.values[1] for s in (study, random_study) if s is not None for t in trials(s)]
    )
    fig.update_xaxes(range=[0, fastest * 1.15])  # room for the labels of the fastest points
    fig.update_layout(
        title=f"{name} validation accuracy vs paired speed-up over the fp32 torch teacher (batch 1)",
        xaxis_title="speed-up over the fp32 torch teacher (paired, batch 1)",
        yaxis_title="validation accuracy",
        template="plotly_white",
        width=1000,
        height=600,
    )
    return fig


def _error_bars(rows: list[Row]) -> dict[str, Any]:
    """Each row's 95% validation interval as an asymmetric vertical error bar (0 where not measured)."""
    lows = [Interval.from_dict(r.val_interval).low if r.val_interval else r.val_accuracy for r in rows]
    highs = [Interval.from_dict(r.val_interval).high if r.val_interval else r.val_accuracy for r in rows]
    return {
        "type": "data",
        "symmetric": False,
        "array": [h - r.val_accuracy for h, r in zip(highs, rows, strict=True)],
        "arrayminus": [r.val_accuracy - lo for lo, r in zip(lows, rows, strict=True)],
        "thickness": 1,
        "color": "#555555",
    }


def write_plot(fig, out: Path, log) -> str | None:
    """front.html (self-contained, works offline) and front.png via kaleido; a warning line if the PNG fails."""
    fig.write_html(str(out / "front.html"), include_plotlyjs=True)
    try:
        fig.write_image(str(out / "front.png"), width=1000, height=600, scale=2)
    # kaleido needs Chrome/Chromium (Debian: /usr/bin/chromium) and raises its own error types; the HTML is written
    except Exception as exc:  # noqa: BLE001
        (out / "front.png").unlink(missing_ok=True)
        warning = f"warning: front.png not written (kaleido: {type(exc).__name__}: {str(exc).strip()[:200]})"
        log(warning)
        return warning
    return None
