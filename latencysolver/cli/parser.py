"""The ``latencysolver`` argument parser: every subcommand, its options and their help."""

from __future__ import annotations

import argparse
import os

import latencysolver.cli.commands as commands
from latencysolver.config.study import DEFAULT_STORAGE, STORAGE_ENV
from latencysolver.config.urls import shown_url
from latencysolver.errors import shown

_BEST_RULES = (
    "non-inferior",
    "max-accuracy",
    "min-latency",
    "knee",
    "near-teacher",
)  # latencysolver.results.selection.RULES
_RETRAIN_STEPS = 1000  # latencysolver.search.retrain.DEFAULT_STEPS


def build_parser() -> argparse.ArgumentParser:
    default_storage = os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)
    shown_default = shown_url(default_storage)  # the environment's URL may carry a password
    parser = argparse.ArgumentParser(
        prog="latencysolver",
        description="Search compression recipes for the fastest text classifier that is still accurate enough.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) the study a YAML file describes")
    run.add_argument("config", help="study YAML, e.g. studies/boolq-quick.yaml")
    run.add_argument("--data", help="local folder of train/validation[/test] jsonl or parquet, or a hub dataset name")
    run.add_argument("--storage", help="Optuna storage URL (overrides the YAML)")
    run.add_argument("--trials", type=int, help="total number of finished trials wanted (overrides the YAML)")
    run.add_argument("--model", help="base model: hub id or local folder (overrides the YAML)")
    run.add_argument("--teacher", help="use this fine-tuned checkpoint folder instead of fine-tuning one")
    run.add_argument("--cache-dir", help="cache folder (default $LATENCYSOLVER_CACHE or ~/.cache/latencysolver)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (summary lines still print)")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local worker processes sharing the study (default 1: trials run in this process)",
    )
    run.add_argument(
        "--keep-slow-settings",
        action="store_true",
        help="search quant_dtype settings the hardware probe found no faster than fp32 (default: drop)",
    )
    run.set_defaults(handler=commands.cmd_run)

    worker = sub.add_parser("worker", help="join a study that `run` created and run its trials (any machine)")
    worker.add_argument("--study", required=True)
    worker.add_argument("--storage", default=default_storage, help=f"default {shown_default}")
    worker.add_argument(
        "--trials",
        type=int,
        help="stop after this many trials of this worker (default: until the study has its n_trials)",
    )
    _stored_study_options(worker)
    worker.set_defaults(handler=commands.cmd_worker)

    confirm = sub.add_parser(
        "confirm", help="re-run chosen recipes with new seeds (a sibling study NAME:confirm): mean ± sd"
    )
    _chosen_recipes(confirm, default_storage)
    confirm.add_argument("--seeds", type=int, default=3, help="repeats per recipe, each with a new seed (default 3)")
    _stored_study_options(confirm)
    confirm.set_defaults(handler=commands.cmd_confirm)

    retrain = sub.add_parser(
        "retrain",
        help="distill chosen recipes again on a long schedule (a sibling study NAME:retrain), measured on test too",
    )
    _chosen_recipes(retrain, default_storage)
    retrain.add_argument(
        "--steps",
        type=int,
        default=_RETRAIN_STEPS,
        help=f"distillation steps per recipe, over the train and augmented rows (default {_RETRAIN_STEPS}: about "
        "9-24 minutes a recipe for a 2-4 layer MiniLM student on a 2-core CPU)",
    )
    retrain.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="retrains per recipe: its search trial's seed, then new ones; from 2 the table adds seed mean ± sd "
        "(default 1)",
    )
    _stored_study_options(retrain)
    retrain.set_defaults(handler=commands.cmd_retrain)

    remeasure = sub.add_parser(
        "remeasure", help="time trials' stored models again on this machine (default: those flagged unstable)"
    )
    remeasure.add_argument("--study", required=True)
    remeasure.add_argument("--storage", default=default_storage, help=f"default {shown_default}")
    remeasure.add_argument(
        "--trials",
        type=_trial_list,
        help="trial numbers, comma-separated (default: every trial whose latency is flagged unstable)",
    )
    _stored_study_options(remeasure)
    remeasure.set_defaults(handler=commands.cmd_remeasure)

    pareto = sub.add_parser("pareto", help="print the Pareto front of a study")
    pareto.add_argument("--study", required=True)
    pareto.add_argument("--storage", default=default_storage, help=f"default {shown_default}")
    pareto.set_defaults(handler=commands.cmd_pareto)

    export = sub.add_parser("export", help="write one trial's model, tokenizer and card to a folder")
    export.add_argument("--study", required=True)
    export.add_argument("--storage", default=default_storage, help=f"default {shown_default}")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="trial number")
    which.add_argument(
        "--best",
        nargs="?",
        const="non-inferior",
        choices=_BEST_RULES,
        metavar="RULE",
        help="non-inferior (default): the fastest feasible trial whose one-sided --confidence lower bound of "
        "the paired validation-accuracy difference to the teacher is above -MARGIN; or a rule over the "
        "feasible Pareto front: near-teacher (the fastest trial within "
        "--tolerance accuracy of the teacher, else the most accurate), max-accuracy (ties: "
        "faster), min-latency (ties: more accurate), knee (the trial nearest, in Euclidean "
        "distance, to the ideal point (1, 1) once accuracy and the latency objective are each "
        "min-max scaled to [0, 1] over the front with 1 = best; ties: more accurate). "
        "Infeasible trials are never chosen",
    )
    which.add_argument(
        "--max-latency-ms",
        type=float,
        metavar="X",
        help="the most accurate feasible trial whose measured latency p50 is <= X ms",
    )
    # no defaults here (select_best's apply): an option given with a rule it does not apply to is a usage error
    export.add_argument(
        "--tolerance",
        type=float,
        help="accuracy below the teacher allowed by --best near-teacher (or --fallback near-teacher; default 0.01)",
    )
    export.add_argument("--margin", type=float, help="accuracy loss allowed by --best non-inferior (default 0.04)")
    export.add_argument("--confidence", type=float, help="one-sided confidence of --best non-inferior (default 0.95)")
    export.add_argument(
        "--fallback",
        choices=[r for r in _BEST_RULES if r != "non-inferior"],
        metavar="RULE",
        help="when no trial is non-inferior, pick by this rule instead of exiting with an error",
    )
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--artifacts", help="artifact folder, if not where the study recorded it")
    export.add_argument(
        "--data", help="data folder or hub name whose test split the card reports (default: the study's data)"
    )
    export.add_argument("--no-progress", action="store_true", help="no progress bars")
    export.set_defaults(handler=commands.cmd_export, usage_error=export.error)

    report = sub.add_parser(
        "report",
        help="one self-contained HTML page of a study (front, knobs, importance, latency) and a PNG of the front",
    )
    report.add_argument("--study", required=True)
    report.add_argument("--storage", default=default_storage, help=f"default {shown_default}")
    report.add_argument("--out", required=True, metavar="REPORT.html", help="the HTML file to write")
    image = report.add_mutually_exclusive_group()
    image.add_argument(
        "--png",
        metavar="FRONT.png",
        help="the Pareto front as a PNG (default: --out with .png; needs Chrome/Chromium for kaleido)",
    )
    image.add_argument("--no-png", action="store_true", help="write the HTML only")
    report.add_argument("--artifacts", help="artifact folder, if not where the study recorded it")
    report.set_defaults(handler=commands.cmd_report)

    predict = sub.add_parser("predict", help="classify texts (BoolQ: answer yes/no questions) with an exported model")
    predict.add_argument("export_dir", metavar="EXPORT_DIR", help="a folder written by `latencysolver export`")
    mode = predict.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--text", "--question", dest="text", help="one text (BoolQ: the question): prints e.g. 'yes (p=0.873)'"
    )
    mode.add_argument(
        "--input",
        metavar="ROWS.jsonl",
        help="JSON lines with the export's columns (BoolQ: 'question' and 'passage'; optional 'id', 'label')",
    )
    predict.add_argument(
        "--text-pair", "--passage", dest="text_pair", help="the second text of a pair (BoolQ: the passage)"
    )
    predict.add_argument("--output", metavar="PREDS.jsonl", help="write --input's predictions here (default: stdout)")
    predict.add_argument("--batch-size", type=int, default=32, help="rows per model call (default 32)")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(handler=commands.cmd_predict, usage_error=predict.error)

    bench = sub.add_parser(
        "bench", help="measure an exported model (or a teacher / base model) with the latency protocol"
    )
    bench.add_argument(
        "model",
        metavar="MODEL_OR_EXPORT_DIR",
        help="an export folder, a fine-tuned model folder (e.g. the study's teacher) or a hub id",
    )
    bench.add_argument("--data", help="data folder or hub name for the latency rows (default: the export's own data)")
    bench.add_argument(
        "--reference",
        metavar="MODEL_OR_EXPORT_DIR",
        help="also measure the paired speed-up against this model (e.g. the teacher), interleaved",
    )
    bench.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads (default 2)")
    bench.add_argument("--rows", type=int, default=32, help="validation rows in the seeded sample (default 32)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed passes over the sample first (default 1)")
    bench.add_argument("--repeats", type=int, default=3, help="timed passes over the sample (default 3)")
    bench.add_argument("--seed", type=int, default=0, help="which rows are sampled (default 0)")
    bench.add_argument("--batch-size", type=int, default=16, help="throughput batch size; 0 skips it (default 16)")
    bench.add_argument(
        "--max-length", type=int, help="token limit (default: the export's, else 256 or the model's limit if lower)"
    )
    bench.add_argument("--cache-dir", help="cache folder for the tokenized rows")
    bench.set_defaults(handler=commands.cmd_bench)

    dash = sub.add_parser("dashboard", help="optuna-dashboard on the same storage and artifacts")
    dash.add_argument("--storage", default=default_storage, help=f"default {shown_default}")
    dash.add_argument("--artifacts", help="artifact folder (default: the one the studies recorded)")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8080)
    dash.set_defaults(handler=commands.cmd_dashboard)
    return parser


