"""Do exports load in Hugging Face Optimum, in an environment of its own, and answer as ``latencysolver.load``?

    .venv/bin/python benchmarks/interop.py [--data DIR] [--venv .interop-venv] [--fresh] [--export DIR ...]

1. A throwaway virtualenv (``--venv``, made when missing; ``--fresh`` makes it anew): torch 2.13.0 first (the CPU
   wheel; an unpinned torch pulls a multi-GB CUDA build), then ``optimum[onnxruntime]`` with torch held at 2.13.0 by
   a constraint file, and whatever optimum, optimum-onnx, transformers and onnxruntime that resolves: not the
   project's pins (``--optimum SPEC`` installs another requirement instead).
2. Two exports made here, offline, each by a one-trial study with its recipe fixed and
   ``latencysolver export``: shaped like ``make demo``'s (a 6-layer BERT, structurally pruned by half, 4 layers kept,
   ONNX Runtime int8; trained on the first rows of ``--data``'s BoolQ splits, tested on all of its test rows) and a
   3-class single-text one (fp32 in torch, so its ``model.onnx`` is exported at export time; a synthetic set whose
   sentence names its colour).  The models are tiny (hidden size 64) so that this runs on a fresh CI machine:
   the folder's layout, config, tokenizer and graph are what an export of the real MiniLM has.  ``--export DIR``
   checks existing exports instead (their test rows come from the data their ``metrics.json`` names, or
   ``--data``).
3. For each export, ``benchmarks/interop_optimum.py`` runs in the throwaway virtualenv (offline, no stdin): it loads
   the folder with ``ORTModelForSequenceClassification.from_pretrained`` and ``AutoTokenizer.from_pretrained``,
   runs a ``text-classification`` pipeline on every test row and writes the labels, probabilities and token ids.
4. Here, ``latencysolver.load(folder).predict`` answers the same rows one at a time.  Any row whose label or token
   ids differ, a probability more than ``TOLERANCE`` apart, or anything the libraries printed there (a warning, a
   prompt) other than ``ALLOWED`` fails the check: exit 1.

Prints the versions the virtualenv resolved and one line per export.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "boolq-dev-split"
TORCH = "torch==2.13.0"  # the CPU wheel these machines hold on disk (as in the Makefile)
OPTIMUM = "optimum[onnxruntime]"
PACKAGES = ("optimum", "optimum-onnx", "transformers", "onnxruntime", "torch")
READY = ".interop-ready"  # written into the virtualenv once both installs have succeeded
TOLERANCE = 1e-3  # probability of the predicted class, latencysolver vs the pipeline
# printed by every transformers 4.x pipeline, whatever its model: not about the export
ALLOWED = ("Device set to use cpu",)
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass
class Case:
    name: str
    folder: Path
    texts: list[str]
    pairs: list[str] | None


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def ensure_venv(venv: Path, fresh: bool, optimum: str) -> Path:
    """The throwaway virtualenv's Python, built first when missing, half-built or ``fresh``."""
    python = venv / "bin" / "python"
    if not fresh and (venv / READY).is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    start = time.perf_counter()
    print(f"interop: building {venv} ({TORCH}, then {optimum} with torch held)", flush=True)
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, "--upgrade", "pip"])
    run([*pip, TORCH])
    (venv / "constraints.txt").write_text(TORCH + "\n")
    run([*pip, optimum, "-c", str(venv / "constraints.txt")])
    (venv / READY).write_text(optimum + "\n")
    print(f"interop: {venv} built in {time.perf_counter() - start:.0f}s", flush=True)
    return python


def versions(python: Path) -> dict[str, str]:
    code = (
        "import json\nfrom importlib.metadata import version\n"
        f"print(json.dumps({{n: version(n) for n in {PACKAGES!r}}}))"
    )
    return json.loads(run([str(python), "-c", code], capture_output=True, text=True).stdout)


# ------------------------------------------------------------------------------------------------ exports


def boolq_subset(source: Path, folder: Path, rows: dict[str, int | None]) -> Path:
    """The first rows of each split of ``source`` (None: all of them)."""
    folder.mkdir(parents=True)
    for split, n in rows.items():
        lines = (source / f"{split}.jsonl").read_text().splitlines()
        (folder / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines[:n]))
    return folder


COLOURS = ("red", "green", "blue")


