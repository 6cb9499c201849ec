"""``latencysolver`` command line: parse arguments, call the library, print.  No logic lives here."""

from __future__ import annotations

import argparse
import os
import sys

from latencysolver.config.study import DEFAULT_STORAGE

STORAGE_ENV = "LATENCYSOLVER_STORAGE"
_BEST_RULES = ("near-teacher", "max-accuracy", "min-latency", "knee")  # latencysolver.selection.RULES


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 1 a user error (``LatencySolverError``: one line on stderr); 2 a usage error (argparse
    exits with it before any work); 130 interrupted by Ctrl-C.  Anything else is a bug and keeps its traceback."""
    parser = _parser()
    args = parser.parse_args(argv)
    from latencysolver.errors import LatencySolverError

    _quiet_libraries()
    try:
        return args.handler(args)
    except LatencySolverError as exc:
        print(f"latencysolver: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("latencysolver: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    default_storage = os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)
    parser = argparse.ArgumentParser(prog="latencysolver",
                                     description="Search compression recipes for the fastest accurate BoolQ model.")
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
    run.add_argument("--workers", type=int, default=1,
                     help="local worker processes sharing the study (default 1: trials run in this process)")
    run.add_argument("--keep-slow-settings", action="store_true",
                     help="search quant_dtype settings the hardware probe found no faster than fp32 (default: drop)")
    run.set_defaults(handler=_run)

    worker = sub.add_parser("worker", help="join a study that `run` created and run its trials (any machine)")
    worker.add_argument("--study", required=True)
    worker.add_argument("--storage", default=default_storage, help=f"default {default_storage}")
    worker.add_argument("--trials", type=int, help="stop after this many trials of this worker (default: until "
                        "the study has its n_trials)")
    worker.add_argument("--teacher", help="fine-tuned checkpoint folder (default: the study's, else the cache)")
    worker.add_argument("--cache-dir", help="cache folder (default $LATENCYSOLVER_CACHE or ~/.cache/latencysolver)")
    worker.add_argument("--no-progress", action="store_true")
    worker.set_defaults(handler=_worker)

    pareto = sub.add_parser("pareto", help="print the Pareto front of a study")
    pareto.add_argument("--study", required=True)
    pareto.add_argument("--storage", default=default_storage, help=f"default {default_storage}")
    pareto.set_defaults(handler=_pareto)

    export = sub.add_parser("export", help="write one trial's model, tokenizer and card to a folder")
    export.add_argument("--study", required=True)
    export.add_argument("--storage", default=default_storage, help=f"default {default_storage}")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="trial number")
    which.add_argument("--best", nargs="?", const="near-teacher", choices=_BEST_RULES, metavar="RULE",
                       help="a rule over the feasible Pareto front: near-teacher (default: the fastest trial within "
                            "--tolerance accuracy of the teacher, else the most accurate), max-accuracy (ties: "
                            "faster), min-latency (ties: more accurate), knee (the trial nearest, in Euclidean "
                            "distance, to the ideal point (1, 1) once accuracy and the latency objective are each "
                            "min-max scaled to [0, 1] over the front with 1 = best; ties: more accurate). "
                            "Infeasible trials are never chosen")
    which.add_argument("--max-latency-ms", type=float, metavar="X",
                       help="the most accurate feasible trial whose measured latency p50 is <= X ms")
    export.add_argument("--tolerance", type=float, default=0.01,
                        help="accuracy below the teacher allowed by --best near-teacher (default 0.01)")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--artifacts", help="artifact folder, if not where the study recorded it")
    export.add_argument("--data", help="BoolQ folder or hub name whose test split the card reports "
                        "(default: the study's data)")
    export.add_argument("--no-progress", action="store_true", help="no progress bars")
    export.set_defaults(handler=_export)

    report = sub.add_parser("report", help="one self-contained HTML page of a study (front, knobs, importance, "
                            "latency) and a PNG of the front")
    report.add_argument("--study", required=True)
    report.add_argument("--storage", default=default_storage, help=f"default {default_storage}")
    report.add_argument("--out", required=True, metavar="REPORT.html", help="the HTML file to write")
    image = report.add_mutually_exclusive_group()
    image.add_argument("--png", metavar="FRONT.png", help="the Pareto front as a PNG (default: --out with .png; "
                       "needs Chrome/Chromium for kaleido)")
    image.add_argument("--no-png", action="store_true", help="write the HTML only")
    report.add_argument("--artifacts", help="artifact folder, if not where the study recorded it")
    report.set_defaults(handler=_report)

    predict = sub.add_parser("predict", help="answer yes/no questions with an exported model")
    predict.add_argument("export_dir", metavar="EXPORT_DIR", help="a folder written by `latencysolver export`")
    mode = predict.add_mutually_exclusive_group(required=True)
    mode.add_argument("--question", help="one question (with --passage): prints e.g. 'yes (p=0.873)'")
    mode.add_argument("--input", metavar="ROWS.jsonl",
                      help="JSON lines with 'question' and 'passage' (and optional 'id', 'label')")
    predict.add_argument("--passage", help="the passage the --question is about")
    predict.add_argument("--output", metavar="PREDS.jsonl", help="write --input's predictions here (default: stdout)")
    predict.add_argument("--batch-size", type=int, default=32, help="rows per model call (default 32)")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_predict, usage_error=predict.error)

    bench = sub.add_parser("bench", help="measure an exported model (or a teacher / base model) with the latency protocol")
    bench.add_argument("model", metavar="MODEL_OR_EXPORT_DIR",
                       help="an export folder, a fine-tuned model folder (e.g. the study's teacher) or a hub id")
    bench.add_argument("--data", help="BoolQ folder or hub name for the latency rows (default: the export's own data)")
    bench.add_argument("--reference", metavar="MODEL_OR_EXPORT_DIR",
                       help="also measure the paired speed-up against this model (e.g. the teacher), interleaved")
    bench.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads (default 2)")
    bench.add_argument("--rows", type=int, default=32, help="validation rows in the seeded sample (default 32)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed passes over the sample first (default 1)")
    bench.add_argument("--repeats", type=int, default=3, help="timed passes over the sample (default 3)")
    bench.add_argument("--seed", type=int, default=0, help="which rows are sampled (default 0)")
    bench.add_argument("--batch-size", type=int, default=16, help="throughput batch size; 0 skips it (default 16)")
    bench.add_argument("--max-length", type=int, help="token limit (default: the export's, else 256)")
    bench.add_argument("--cache-dir", help="cache folder for the tokenized rows")
    bench.set_defaults(handler=_bench)

    dash = sub.add_parser("dashboard", help="optuna-dashboard on the same storage and artifacts")
    dash.add_argument("--storage", default=default_storage, help=f"default {default_storage}")
    dash.add_argument("--artifacts", help="artifact folder (default: the one the studies recorded)")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8080)
    dash.set_defaults(handler=_dashboard)
    return parser


def _quiet_libraries() -> None:
    import logging
    import warnings

    import datasets
    import optuna
    from transformers.utils import logging as hf_logging

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Our own bars cover the long steps; the libraries' bars for sub-second steps are noise between them.
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _run(args: argparse.Namespace) -> int:
    from latencysolver.config.study import load_study_config
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.run import run_study

    config = load_study_config(args.config, data=args.data, storage=args.storage, n_trials=args.trials,
                               model=args.model, keep_slow_settings=args.keep_slow_settings)
    study = run_study(config, RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher,
                                         progress=not args.no_progress, workers=args.workers))
    _print_front(study)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from latencysolver.errors import ConfigError
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.run import join_study
    from latencysolver.search.workers import sqlite_warning

    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials: expected a positive integer, got {args.trials!r}", key="--trials",
                          value=args.trials)
    warning = sqlite_warning(args.storage, processes=2)
    if warning:
        print(warning.replace("2 processes", "a worker process"), file=sys.stderr)
    join_study(args.study, args.storage, RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher,
                                                    progress=not args.no_progress), max_trials=args.trials)
    return 0


def _pareto(args: argparse.Namespace) -> int:
    from latencysolver.results.storage import load_existing_study

    _print_front(load_existing_study(args.study, args.storage))
    return 0


def _print_front(study) -> None:
    from rich.console import Console
    from rich.table import Table

    from latencysolver.results.front import front_rows, hardware_warning
    from latencysolver.results.records import is_feasible, present, study_record

    record = study_record(study)
    teacher = present(record.teacher)
    objective = "speed-up ↑" if study.directions[1].name == "MAXIMIZE" else "latency ↓"
    table = Table(title=f"Pareto front of study {study.study_name!r} (accuracy ↑, {objective})")
    for name in ("trial", "accuracy", "F1", "p50 ms", "speed-up", "layers", "params", "size MB", "recipe"):
        table.add_column(name, justify="left" if name == "recipe" else "right")
    if teacher:
        table.add_row("teacher", f"{teacher['accuracy']:.3f}", f"{teacher['f1']:.3f}",
                      f"{teacher['latency_p50_ms']:.2f}", "1.00x", "", f"{teacher['parameters']:,}",
                      f"{teacher['size_bytes'] / 1e6:.1f}", "fine-tuned fp32 baseline", style="dim")
    rows = front_rows(study)
    for r in rows:
        cv = f" ±{r['speedup_cv']:.0%}" if r.get("speedup_cv") is not None else ""
        table.add_row(str(r["trial"]), f"{r['accuracy']:.3f}", f"{r['f1']:.3f}", f"{r['latency_ms']:.2f}",
                      f"{r['speedup']:.2f}x{cv}", str(r["layers"]), f"{r['parameters']:,}", f"{r['size_mb']:.1f}",
                      r["recipe"])
    Console(width=max(160, Console().width)).print(table)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    infeasible = [t.number for t in complete if not is_feasible(t)]
    if not rows:
        print("(no completed feasible trials yet)")
    if infeasible:
        bounds = present(record.constraints)
        ceiling = bounds.get("max_latency_ms")
        print(f"{len(infeasible)} of {len(complete)} completed trials are infeasible and left out (trials "
              f"{infeasible[:20]}{' …' if len(infeasible) > 20 else ''}): accuracy floor "
              f"{bounds.get('min_accuracy_resolved', 'above the majority rate')}, "
              + (f"max latency {ceiling} ms" if ceiling is not None else "no latency ceiling"))
    warning = hardware_warning(study)
    if warning:
        print(warning, file=sys.stderr)


def _export(args: argparse.Namespace) -> int:
    from latencysolver.results.front import get_trial
    from latencysolver.results.records import trial_record
    from latencysolver.results.selection import select_best, select_under_latency
    from latencysolver.results.storage import open_existing_study
    from latencysolver.ship.export import export_trial

    opened = open_existing_study(args.study, args.storage)
    study = opened.study
    if args.best:
        chosen = select_best(study, args.best, args.tolerance)
    elif args.max_latency_ms is not None:
        chosen = select_under_latency(study, args.max_latency_ms)
    else:
        chosen = None
    trial = chosen.trial if chosen else get_trial(study, args.trial)
    option = (f"--best {args.best}" if args.best else f"--max-latency-ms {args.max_latency_ms:g}" if chosen
              else f"--trial {trial.number}")
    if chosen:
        print(f"selected trial {trial.number} by {option}: {chosen.reason}")
    selection = {"option": option, "rule": chosen.rule if chosen else "trial",
                 "reason": chosen.reason if chosen else None}
    out = export_trial(study, trial, args.out, args.artifacts, storage=opened.storage, data=args.data,
                       selection=selection, progress=not args.no_progress, log=print)
    record = trial_record(trial)
    p50, speedup = (float("nan") if v is None else v for v in (record.latency_p50_ms, record.speedup))
    print(f"exported trial {trial.number} (accuracy {trial.values[0]:.3f}, {p50:.2f} ms, {speedup:.2f}x) to {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from latencysolver.results.report import write_report
    from latencysolver.results.storage import open_existing_study

    opened = open_existing_study(args.study, args.storage)
    result = write_report(opened.study, args.out, png=False if args.no_png else args.png, artifacts=args.artifacts,
                          storage=opened.storage)
    for warning in result.warnings:
        print(f"latencysolver: warning: {warning}", file=sys.stderr)
    print(f"report: {result.trials} trials ({result.feasible} feasible, {len(result.front)} on the front) -> "
          f"{result.out}{', ' + str(result.png) if result.png else ''}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from latencysolver.ship.predict import answer_text, load_export, predict_file, predict_one, read_rows

    if args.question is not None and args.passage is None:
        args.usage_error("--question needs --passage")
    if args.input is not None and args.passage is not None:
        args.usage_error("--passage goes with --question, not with --input")
    if args.input is None and args.output is not None:
        args.usage_error("--output goes with --input")
    if args.batch_size < 1:
        args.usage_error(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.input is None:
        clf = load_export(args.export_dir)
        print(answer_text(predict_one(clf, args.question, args.passage)))
        return 0
    rows = read_rows(args.input)  # every row checked before the model is even loaded
    clf = load_export(args.export_dir)
    summary = predict_file(clf, rows, args.output, args.batch_size, progress=not args.no_progress)
    print(summary.describe(), file=sys.stdout if args.output else sys.stderr)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from latencysolver.config.study import LatencyConfig
    from latencysolver.errors import ConfigError, FieldError
    from latencysolver.ship.bench import bench, load_target

    try:
        config = LatencyConfig(threads=args.threads, rows=args.rows, warmup=args.warmup, repeats=args.repeats,
                               seed=args.seed)
    except FieldError as exc:  # the field is the option's name: --threads, --rows, --warmup, --repeats
        option = f"--{(exc.key or '').replace('_', '-')}"
        raise ConfigError(f"bench: {option}: {exc}", key=option, value=exc.value) from None
    if args.batch_size < 0:
        raise ConfigError(f"bench: --batch-size must be >= 0, but got {args.batch_size}", key="--batch-size",
                          value=args.batch_size)
    target = load_target(args.model, args.max_length)
    reference = load_target(args.reference, target.max_length) if args.reference else None
    result = bench(target, config, data=args.data, batch_size=args.batch_size or None, reference=reference,
                   cache_dir=args.cache_dir)

    lat = result.latency
    table = Table(title=f"latency of {result.target}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [("p50, batch 1", f"{lat.p50_ms:.2f} ms"), ("p90, batch 1", f"{lat.p90_ms:.2f} ms"),
            ("mean, batch 1", f"{lat.mean_ms:.2f} ms"), ("CV of pass means", f"{lat.cv:.1%}")]
    if result.throughput:
        tp = result.throughput
        rows.append((f"throughput, batch {tp.batch_size}", f"{tp.rows_per_second:.1f} rows/s"))
    if result.paired:
        p = result.paired
        rows += [(f"reference p50 ({result.reference})", f"{p.reference.p50_ms:.2f} ms"),
                 ("paired speed-up", f"{p.speedup:.2f}x ±{p.speedup_cv:.1%}")]
    if result.parameters is not None:
        rows.append(("parameters", f"{result.parameters:,}"))
    for row in rows:
        table.add_row(*row)
    Console(width=max(100, Console().width)).print(table)
    print(f"protocol: {lat.rows} seeded validation rows of {result.data_source} (seed {config.seed}), "
          f"{config.warmup} warm-up pass(es), {config.repeats} timed passes, {config.threads} threads")
    print(f"hardware: {result.hardware.describe()} [{result.hardware.key}]")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from latencysolver.errors import StorageError
    from latencysolver.results.dashboard import artifact_folders, refresh_notes, serve
    from latencysolver.results.storage import check_storage

    check_storage(args.storage, must_exist=True)
    if args.artifacts and not os.path.isdir(args.artifacts):
        raise StorageError(f"--artifacts {args.artifacts!r}: no such folder")
    artifacts = artifact_folders(args.storage, args.artifacts)
    studies = refresh_notes(args.storage)
    folders = ", ".join(str(f) for f in artifacts.folders) if artifacts else "none found (trial files not shown)"
    print(f"optuna-dashboard on http://{args.host}:{args.port}  (storage {args.storage}; {len(studies)} "
          f"studies, notes refreshed; artifacts {folders}); Ctrl-C stops it", flush=True)
    serve(args.storage, args.host, args.port, artifacts)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
