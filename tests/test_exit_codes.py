"""The error classes' tree, the fields a ConfigError carries, and the CLI's exit codes (docs/guides/errors.md):
0 done, 1 a user error (LatencySolverError), 2 a usage error (argparse), 130 Ctrl-C."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

import latencysolver.cli.commands as commands
from latencysolver import errors
from latencysolver.cli import main
from latencysolver.config.study import LatencyConfig, load_study_config
from latencysolver.config.training import TrainConfig
from latencysolver.errors import (
    CompressionRefused,
    ConfigError,
    FieldError,
    LatencySolverError,
    ModelError,
    ReportError,
    ResultsError,
    SelectionError,
    StorageError,
)
from latencysolver.search.workers import Terminated

ERROR_CLASSES = [
    c
    for _, c in inspect.getmembers(errors, inspect.isclass)
    if issubclass(c, BaseException) and c.__module__ == errors.__name__
]


# ------------------------------------------------------------------------------------------------ the tree


def test_every_error_class_is_under_the_one_root():
    assert len(ERROR_CLASSES) >= 11
    assert all(issubclass(c, LatencySolverError) for c in ERROR_CLASSES), ERROR_CLASSES


def test_each_error_has_its_parent():
    assert SelectionError.__mro__[1:3] == (ResultsError, LatencySolverError)
    assert not issubclass(SelectionError, StorageError)  # "no trial satisfies the rule" is not a storage fault
    assert ReportError.__mro__[1] is ResultsError
    assert issubclass(CompressionRefused, ModelError) and issubclass(CompressionRefused, ValueError)
    assert issubclass(FieldError, ConfigError) and issubclass(FieldError, ValueError)


def test_the_modules_that_raise_them_use_the_classes_of_errors_py():
    from latencysolver.compression import architectures, layer_skip
    from latencysolver.results import figures, report, selection

    assert selection.SelectionError is SelectionError
    assert figures.ReportError is ReportError and report.ReportError is ReportError
    assert (
        architectures.CompressionRefused is CompressionRefused and layer_skip.CompressionRefused is CompressionRefused
    )


# ------------------------------------------------------------------------------------------------ ConfigError fields


def test_a_dataclass_check_names_its_field_and_value():
    with pytest.raises(FieldError, match=r"^warmup must be >= 0, but got -1$") as info:
        LatencyConfig(warmup=-1)
    assert (info.value.key, info.value.value, info.value.file) == ("warmup", -1, None)
    with pytest.raises(ValueError) as info:  # still a ValueError, as these checks raised before
        TrainConfig(batch_size=0)
    assert (info.value.key, info.value.value) == ("batch_size", 0)


@pytest.mark.parametrize(
    "yaml_text, key, value, message",
    [
        ("distillation: {steps: 0}\n", "distillation.steps", 0, "distillation.steps: steps must be > 0, but got 0"),
        (
            "workers: {heartbeat_interval: 30, grace_period: 10}\n",
            "workers.grace_period",
            10,
            "workers.grace_period: grace_period must be > heartbeat_interval, but got 10 <= 30",
        ),
        ("latency: {warmup: -2}\n", "latency.warmup", -2, "latency.warmup: warmup must be >= 0, but got -2"),
        ("distillation: {steps: ten}\n", "distillation.steps", "ten", "distillation.steps: expected an integer"),
        ("cnn: {kernel_sizes: [3, x]}\n", "cnn.kernel_sizes[1]", "x", "cnn.kernel_sizes[1]: expected an integer"),
        ("sampler: {name: grid}\n", "sampler.name", "grid", "sampler.name: expected one of"),
        ("latency: 3\n", "latency", 3, "latency: expected a mapping, got 3"),
    ],
)
def test_a_bad_study_file_error_carries_file_key_and_value(tmp_path, yaml_text, key, value, message):
    path = tmp_path / "study.yaml"
    path.write_text("search_space: {}\n" + yaml_text)
    with pytest.raises(ConfigError) as info:
        load_study_config(path)
    exc = info.value
    assert (exc.file, exc.key, exc.value) == (str(path), key, value)
    assert str(exc).startswith(f"{path}: {message}"), str(exc)


def test_an_unknown_key_has_no_value(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("search_space: {}\nteacher: {epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"teacher\.epoch: unknown key") as info:
        load_study_config(path)
    assert (info.value.file, info.value.key, info.value.has_value) == (str(path), "teacher.epoch", False)


@pytest.mark.parametrize(
    "option, value, field",
    [
        ("--threads", "0", "threads"),
        ("--rows", "-1", "rows"),
        ("--warmup", "-1", "warmup"),
        ("--repeats", "0", "repeats"),
    ],
)
def test_bench_names_the_option_from_the_field_not_from_the_message(tmp_path, capsys, option, value, field):
    # the settings are checked before the model is looked at, so a folder that does not exist is fine here
    assert main(["bench", str(tmp_path / "no-model"), option, value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"latencysolver: error: bench: {option}: {field} must be "
        f"{'>= 0' if field == 'warmup' else '> 0'}, but got {value}"
    ]


# ------------------------------------------------------------------------------------------------ exit codes


def test_usage_error_exits_2_through_argparse(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run"])  # the study YAML is a required argument
    assert info.value.code == 2
    assert "usage: latencysolver run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["pareto", "--study", "x", "--no-such-option"])
    assert info.value.code == 2


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("bad key"),
        StorageError("no such database"),
        SelectionError("none"),
        ReportError("no folder"),
        CompressionRefused("layer skip: ALBERT"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_user_error_exits_1_with_one_line(monkeypatch, capsys, error):
    def handler(args):
        raise error

    monkeypatch.setattr(commands, "cmd_pareto", handler)
    assert main(["pareto", "--study", "x", "--storage", "sqlite:///unused.db"]) == 1
    assert capsys.readouterr().err == f"latencysolver: error: {error}\n"


@pytest.mark.parametrize(
    "interrupt, code, message",
    [(KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupt_exits_130_or_143(monkeypatch, capsys, interrupt, code, message):
    def handler(args):
        raise interrupt

    monkeypatch.setattr(commands, "cmd_pareto", handler)
    assert main(["pareto", "--study", "x", "--storage", "sqlite:///unused.db"]) == code
    assert capsys.readouterr().err == f"latencysolver: {message}\n"


def test_a_bug_is_not_an_exit_code(monkeypatch):
    def handler(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(commands, "cmd_pareto", handler)
    with pytest.raises(RuntimeError, match="a bug"):  # the traceback is kept, not turned into "error: ..."
        main(["pareto", "--study", "x", "--storage", "sqlite:///unused.db"])


def test_the_process_exit_codes(tmp_path):
    """``python -m latencysolver``: what a shell sees, 2 for a usage error and 1 for a user error."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("LATENCYSOLVER_STORAGE", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "latencysolver", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
            check=False,
        )

    usage = run("export", "--study", "x")  # --out is required
    assert usage.returncode == 2 and "usage:" in usage.stderr
    user = run("pareto", "--study", "x", "--storage", f"sqlite:///{tmp_path / 'missing.db'}")
    # one line, the error: nothing else (an import's warning, a progress bar) reaches a real process's stderr
    assert user.returncode == 1 and len(user.stderr.strip().splitlines()) == 1, user.stderr
    assert user.stderr.startswith("latencysolver: error:")
    assert not (tmp_path / "missing.db").exists()
