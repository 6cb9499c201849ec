"""The package's layers: imports go one way, no module imports itself in a circle, only the top layers use optuna.

The layers, lowest first (``LAYERS``): a module may import its own layer and the ones below it, never one above.
Imports are read from the source with ``ast`` (function-level imports included), so a lazy import cannot hide an
upward dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "latencysolver"

# lowest first; the foundation modules (errors, cache, locks, files, devices, lazy) may be imported by every layer
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "cache", "locks", "files", "devices", "lazy"),
    ("config",),
    ("data",),
    ("compression",),
    ("training",),
    ("models",),
    ("latency",),
    ("stats",),
    ("results",),
    ("search",),
    ("ship",),
    ("cli", "__main__"),
)
OPTUNA_LAYERS = {"results", "search", "ship", "cli"}


def _rank(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"latencysolver.{top} is in no layer of tests/test_layout.py: add it to LAYERS")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module this file imports (absolute names), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
            # ``from latencysolver.models import onnx_backend`` imports a submodule
            found += [
                (f"{node.module}.{alias.name}", node.lineno)
                for alias in node.names
                if (PACKAGE.parent / node.module.replace(".", "/") / f"{alias.name}.py").is_file()
            ]
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph[name] = {m for m, _ in _imports(path) if m in MODULES and m != name}
    return graph


def test_every_module_is_in_a_layer():
    for name in MODULES:
        if name != "latencysolver":
            _rank(name.split(".")[1])


@pytest.mark.parametrize("name", [n for n in MODULES if n != "latencysolver"])
def test_imports_go_downward(name):
    """The package ``__init__`` (the public API) is the only module allowed to reach up (to ``ship``)."""
    top = name.split(".")[1]
    for imported, line in _imports(MODULES[name]):
        if imported.startswith("latencysolver.") and imported != "latencysolver":
            target = imported.split(".")[1]
            assert _rank(target) <= _rank(top), (
                f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: {name} (layer {top}) imports {imported} "
                f"(layer {target}, higher)"
            )
        if imported.split(".")[0] == "optuna":
            assert top in OPTUNA_LAYERS, (
                f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: only {sorted(OPTUNA_LAYERS)} import optuna"
            )


def test_no_import_cycle():
    graph = _graph()
    # a package's __init__ that re-exports its submodules is an edge package -> submodule; a submodule
    # importing a sibling through its package would close a cycle, which is what this finds
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The checker itself: a made-up a -> b -> a is reported."""
    fake = {"a": {"b"}, "b": {"a"}}
    monkeypatch.setitem(globals(), "_graph", lambda: fake)
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        test_no_import_cycle()


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_a_hub(path):
    """About 400 lines at most: past that a module holds more than one concern."""
    assert len(path.read_text().splitlines()) <= 420, f"{path.relative_to(PACKAGE.parent)} is over 420 lines"


def test_no_private_optuna_attribute():
    private = ("._storage", "._trial_id", "._study_id")
    for path in PACKAGE.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            assert not any(p in line for p in private), f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"


# Optuna's attrs by key: only the records modules name a stored key; every other module goes through them
RECORDS_MODULES = ("results/records.py", "results/attributes.py")
STORED_BY_KEY = re.compile(r"\.user_attrs\b|set_user_attr\(|system_attrs")


def _lines_by_key(source: str) -> list[int]:
    return [i for i, line in enumerate(source.splitlines(), 1) if STORED_BY_KEY.search(line)]


def test_only_the_records_modules_read_or_write_attrs_by_key():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{i}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() not in RECORDS_MODULES
        for i in _lines_by_key(path.read_text())
    ]
    assert not found, f"read or write these through results/records.py or results/attributes.py: {found}"