def colours(folder: Path, rows: dict[str, int]) -> Path:
    """3 classes, single texts: the sentence names its colour among filler words; the label is the colour."""
    import random

    rng = random.Random(0)
    words = ["river", "city", "music", "science", "history", "movie", "island", "law", "game", "animal"]
    folder.mkdir(parents=True)
    for split, n in rows.items():
        with open(folder / f"{split}.jsonl", "w") as fh:
            for _ in range(n):
                colour = rng.choice(COLOURS)
                filler = rng.choices(words, k=rng.randint(2, 12))
                filler.insert(rng.randint(0, len(filler)), colour)
                fh.write(json.dumps({"sentence": " ".join(filler), "colour": colour}) + "\n")
    return folder


def one_trial_export(work: Path, name: str, model: Path, data: dict, recipe: dict) -> Path:
    """A study of one trial with ``recipe`` fixed, exported with ``latencysolver export``."""
    import yaml

    from latencysolver.cli import main

    storage = f"sqlite:///{work / (name + '.db')}"
    study = {
        "name": name,
        "model": str(model),
        "data": data,
        "search_space": recipe,
        "storage": storage,
        "sampler": {"name": "random", "seed": 0},
        "n_trials": 1,
        "constraints": {"min_accuracy": 0.0},  # a tiny model may not beat the majority class; this is about files
        # a high rate for a tiny random model: it learns the colours (and a little of BoolQ) in a few steps
        "teacher": {"epochs": 3, "batch_size": 16, "learning_rate": 1.0e-2},
        "distillation": {"steps": 10, "batch_size": 16},
        # a tiny model's sub-millisecond calls are noise-bound: no stability bounds (the timing is not the point)
        "latency": {
            "rows": 8,
            "warmup": 1,
            "repeats": 2,
            "threads": 1,
            "max_speedup_cv": None,
            "max_reference_drift": None,
        },
        "drop_slow_settings": False,
        "usual_recipes": False,
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    out = work / f"export-{name}"
    start = time.perf_counter()
    print(f"interop: making {out.name} (a one-trial study and its export)", flush=True)
    log = io.StringIO()  # the study's and the export's lines: printed only if they fail
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        failed = main(["run", str(path), "--cache-dir", str(work / "cache"), "--no-progress"]) or main(
            ["export", "--study", name, "--storage", storage, "--trial", "0", "--out", str(out), "--no-progress"]
        )
    if failed:
        print(log.getvalue(), file=sys.stderr)
        raise SystemExit(f"interop: the {name} study or its export failed (above)")
    print(f"interop: made {out.name} in {time.perf_counter() - start:.0f}s", flush=True)
    return out


def built_exports(work: Path, data: Path) -> list[Path]:
    from latencysolver.models.tiny import tiny_bert_folder

    with contextlib.redirect_stderr(io.StringIO()):  # save_pretrained's progress bar
        bert = tiny_bert_folder(work / "tiny-bert", layers=6, hidden=64, heads=4, intermediate=128, max_positions=512)
    demo = one_trial_export(
        work,
        "boolq-demo-shape",
        bert,
        # max_length 128: many BoolQ passages are longer, so the pipeline's truncation is checked too
        {
            "source": str(boolq_subset(data, work / "boolq", {"train": 192, "validation": 64, "test": None})),
            "max_length": 128,
        },
        {
            "architecture": "transformer",
            "prune_ratio": 0.5,
            "prune_kind": "structured",
            "quant_dtype": "ort-int8",
            "skip_prob": 0.34,  # 6 layers: 4 kept, as the demo's pick
            "skip_mode": "deterministic",
            "rank": "off",
            "temperature": 2.0,
            "alpha": 0.5,
        },
    )
    three = one_trial_export(
        work,
        "colours-3-class",
        bert,
        {
            "source": str(colours(work / "colours", {"train": 120, "validation": 30, "test": 90})),
            "max_length": 32,
            "columns": {"text": "sentence", "text_pair": None, "label": "colour"},
            "labels": list(COLOURS),
        },
        {
            "architecture": "transformer",
            "prune_ratio": 0.25,
            "prune_kind": "structured",
            "quant_dtype": "fp32",
            "skip_prob": 0.0,
            "rank": "off",
        },
    )
    return [demo, three]


def case_of(folder: Path, data: str | None) -> Case:
    """The export's test rows: from ``data``, else the source its metrics.json names."""
    from latencysolver.data.text import Columns, load_data

    metrics = json.loads((folder / "metrics.json").read_text())
    source = data or metrics["data"]["source"]
    loaded = load_data(source, columns=Columns(**metrics["columns"]), labels=tuple(metrics["classes"]))
    split = loaded.test or loaded.validation
    pairs = list(split.text_pair) if split.text_pair is not None else None
    return Case(name=folder.name, folder=folder, texts=list(split.text), pairs=pairs)


# ------------------------------------------------------------------------------------------------ the check


def check(case: Case, python: Path, work: Path) -> tuple[bool, str]:
    """Run the pipeline in the virtualenv and compare; (passed, one line)."""
    from latencysolver import load
    from latencysolver.data.batches import encode_pairs

    clf = load(case.folder)
    rows = work / f"{case.name}.rows.json"
    rows.write_text(json.dumps({"text": case.texts, "text_pair": case.pairs, "max_length": clf.max_length}))
    out = work / f"{case.name}.optimum.json"
    env = {**os.environ, **OFFLINE}
    env.pop("PYTHONPATH", None)  # nothing of this checkout leaks into the other environment
    done = subprocess.run(
        [str(python), str(HERE / "interop_optimum.py"), str(case.folder), str(rows), str(out)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=600,
    )
    printed = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0:
        return False, f"{case.name}: the Optimum side failed (exit {done.returncode}):\n  " + "\n  ".join(printed)
    theirs = json.loads(out.read_text())
    ours = clf.predict(case.texts, case.pairs, batch_size=1)  # one row at a time, as the pipeline runs them
    ids = [list(ids) for ids in encode_pairs(clf.tokenizer, case.texts, case.pairs, clf.max_length).input_ids]
    return compare(case.name, clf.labels, [(p.label, p.probability) for p in ours], ids, theirs, printed)


def compare(
    name: str,
    classes: tuple[str, ...],
    ours: list[tuple[str, float]],
    ids: list[list[int]],
    theirs: dict,
    printed: list[str],
) -> tuple[bool, str]:
    """latencysolver's (label, probability) and token ids per row against the pipeline's (``theirs``, as
    interop_optimum.py writes it) and what it printed; (passed, one line naming every difference)."""
    labels = [label for label, _ in ours]
    problems = []
    differ = [i for i, (a, b) in enumerate(zip(labels, theirs["labels"], strict=True)) if a != b]
    if differ:
        i = differ[0]
        problems.append(
            f"{len(differ)} labels differ (row {i}: latencysolver {labels[i]} p={ours[i][1]:.4f}, "
            f"pipeline {theirs['labels'][i]} p={theirs['probabilities'][i]:.4f})"
        )
    gap = max(abs(p - q) for (_, p), q in zip(ours, theirs["probabilities"], strict=True))
    if gap > TOLERANCE:
        problems.append(f"probabilities differ by up to {gap:.2g} (> {TOLERANCE:g})")
    tokens = sum(a != b for a, b in zip(ids, theirs["input_ids"], strict=True))
    if tokens:
        problems.append(f"the folder's tokenizer gives other token ids on {tokens} rows")
    noise = [line for line in printed if line.strip() not in ALLOWED]
    if noise:
        problems.append(f"{len(noise)} lines printed while loading or running:\n  " + "\n  ".join(noise))
    counts = ", ".join(f"{n} {labels.count(n)}" for n in classes)
    line = (
        f"{name}: {len(labels) - len(differ)}/{len(labels)} rows the same label ({counts}), "
        f"probabilities within {gap:.1g}, same token ids on {len(ids) - tokens}/{len(ids)} rows"
    )
    if problems:
        return False, line + "; FAILED: " + "; ".join(problems)
    return True, line + "; no warnings"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help=f"BoolQ-shaped data folder (default {DATA}); with --export: the test rows")
    parser.add_argument("--venv", default=str(REPO / ".interop-venv"))
    parser.add_argument("--fresh", action="store_true", help="build the virtualenv anew")
    parser.add_argument("--optimum", default=OPTIMUM, help=f"what to pip install (default {OPTIMUM})")
    parser.add_argument("--export", action="append", help="check this export folder (repeatable) instead")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    python = ensure_venv(Path(args.venv).resolve(), args.fresh, args.optimum)
    found = versions(python)
    print("interop: " + ", ".join(f"{n} {found[n]}" for n in PACKAGES) + " (a virtualenv of their own)", flush=True)
    with tempfile.TemporaryDirectory(prefix="interop-") as tmp:
        work = Path(tmp)
        if args.export:
            folders = [Path(f).resolve() for f in args.export]
            cases = [case_of(f, args.data) for f in folders]
        else:
            folders = built_exports(work, Path(args.data or DATA))
            cases = [case_of(f, None) for f in folders]
        results = [check(case, python, work) for case in cases]
    for _, line in results:
        print(line)
    passed = all(ok for ok, _ in results)
    print(f"interop: {'passed' if passed else 'FAILED'} in {time.perf_counter() - start:.0f}s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
