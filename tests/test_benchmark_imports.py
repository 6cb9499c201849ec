"""No benchmark script imports another: code benchmarks share lives in the package.  A script may split itself into
helper modules named after it (``pareto.py`` -> ``pareto_measure.py``, ...), which only it and its other helpers
import."""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MAX_LINES = 400


def _local_imports(path: Path, local: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
            if node.module == "benchmarks":
                found |= {alias.name for alias in node.names}
    return (found & local) | ({"benchmarks"} & found)


def _owner(stem: str, scripts: set[str]) -> str:
    """The script a module belongs to: itself, or the script whose name + '_' starts a helper's name."""
    owners = [s for s in scripts if stem.startswith(s + "_")]
    return max(owners, key=len) if owners else stem


def test_no_benchmark_imports_another_and_none_is_too_long():
    modules = {p.stem: p for p in BENCHMARKS.glob("*.py")}
    helpers = {stem for stem in modules if any(stem.startswith(s + "_") for s in modules if s != stem)}
    scripts = set(modules) - helpers
    assert "pareto" in scripts and "pareto_measure" in helpers  # what this test is about
    for stem, path in modules.items():
        for imported in _local_imports(path, set(modules)):
            assert imported != "benchmarks", f"benchmarks/{stem}.py imports the benchmarks folder as a package"
            assert imported in helpers and _owner(imported, scripts) == _owner(stem, scripts), (
                f"benchmarks/{stem}.py imports benchmarks/{imported}.py: move the shared code into the package"
            )
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"benchmarks/{stem}.py has {lines} lines (at most {MAX_LINES}): split it"
