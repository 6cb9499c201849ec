"""``latencysolver report``: the HTML page opened in a real (headless) Chromium, the PNG, importance, the table,
and the CLI's errors.

Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`, `.ci/chromium.sh`).
Without them the browser tests skip, unless LATENCYSOLVER_REQUIRE_CHROMIUM=1 (CI): then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct

import optuna
import plotly.graph_objects as go
import pytest
from optuna.trial import TrialState

from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.errors import OutputError, StorageError
from latencysolver.results.figures import (
    PNG_HEIGHT,
    PNG_SCALE,
    PNG_WIDTH,
    importance_figure,
    knob_figures,
    pareto_figure,
)
from latencysolver.results.front import front_rows, pareto_trials
from latencysolver.results.records import StudyRecord, is_feasible, study_record, trial_record, write_study_record
from latencysolver.results.report import write_report
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from tests.conftest import write_study_yaml

REQUIRE_ENV = "LATENCYSOLVER_REQUIRE_CHROMIUM"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FEASIBLE_POINTS = "#pareto-front .scatterlayer .trace.tracefeasible .points path.point"
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # set_metric_names


def _unavailable(reason: str) -> None:
    """Skip, or fail where the environment promises a browser (CI sets LATENCYSOLVER_REQUIRE_CHROMIUM=1)."""
    if os.environ.get(REQUIRE_ENV, "") == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver, or .ci/chromium.sh)")


def _find_chromium() -> str | None:
    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary kaleido and selenium use; skip (or fail, see above) without one."""
    path = _find_chromium()
    if path is None:
        _unavailable("no Chromium/Chrome on PATH (nor at $BROWSER_PATH)")
    return path