@pytest.mark.parametrize(
    "line",
    [
        'seed = trial.user_attrs["seed"]',
        'seed = trial.user_attrs.get("seed")',
        "for key, value in study.user_attrs.items():",
        'trial.set_user_attr("repeat_of", 3)',
        'copy.system_attrs["constraints:min_speedup"] += 1.0',
    ],
)
def test_the_attr_check_finds_each_form(line):
    """The checker itself: each way of reading or writing an attr by key is reported, at its line."""
    assert _lines_by_key(f"def f(trial, study, copy):\n    {line}\n") == [2]


def test_the_attr_check_lets_the_typed_builders_enqueue():
    assert _lines_by_key("study.enqueue_trial(params, user_attrs=repeat_attrs(3, 7, None))") == []


def test_no_package_function_or_class_is_named_like_a_test():
    """pytest collects a ``test*`` function or ``Test*`` class imported into a test module: the package has none."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.name.lower().startswith("test")
    ]
    assert not found, found


def test_the_package_and_its_config_load_without_torch():
    """``import latencysolver`` and the config loader stay light (``latencysolver.load`` imports torch on first
    use): a child that only reads a study file does not spend seconds importing torch and transformers."""
    import subprocess
    import sys

    code = (
        "import sys, latencysolver, latencysolver.config.study\n"
        "heavy = sorted({'torch', 'transformers', 'optuna'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )  # ``from latencysolver import load`` itself: tests/test_predict.py
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_reading_a_study_imports_neither_torch_nor_scipy_stats():
    """The records, the front and the dashboard read a study without torch or ``scipy.stats`` (the ``latency``
    and ``stats`` packages import their modules on first use): the dashboard's server starts in a second, not
    four.  The lazy names still resolve, and a wrong one is an ``AttributeError``."""
    import subprocess
    import sys

    code = (
        "import sys, latencysolver.results.dashboard, latencysolver.results.front\n"
        "heavy = sorted({'torch', 'transformers', 'scipy.stats'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
        "from latencysolver.stats import Interval, rank_agreement\n"
        "from latencysolver.latency import HardwareFingerprint, measure_paired\n"
        "import latencysolver.latency.protocol as protocol, latencysolver.stats.ranks as ranks\n"
        "assert measure_paired is protocol.measure_paired and rank_agreement is ranks.rank_agreement\n"
        "try:\n"
        "    latencysolver.stats.nothing\n"
        "except AttributeError as exc:\n"
        "    assert \"'latencysolver.stats' has no attribute 'nothing'\" in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_printing_a_stored_front_imports_neither_torch_nor_transformers(tiny_study):
    """``latencysolver pareto`` loads no model: it answers in a second or two, not after 5 s of imports, and
    transformers' progress bars are still off when a later command imports it (through huggingface_hub's switch)."""
    import os
    import subprocess
    import sys

    config, _, study = tiny_study
    code = (
        "import sys\n"
        "from latencysolver.cli import main\n"
        f"assert main(['pareto', '--study', {study.study_name!r}, '--storage', {config.storage!r}]) == 0\n"
        "heavy = sorted({'torch', 'transformers'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
        "from transformers.utils import logging\n"
        "assert not logging.is_progress_bar_enabled()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Pareto front of study" in proc.stdout


def test_the_command_line_turns_off_the_datasets_bars_without_importing_datasets():
    """A command turns off ``datasets``' progress bars: through its variable when ``datasets`` is not imported yet
    (a dashboard or a report never imports it), directly when it is (``main()`` called in a process that has)."""
    import os
    import subprocess
    import sys

    before = (  # datasets not imported yet: its variable
        "import sys, latencysolver.cli as cli\n"
        "cli._quiet_libraries()\n"
        "assert 'datasets' not in sys.modules\n"
        "from datasets.utils.tqdm import are_progress_bars_disabled\n"
        "assert are_progress_bars_disabled()\n"
    )
    after = (  # imported already
        "import datasets, latencysolver.cli as cli\n"
        "from datasets.utils.tqdm import are_progress_bars_disabled\n"
        "assert not are_progress_bars_disabled()\n"
        "cli._quiet_libraries()\n"
        "assert are_progress_bars_disabled()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}
    for code in (before, after):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