def _chosen_recipes(parser: argparse.ArgumentParser, default_storage: str) -> None:
    """The study and the search trials that ``confirm`` and ``retrain`` run again."""
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", default=default_storage, help=f"default {shown_url(default_storage)}")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--trials", type=_trial_list, help="search trial numbers, comma-separated: 3,7,12")
    chosen.add_argument("--front", action="store_true", help="every trial of the feasible Pareto front")


def _stored_study_options(parser: argparse.ArgumentParser) -> None:
    """What a command that prepares a stored study's teacher and data on this machine takes (worker, confirm,
    retrain, remeasure)."""
    parser.add_argument("--teacher", help="fine-tuned checkpoint folder (default: the study's, else the cache)")
    parser.add_argument("--cache-dir", help="cache folder (default $LATENCYSOLVER_CACHE or ~/.cache/latencysolver)")
    parser.add_argument("--no-progress", action="store_true")


def _trial_list(text: str) -> list[int]:
    """``3,7,12`` -> [3, 7, 12]; anything else is argparse's usage error naming the option and the reason."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected trial numbers, comma-separated (3,7,12), got {shown(text)}")
    for part in parts:
        try:
            number = int(part)
        except ValueError:
            number = -1
        if number < 0:
            raise argparse.ArgumentTypeError(
                f"{shown(part)} is not a trial number (a whole number >= 0; comma-separated: 3,7,12)"
            )
    return sorted({int(part) for part in parts})