@pytest.fixture(scope="module")
def chromium_driver(chromium):
    """A headless Chromium under selenium that records the page's console."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        _unavailable("no chromedriver on PATH")
    options = Options()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report_study(tmp_path_factory, tiny_model_dir, synthetic_data_dir, session_cache):
    """Four real trials (rank and alpha fixed, the other knobs sampled), every one feasible by its floor of 0;
    then what other workers might report: a feasible trial more accurate and slower than all of them (so the front
    has two points, whatever the tiny model learned), two infeasible ones that would dominate, and a FAIL."""
    folder = tmp_path_factory.mktemp("report-study")
    space = {
        "prune_ratio": {"choices": [0.0, 0.5]},
        "quant_dtype": {"choices": ["fp32", "int8"]},
        "skip_prob": {"choices": [0.0, 0.5]},
        "temperature": {"low": 1.0, "high": 4.0},
    }  # rank, alpha: fixed
    config = load_study_config(
        write_study_yaml(
            folder,
            tiny_model_dir,
            synthetic_data_dir,
            n_trials=4,
            search_space=space,
            constraints={"min_accuracy": 0.0},
            early_stop={"after": None},
        )
    )
    study = run_study(config, RunOptions(cache_dir=session_cache, progress=False), log=lambda _: None)
    real = study.get_trials()
    assert len(real) == 4 and all(t.state == TrialState.COMPLETE and is_feasible(t) for t in real)
    best_accuracy = max(t.values[0] for t in real)
    best_speedup = max(t.values[1] for t in real)
    study.add_trial(
        optuna.trial.create_trial(
            params=real[-1].params,
            distributions=real[-1].distributions,
            values=[min(1.0, best_accuracy + 0.02), min(t.values[1] for t in real) / 2],
            user_attrs=real[-1].user_attrs,
            constraints={"min_accuracy": -0.1, "max_latency_ms": 0.0},
            system_attrs={k: v for k, v in real[-1].system_attrs.items() if k.startswith("artifacts:")},
        )
    )  # its files
    for i, source in enumerate(real[:2]):  # would dominate everything, but breaks the accuracy floor
        study.add_trial(
            optuna.trial.create_trial(
                params=source.params,
                distributions=source.distributions,
                values=[min(1.0, best_accuracy + 0.05 * (i + 1)), best_speedup * (2 + i)],
                user_attrs=source.user_attrs,
                constraints={"min_accuracy": 0.3, "max_latency_ms": 0.0},
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            params=real[0].params,
            distributions=real[0].distributions,
            user_attrs={"fail_reason": "RuntimeError: loss became nan"},
        )
    )
    return config, study, folder


@pytest.fixture(scope="module")
def report(report_study):
    """The report of that study, HTML and PNG (the PNG only where a browser is found)."""
    config, study, folder = report_study
    return write_report(study, folder / "report.html", storage=config.storage)


def _html(result) -> str:
    return result.out.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ the page


def test_report_renders_in_chromium_without_console_errors(report_study, report, chromium_driver):
    from selenium.webdriver.support.ui import WebDriverWait

    _, study, _ = report_study
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    feasible = [t for t in complete if is_feasible(t)]
    assert 0 < len(feasible) < len(complete)  # both traces have points
    driver = chromium_driver
    driver.get(report.out.resolve().as_uri())
    # every figure drawn: each graph div holds its SVG, and the front's points are there
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "const g = Array.from(document.querySelectorAll('.plotly-graph-div'));"
            "return g.length > 0 && g.every(x => x.querySelector('svg.main-svg'))"
            f" && document.querySelectorAll({FEASIBLE_POINTS!r}).length > 0;"
        )
    )
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe

    def count(selector: str) -> int:
        return driver.execute_script(f"return document.querySelectorAll({selector!r}).length;")

    # points drawn in the DOM, per trace (plotly classes each trace's group "trace<uid>")
    assert count(FEASIBLE_POINTS) == len(feasible)
    assert count("#pareto-front .scatterlayer .trace.traceinfeasible .points path.point") == len(complete) - len(
        feasible
    )
    assert count("#pareto-front .scatterlayer .trace.traceteacher .points path.point") == 1
    assert count("#pareto-front .scatterlayer .trace.tracefront .points path.point") == 0  # a line, no markers
    assert count("#pareto-front .scatterlayer .trace.tracefront path.js-line") == 1
    stars = driver.execute_script(
        "return document.getElementById('pareto-front').data[0].marker.symbol.filter(s => s === 'star').length;"
    )
    assert stars == len(pareto_trials(study))
    # the other sections drew too: a figure per varying knob, importance, latency boxes
    assert count("[id^='knob-'] svg.main-svg") >= 1
    assert count("#latency-samples .boxlayer .trace") == len(pareto_trials(study)) + 1  # + the teacher


def test_report_is_self_contained_with_plotly_js_once(report):
    page = _html(report)
    assert not re.search(r"<script[^>]+src=", page)  # nothing loaded from anywhere
    assert '<script src="http' not in page
    assert page.count("* plotly.js v") == 1  # the bundle's banner: inlined exactly once
    assert page.count("Plotly.newPlot(") >= 4


def test_header_names_study_teacher_data_hardware_and_counts(report_study, report):
    _, study, _ = report_study
    page = _html(report)
    header = page[page.index("<header>") : page.index("</header>")]
    record, first = study_record(study), trial_record(study.get_trials()[0])
    assert "tiny" in header and f"{record.teacher.accuracy:.3f}" in header
    assert f"{record.data.validation_rows} validation rows" in header
    assert first.hardware["cpu_model"] in header and first.hardware_key in header
    assert "8 in all: 7 complete (5 feasible, 2 infeasible), 1 failed" in header
    assert (report.trials, report.feasible, report.infeasible, report.failed) == (7, 5, 2, 1)


def test_png_of_the_front(report, chromium):
    assert report.png is not None, f"no PNG although a browser is at {chromium}: {report.warnings}"
    assert report.png == report.out.with_suffix(".png")
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (report.out, report.png):  # written through a private temporary file, then made ordinary
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    data = report.png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (PNG_WIDTH * PNG_SCALE, PNG_HEIGHT * PNG_SCALE)
    assert len(data) > 20_000  # a drawn figure, not an empty canvas


def test_without_a_browser_the_png_is_skipped_with_one_warning(report_study, tmp_path, monkeypatch, capsys):
    config, _, _ = report_study
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    out = tmp_path / "r.html"
    assert main(["report", "--study", "tiny", "--storage", config.storage, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert (
        len(warnings) == 1 and "PNG of the front skipped" in warnings[0] and "apt-get install chromium" in warnings[0]
    )
    assert out.is_file() and not out.with_suffix(".png").exists()
    assert (
        captured.out.strip()
        == f"report: 7 trials (5 feasible, {len(pareto_trials(report_study[1]))} on the front) -> {out}"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary files left


# ------------------------------------------------------------------------------------------------ the figures


def test_pareto_figure_traces_and_axes(report_study):
    _, study, _ = report_study
    fig = pareto_figure(study)
    traces = {t.uid: t for t in fig.data}
    assert set(traces) == {"feasible", "infeasible", "front", "teacher"}
    assert traces["front"].mode == "lines"
    front = pareto_trials(study)
    assert len(front) >= 2  # the fixture's accurate, slow trial and at least one real one
    assert {p for p in zip(traces["front"].x, traces["front"].y, strict=True)} >= {
        (t.values[1], t.values[0]) for t in front
    }
    assert list(traces["teacher"].x) == [1.0]  # the speed-up of the teacher over itself
    assert "speed-up" in fig.layout.xaxis.title.text and "↑" in fig.layout.xaxis.title.text
    hover = [row[1] for row in traces["feasible"].customdata]
    assert all(text.startswith("prune=") for text in hover)  # Recipe.describe()


def test_pareto_figure_of_a_latency_ms_study(report_study):
    config, study, _ = report_study
    ms = optuna.create_study(study_name="tiny-ms", storage=config.storage, directions=["maximize", "minimize"])
    ms.set_metric_names(["accuracy", "latency_ms"])
    teacher = study_record(study).teacher
    write_study_record(ms, StudyRecord(teacher=teacher))
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        ms.add_trial(
            optuna.trial.create_trial(
                params=t.params,
                distributions=t.distributions,
                values=[t.values[0], trial_record(t).latency_p50_ms],
                user_attrs=t.user_attrs,
            )
        )
    fig = pareto_figure(ms)
    assert "p50 latency ms" in fig.layout.xaxis.title.text and "↓" in fig.layout.xaxis.title.text
    teacher_trace = next(t for t in fig.data if t.uid == "teacher")
    assert list(teacher_trace.x) == [teacher.latency_p50_ms]


def test_knob_figures_cover_the_knobs_that_vary(report_study):
    _, study, _ = report_study
    figures = knob_figures(study)
    assert "temperature" in figures and "quant_dtype" in figures
    assert "rank" not in figures and "alpha" not in figures  # fixed in this study's space
    quant = figures["quant_dtype"]  # categorical: a trace per value, with a legend
    values = {trial_record(t).recipe_dict["quant_dtype"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert {t.name for t in quant.data} == values
    temperature = figures["temperature"].data[0]  # numeric: one trace on a colour scale
    assert temperature.marker.showscale and len(temperature.marker.color) == 7


def test_importance_shows_the_knob_that_varies_not_the_fixed_one(report_study, report):
    _, study, _ = report_study
    fig = importance_figure(study, 1)  # the speed-up: measured, so it varies from trial to trial
    assert isinstance(fig, go.Figure), fig
    knobs = set(fig.data[0].y)
    assert "temperature" in knobs and {"rank", "alpha"}.isdisjoint(knobs)
    assert all(0.0 <= v <= 1.0 for v in fig.data[0].x) and sum(fig.data[0].x) == pytest.approx(1.0)
    assert importance_figure(study, 1).data[0].x == fig.data[0].x  # seeded: the same numbers again
    assert 'id="importance-speedup"' in _html(report)


def test_with_one_trial_the_report_explains_why_there_is_no_importance(report_study, tmp_path):
    config, study, _ = report_study
    one = optuna.create_study(study_name="tiny-one", storage=config.storage, directions=["maximize", "maximize"])
    one.set_metric_names(["accuracy", "speedup"])
    for key, value in study.user_attrs.items():
        one.set_user_attr(key, value)
    one.add_trial(study.get_trials()[0])  # its artifacts come along (their metadata are trial system attrs)
    result = write_report(one, tmp_path / "one.html", png=False, storage=config.storage)
    page = _html(result)
    for name in ("accuracy", "speedup"):
        note = re.search(rf'id="importance-{name}-note">([^<]*)<', page)
        assert note and "needs at least 2 completed trials; the study has 1" in note.group(1)
    assert 'id="pareto-front"' in page and 'id="latency-samples"' in page
    assert result.png is None and result.front == (study.get_trials()[0].number,)


def test_front_table_lists_exactly_the_front(report_study, report):
    _, study, _ = report_study
    page = _html(report)
    table = page[page.index('<table id="front-table">') : page.index("</table>")]
    rows = re.findall(r'<tr[^>]*data-trial="([^"]+)"', table)
    assert rows[0] == "teacher"
    front = [t.number for t in pareto_trials(study)]
    assert [int(r) for r in rows[1:]] == front == [r["trial"] for r in front_rows(study)]
    infeasible = [t.number for t in study.get_trials(states=(TrialState.COMPLETE,)) if not is_feasible(t)]
    assert infeasible and not set(infeasible) & {int(r) for r in rows[1:]}


def test_latency_boxes_hold_the_front_trials_samples(report_study, report):
    _, study, _ = report_study
    page = _html(report)
    for t in pareto_trials(study):
        assert f'"name":"trial {t.number}"' in page
    assert '"name":"teacher (fp32)"' in page


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("case", ["missing study", "missing artifacts", "missing out folder"])
def test_cli_errors_are_one_line_and_write_nothing(report_study, tmp_path, capsys, case):
    config, _, _ = report_study
    out = tmp_path / "r.html"
    args = ["report", "--study", "tiny", "--storage", config.storage, "--out", str(out)]
    if case == "missing study":
        args[2], expected = "nope", "no study named 'nope'"
    elif case == "missing artifacts":
        args += ["--artifacts", str(tmp_path / "gone")]
        expected = "artifact folder"
    else:
        out = tmp_path / "no-such-folder" / "r.html"
        args[args.index("--out") + 1] = str(out)
        expected = "folder"
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latencysolver: error:") and expected in err[0], err
    assert list(tmp_path.iterdir()) == []  # no HTML, no PNG, no temporary file


def test_library_errors_are_latencysolver_errors(report_study, tmp_path):
    config, study, _ = report_study
    with pytest.raises(StorageError, match="artifact folder"):
        write_report(study, tmp_path / "r.html", png=False, artifacts=str(tmp_path / "gone"), storage=config.storage)
    with pytest.raises(OutputError, match="is a folder"):
        write_report(study, tmp_path, png=False, storage=config.storage)
    assert list(tmp_path.iterdir()) == []
