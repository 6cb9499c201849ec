"""``latencysolver report``: one self-contained HTML page (plotly.js inlined once) and a PNG of the front.

The page holds the Pareto front (feasible, infeasible, the front itself and the teacher), accuracy against latency
coloured by each knob, fANOVA knob importance per objective, the raw latency samples of the front's trials and
the front as a table.  Each figure is built by its own small function returning a plotly ``Figure``;
``write_report`` puts them together and writes the files (the HTML through a temporary file, so a failure never
leaves a half-written page).
"""

from __future__ import annotations

import datetime
import html
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import optuna
import plotly.graph_objects as go
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from latencysolver.errors import ReportError, first_line
from latencysolver.files import atomic_file, check_writable
from latencysolver.results.figures import (
    PNG_HEIGHT,
    PNG_SCALE,
    PNG_WIDTH,
    ReportResult,
    importance_figure,
    is_numeric,
    knob_figures,
    latency_axis,
    pareto_figure,
)
from latencysolver.results.front import (
    completed_trials,
    front_rows,
    hardware_warning,
    interval_text,
    pareto_trials,
    unstable_trials,
)
from latencysolver.results.records import LATENCY_SAMPLES, is_feasible, present, study_record, trial_record
from latencysolver.results.repeats import RecipeRepeats, find_repeats
from latencysolver.results.samples import LatencySamples, latency_figure, load_latency_samples
from latencysolver.stats import Interval


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if is_numeric(value) else ""


