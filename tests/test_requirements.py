"""pyproject.toml's dependency ranges admit only versions the code runs on, and the pins CI tests with."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, Requirement]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {(r := Requirement(line)).name: r for line in project["dependencies"]}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_optuna_is_at_least_the_release_with_the_constraint_api():
    """results/records.py and search/objective.py record constraints with ``Trial.set_constraint`` and read them
    with ``FrozenTrial.constraints``, both new in Optuna 5.0: an Optuna 4 install fails on the first trial."""
    assert hasattr(optuna.trial.Trial, "set_constraint") and hasattr(optuna.trial.FrozenTrial, "constraints")
    specifier = _requirements()["optuna"].specifier
    assert not specifier.contains("4.9.0"), f"pyproject.toml allows Optuna 4 ({specifier})"
    assert specifier.contains("5.0.0")


def test_every_pin_ci_tests_with_is_inside_pyprojects_range():
    pins = _pins()
    outside = [
        f"{name} {pins[name]} (pyproject.toml: {req.specifier})"
        for name, req in _requirements().items()
        if name in pins and not req.specifier.contains(pins[name])
    ]
    assert not outside, outside
    assert {"optuna", "transformers", "onnxruntime"} <= pins.keys()  # the parse found the pins


def test_the_version_is_one_and_the_changelog_has_it():
    import latencysolver

    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert latencysolver.__version__ == declared
    assert f"\n## {declared}\n" in (ROOT / "CHANGELOG.md").read_text(), f"CHANGELOG.md has no section for {declared}"
