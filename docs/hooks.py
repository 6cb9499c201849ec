"""MkDocs hooks of the documentation site (mkdocs.yml: ``hooks``).

- The site's home page is the repository's README.md, and its Benchmarks page is benchmarks/README.md with the
  figures and tables under benchmarks/results/: one text each, read on GitHub and on the site alike.  Links to
  them (and the README's links into docs/) are written for GitHub and rewritten to where the site puts them.
- ``<!-- cli-help -->`` in a page becomes the ``--help`` text of ``latencysolver`` and of each subcommand, as
  argparse prints it, so the command-line reference cannot drift from the parser.
- Every module a reference page renders (a ``::: module`` line) must have a docstring, and so must each class and
  function it exports (``__all__``) and each public method of those classes: a missing one is a warning, which
  ``mkdocs build --strict`` turns into a failed build.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.latencysolver")

ROOT = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- cli-help -->"
# README.md's links into docs/ and benchmarks/, as the site places those files
README_LINKS = (
    ("](docs/", "]("),
    ("](benchmarks/README.md", "](benchmarks/index.md"),
    ("](CHANGELOG.md", "](changelog.md"),
)
BENCH_LINKS = (("](../README.md", "](../index.md"), ("](../docs/", "](../"))
# a guide's or reference page's links to those files, correct on GitHub, as the site places them
PAGE_LINKS = (
    ("](../../README.md", "](../index.md"),
    ("](../../benchmarks/README.md", "](../benchmarks/index.md"),
    ("](../../benchmarks/results/", "](../benchmarks/results/"),
)


def _generated(config: Any, uri: str, content: str) -> File:
    return File.generated(config, uri, content=content)


def _rewrite(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def on_files(files: Files, config: Any) -> Files:
    """Add the README as the home page, CHANGELOG.md, and benchmarks/README.md and its results as the Benchmarks
    section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    files.append(_generated(config, "index.md", _rewrite(readme, README_LINKS)))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(_generated(config, "changelog.md", _rewrite(changelog, README_LINKS)))
    bench = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    files.append(_generated(config, "benchmarks/index.md", _rewrite(bench, BENCH_LINKS)))
    results = ROOT / "benchmarks" / "results"
    for path in sorted(results.rglob("*")):
        if path.suffix in (".png", ".md") and path.is_file():
            uri = "benchmarks/results/" + path.relative_to(results).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def _cli_help() -> str:
    """``latencysolver --help`` and ``latencysolver COMMAND --help`` for every subcommand, at 100 columns."""
    import argparse

    saved = {k: os.environ.pop(k, None) for k in ("LATENCYSOLVER_STORAGE",)}  # the defaults, not this shell's
    os.environ["COLUMNS"] = "100"
    try:
        from latencysolver.cli.parser import build_parser

        parser = build_parser()
    finally:
        for k, v in saved.items():
            if v is not None:
                os.environ[k] = v
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["## latencysolver\n", "```text\n" + parser.format_help() + "```\n"]
    for name, subparser in sub.choices.items():
        parts += [f"## latencysolver {name}\n", "```text\n" + subparser.format_help() + "```\n"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point the links that leave docs/ at the site's copies; fill the command-line reference in."""
    if page.file.src_uri.startswith(("guides/", "reference/")):
        markdown = _rewrite(markdown, PAGE_LINKS)
    if CLI_MARKER in markdown:
        with contextlib.redirect_stdout(io.StringIO()):
            markdown = markdown.replace(CLI_MARKER, _cli_help())
    return markdown


def _rendered_modules(docs_dir: Path) -> list[str]:
    names: list[str] = []
    for page in sorted((docs_dir / "reference").glob("*.md")):
        names += re.findall(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), flags=re.M)
    return names


def _missing_docstrings(module_names: list[str]) -> list[str]:
    import griffe

    package = griffe.load("latencysolver", search_paths=[str(ROOT)], docstring_parser=None)
    missing: list[str] = []

    def check(obj: Any, path: str, methods: bool) -> None:
        if not obj.docstring:
            missing.append(f"{path} ({obj.relative_filepath}:{obj.lineno})")
        if methods and obj.is_class:
            for name, member in obj.members.items():
                if not name.startswith("_") and not member.is_alias and member.is_function:
                    check(member, f"{path}.{name}", methods=False)

    for module_name in module_names:
        obj = package if module_name == "latencysolver" else package[module_name.removeprefix("latencysolver.")]
        target = obj.final_target if obj.is_alias else obj
        if target.is_module:
            if not target.docstring:
                missing.append(f"{module_name} (module)")
            if target.exports is None:  # no __all__: what the module defines
                exported = [n for n, m in target.members.items() if not m.is_alias]
            else:
                exported = [str(n) for n in target.exports]
            for name in exported:
                member = target[name]
                member = member.final_target if member.is_alias else member
                if (member.is_class or member.is_function) and not name.startswith("_"):
                    check(member, f"{module_name}.{name}", methods=True)
        else:
            check(target, module_name, methods=True)
    return missing


def on_pre_build(config: Any) -> None:
    """Warn (a failure under --strict) for each public class, function or method without a docstring."""
    for where in _missing_docstrings(_rendered_modules(Path(config["docs_dir"]))):
        log.warning(f"no docstring: {where}")