def front_table_html(study: optuna.Study) -> str:
    """The front (``front_rows``) as a plain table, the teacher first."""
    columns: tuple[str, ...] = ("trial", "accuracy", "95% CI", "vs teacher (points, 95% CI)", "F1", "p50 ms")
    columns = (*columns, "speed-up", "layers", "parameters", "size MB", "recipe")
    head = "".join(f"<th>{c}</th>" for c in columns)
    rows = []
    teacher = present(study_record(study).teacher)
    if teacher:
        cells = (
            "teacher",
            _num(teacher.get("accuracy"), ".3f"),
            interval_text(_teacher_interval(study)),
            "",
            _num(teacher.get("f1"), ".3f"),
            _num(teacher.get("latency_p50_ms"), ".2f"),
            "1.00x",
            "",
            _num(teacher.get("parameters"), ","),
            _num(teacher.get("size_bytes", 0) / 1e6, ".1f"),
            "fine-tuned fp32 baseline",
        )
        rows.append('<tr class="teacher" data-trial="teacher">' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    for r in front_rows(study):
        cv = f" ±{r['speedup_cv']:.0%}" if is_numeric(r.get("speedup_cv")) else ""
        speedup = f"{r['speedup']:.2f}x{cv}" if is_numeric(r.get("speedup")) else ""
        cells = (
            r["trial"],
            _num(r["accuracy"], ".3f"),
            r["accuracy_interval"],
            r["vs_teacher"],
            _num(r.get("f1"), ".3f"),
            _num(r.get("latency_ms"), ".2f"),
            speedup,
            r.get("layers", ""),
            _num(r.get("parameters"), ","),
            _num(r.get("size_mb"), ".1f"),
            r["recipe"],
        )
        rows.append(f'<tr data-trial="{r["trial"]}">' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    if len(rows) == (1 if teacher else 0):
        rows.append(f'<tr><td colspan="{len(columns)}">(no completed feasible trials yet)</td></tr>')
    return f'<table id="front-table"><thead><tr>{head}</tr></thead><tbody>' + "".join(rows) + "</tbody></table>"


def repeats_html(repeats: Sequence[RecipeRepeats]) -> str:
    """The seed repeats of ``latencysolver confirm`` as a table section; empty when it never ran."""
    if not repeats:
        return ""
    head = "".join(
        f"<th>{c}</th>"
        for c in ("trial", "search-time validation", "validation", "test", "test vs teacher (points)", "speed-up")
    )
    rows = []
    for r in repeats:
        cells = (
            r.trial,
            f"{r.search_accuracy:.3f}",
            r.validation.describe(n=True) if r.validation else "n/a",
            r.test.describe() if r.test else "n/a",
            r.test_vs_teacher.describe(scale=100, digits=1) if r.test_vs_teacher else "n/a",
            r.speedup.describe(digits=2, suffix="x") if r.speedup else "n/a",
        )
        rows.append(f'<tr data-trial="{r.trial}">' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return (
        '<section><h2>Seed repeats</h2><p class="note">Each recipe re-run with new seeds by <code>latencysolver '
        "confirm</code> (mean ± sd over seeds): the search picked it by one noisy validation score, the repeats "
        'show what the recipe gives.</p><table id="repeats-table"><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _teacher_interval(study: optuna.Study) -> Interval | None:
    teacher = study_record(study).teacher
    return teacher.interval() if teacher else None


def _hardware_lines(trials: Sequence[FrozenTrial]) -> list[str]:
    groups: dict[str, tuple[str, list[int]]] = {}
    for t in trials:
        r = trial_record(t)
        raw, key = r.hardware, r.hardware_key or "unknown"
        if key not in groups:
            fingerprint = r.fingerprint()
            if fingerprint is not None:
                text = fingerprint.describe()
            else:
                text = "not recorded" if raw is None else json.dumps(raw)
            groups[key] = (text, [])
        groups[key][1].append(t.number)
    if len(groups) == 1:
        ((key, (text, _)),) = groups.items()
        return [f"{text} [{key}]"]
    return [f"{text} [{key}]: trials {numbers}" for key, (text, numbers) in sorted(groups.items())]


def header_html(study: optuna.Study) -> str:
    axis = latency_axis(study)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    feasible = [t for t in complete if is_feasible(t)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    other = len(trials) - len(complete) - len(failed)
    front = pareto_trials(study)
    record = study_record(study)
    teacher, data, bounds = present(record.teacher), present(record.data), present(record.constraints)
    items = [("objectives", f"validation accuracy ↑, {axis.label}")]
    if teacher:
        items.append(
            (
                "teacher",
                (
                    f"fine-tuned fp32 {teacher.get('base_model', '')}: accuracy "
                    f"{_num(teacher.get('accuracy'), '.3f')}, F1 {_num(teacher.get('f1'), '.3f')}, "
                    f"p50 {_num(teacher.get('latency_p50_ms'), '.2f')} ms (batch 1), "
                    f"{_num(teacher.get('parameters'), ',')} parameters"
                ),
            )
        )
    if data:
        items.append(
            (
                "data",
                (
                    f"{data.get('source')}: {data.get('train_rows')} train / "
                    f"{data.get('validation_rows')} validation rows (majority class "
                    f"{_num(data.get('majority_rate'), '.1%')} of validation), max length "
                    f"{data.get('max_length')}"
                ),
            )
        )
    for line in _hardware_lines(complete) or ["no completed trials yet"]:
        items.append(("hardware", line))
    items.append(
        (
            "trials",
            f"{len(trials)} in all: {len(complete)} complete ({len(feasible)} feasible, "
            f"{len(complete) - len(feasible)} infeasible), {len(failed)} failed"
            + (f", {other} running, waiting or pruned" if other else "")
            + f"; {len(front)} on the feasible Pareto front"
            + (
                f"; latency unstable, held off it: trials {held}"
                if (held := [t.number for t in unstable_trials(study)])
                else ""
            ),
        )
    )
    if bounds:
        floor = bounds.get("min_accuracy_resolved", "")
        ceiling = bounds.get("max_latency_ms")
        items.append(
            (
                "constraints",
                f"accuracy {'at least ' if is_numeric(floor) else ''}{floor}, "
                + (f"p50 latency at most {ceiling} ms" if ceiling else "no latency ceiling"),
            )
        )
    warning = hardware_warning(study)
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    warn = f'<p class="warning">{_e(warning)}</p>' if warning else ""
    return (
        f"<header><h1>latencysolver study <code>{_e(study.study_name)}</code></h1>"
        f'<dl id="summary">{rows}</dl>{warn}</header>'
    )


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; } dt { font-weight: 600; }
dd { margin: 0; } .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 1rem; }
.note { color: #555; font-style: italic; } .warning { color: #a94400; }
table { border-collapse: collapse; font-size: .9rem; } th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee;
        text-align: right; } td:last-child, th:last-child { text-align: left; font-family: monospace; }
tr.teacher { color: #666; }
"""

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def _div(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOTLY_CONFIG,
        default_height=f"{fig.layout.height or 450}px",
    )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def render_html(study: optuna.Study, samples: LatencySamples, repeats: Sequence[RecipeRepeats] = ()) -> str:
    """The whole page as one string: plotly.js inline once, every figure a div that calls Plotly.newPlot."""
    from plotly.offline import get_plotlyjs

    names = study.metric_names or ["accuracy", latency_axis(study).metric]
    knobs = knob_figures(study)
    knob_html = (
        "".join(f"<div>{_div(fig, f'knob-{_slug(name)}')}</div>" for name, fig in knobs.items())
        if knobs
        else '<p class="note">no knob took more than one value over the completed trials</p>'
    )
    importance_html = []
    for i, name in enumerate(names):
        fig = importance_figure(study, i)
        importance_html.append(
            _div(fig, f"importance-{_slug(name)}")
            if isinstance(fig, go.Figure)
            else f'<p class="note" id="importance-{_slug(name)}-note">{_e(name)}: {_e(fig)}</p>'
        )
    if samples.model:
        latency_html = _div(latency_figure(samples), "latency-samples")
    else:
        latency_html = '<p class="note">no front trial with a latency_samples.json artifact</p>'
    if samples.missing:
        latency_html += (
            f'<p class="note">trials {list(samples.missing)} have no {LATENCY_SAMPLES} artifact '
            "(added from outside latencysolver run?)</p>"
        )
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>latencysolver report: {_e(study.study_name)}</title>
<style>{STYLE}</style>
<script type="text/javascript">window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
{header_html(study)}
<section><h2>Pareto front</h2>
<p class="note">Hover a point for its trial number and recipe. Stars are the feasible Pareto front; crosses broke a
constraint (accuracy floor or latency ceiling) and are left out of it.</p>
{_div(pareto_figure(study), "pareto-front")}
</section>
<section><h2>The front</h2>
{front_table_html(study)}
</section>
{repeats_html(repeats)}
<section><h2>Accuracy vs latency, by knob</h2>
<p class="note">Every completed trial, coloured by one knob at a time (× = infeasible; n/a = the knob cannot matter
for that trial). Knobs that took one value in every trial are left out.</p>
<div class="grid">{knob_html}</div>
</section>
<section><h2>Knob importance</h2>
{"".join(importance_html)}
</section>
<section><h2>Latency of the front's trials</h2>
<p class="note">Every timed batch-1 call of each front trial's student, and of the fp32 teacher measured interleaved
with them (pooled over those trials).</p>
{latency_html}
</section>
<footer><p class="note">latencysolver report, generated {generated}. Self-contained: plotly.js is inlined, no
network needed.</p></footer>
</body>
</html>
"""


def _writable(path: Path, flag: str) -> Path:
    path = check_writable(path, flag, folder=False)  # a folder, a path under a file, a read-only folder
    if not path.parent.is_dir():
        raise ReportError(f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


PNG_FIX = "install Chromium for kaleido (apt-get install chromium) or point BROWSER_PATH at a Chrome/Chromium binary"


def _browser_missing() -> str | None:
    """Why kaleido cannot render a PNG here, or None when it can try."""
    if importlib.util.find_spec("kaleido") is None:
        return "kaleido is not installed (pip install 'kaleido>=1.0')"
    try:
        from choreographer.browsers.chromium import Chromium

        path = Chromium.find_browser(skip_local=False)
    except (ImportError, AttributeError, TypeError, OSError, RuntimeError, ValueError):
        # an internal API of kaleido's browser driver: if it moved, let kaleido itself decide
        return None
    if path is None:
        return f"no Chrome/Chromium found; {PNG_FIX}"
    if not Path(path).is_file():
        return f"no browser at {path!r}; {PNG_FIX}"
    return None


def write_png(fig: go.Figure, png: Path) -> str | None:
    """The figure as a PNG via kaleido; a warning line instead when no browser can render it."""
    reason = _browser_missing()
    if reason is None:
        try:
            with atomic_file(png, "--png") as tmp:
                fig.write_image(str(tmp), format="png", width=PNG_WIDTH, height=PNG_HEIGHT, scale=PNG_SCALE)
            return None
        except RuntimeError as exc:  # kaleido: ChromeNotFoundError, BrowserFailedError (plotly wraps some)
            reason = f"{first_line(exc)}; {PNG_FIX}"
    return f"PNG of the front skipped: {reason}"


def write_report(
    study: optuna.Study,
    out: str | Path,
    png: str | Path | Literal[False] | None = None,
    artifacts: str | None = None,
    *,
    storage: BaseStorage | str,
) -> ReportResult:
    """Write the HTML page to ``out`` and the front as a PNG to ``png`` (None: ``out`` with ``.png``; False: none).
    ``storage``: the one ``study`` was opened on (or its URL), for the trials' artifacts.

    Raises ReportError / StorageError (one line) before writing anything when an output folder is missing or the
    study's artifact folder cannot be found.
    """
    out = _writable(Path(out), "--out")
    png_path = None if png is False else _writable(Path(png) if png else out.with_suffix(".png"), "--png")
    if png_path is not None and png_path.resolve() == out.resolve():
        raise ReportError(f"--png {str(png_path)!r}: the same file as --out")
    latency_axis(study)  # a study with the wrong number of objectives stops here
    front = pareto_trials(study)
    samples = load_latency_samples(study, front, artifacts, storage=storage)
    page = render_html(study, samples, find_repeats(study, storage))
    with atomic_file(out, "--out") as tmp:
        tmp.write_text(page, encoding="utf-8")
    warnings = []
    if png_path is not None:
        warning = write_png(pareto_figure(study), png_path)
        if warning:
            warnings.append(warning)
            png_path = None
    complete = completed_trials(study)
    feasible = sum(is_feasible(t) for t in complete)
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    return ReportResult(
        out=out,
        png=png_path,
        trials=len(complete),
        feasible=feasible,
        infeasible=len(complete) - feasible,
        failed=failed,
        front=tuple(t.number for t in front),
        warnings=tuple(warnings),
    )
