"""One function per subcommand: call the library, print.  No logic lives here; imports are lazy so that
``--help`` stays fast."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Any


def warn(message: str) -> None:
    """One warning line on stderr: the run goes on."""
    print(f"latencysolver: warning: {message}", file=sys.stderr)


def warn_threads(threads: int, where: str) -> None:
    """More threads than CPUs oversubscribes the machine, and the latencies measured are not the model's."""
    cpus = os.cpu_count()
    if cpus and threads > cpus:
        warn(f"{where}: {threads} threads on a machine with {cpus} CPUs; latencies measured so are inflated")


def cmd_run(args: argparse.Namespace) -> int:
    from latencysolver.config.study import load_study_config
    from latencysolver.errors import ConfigError

    if args.workers < 1:
        raise ConfigError(
            f"--workers: expected a positive integer, got {args.workers}", key="--workers", value=args.workers
        )
    config = load_study_config(
        args.config,
        data=args.data,
        storage=args.storage,
        n_trials=args.trials,
        model=args.model,
        keep_slow_settings=args.keep_slow_settings,
    )
    warn_threads(config.latency.threads, f"{config.config_file}: latency.threads")
    # the study file is checked before torch and optuna are imported: a bad one is refused in a fraction of a second
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.run import run_study
    from latencysolver.search.workers import sigterm_as_interrupt

    with sigterm_as_interrupt():
        study = run_study(
            config,
            RunOptions(
                cache_dir=args.cache_dir, teacher_path=args.teacher, progress=not args.no_progress, workers=args.workers
            ),
        )
    from latencysolver.cli.tables import print_front

    print_front(study)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from latencysolver.errors import ConfigError
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.run import join_study
    from latencysolver.search.workers import sigterm_as_interrupt, sqlite_warning

    if args.trials is not None and args.trials < 1:
        raise ConfigError(
            f"--trials: expected a positive integer, got {args.trials!r}", key="--trials", value=args.trials
        )
    warning = sqlite_warning(args.storage, processes=2)
    if warning:
        print(warning.replace("2 processes", "a worker process"), file=sys.stderr)
    with sigterm_as_interrupt():
        join_study(
            args.study,
            args.storage,
            RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher, progress=not args.no_progress),
            max_trials=args.trials,
        )
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from latencysolver.cli.tables import print_repeats
    from latencysolver.search.confirm import confirm

    print_repeats(args.study, _run_again(args, confirm, seeds=args.seeds))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from latencysolver.cli.tables import print_retrained
    from latencysolver.search.retrain import retrain

    print_retrained(args.study, _run_again(args, retrain, steps=args.steps, seeds=args.seeds))
    return 0


def _run_again(args: argparse.Namespace, command: Any, **extra: Any) -> Any:
    """``confirm`` / ``retrain``: the chosen trials of ``--study`` run again as trials of its sibling study."""
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.workers import sigterm_as_interrupt

    options = RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher, progress=not args.no_progress)
    with sigterm_as_interrupt():
        return command(args.study, args.storage, trials=args.trials, front=args.front, options=options, **extra)


def cmd_remeasure(args: argparse.Namespace) -> int:
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.remeasure import remeasure
    from latencysolver.search.workers import sigterm_as_interrupt

    with sigterm_as_interrupt():
        done = remeasure(
            args.study,
            args.storage,
            trials=args.trials,
            options=RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher, progress=not args.no_progress),
        )
    still = [r.trial for r in done if not r.check.stable]
    if still:
        print(f"still unstable: trials {still}; they stay off the front. Run remeasure again on a quieter machine")
        return 1
    print(f"{len(done)} trial(s) measured stable; the front and --best now use their new figures")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from latencysolver.results.storage import load_existing_study, require_made_by_run

    study = load_existing_study(args.study, args.storage)
    require_made_by_run(study, args.storage)
    from latencysolver.cli.tables import print_front

    print_front(study)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from latencysolver.errors import ConfigError, SelectionError
    from latencysolver.results.front import get_trial
    from latencysolver.results.records import trial_record
    from latencysolver.results.repeats import find_repeats
    from latencysolver.results.retrained import retrain_figures
    from latencysolver.results.selection import (
        DEFAULT_CONFIDENCE,
        DEFAULT_MARGIN,
        DEFAULT_TOLERANCE,
        select_best,
        select_under_latency,
    )
    from latencysolver.results.storage import open_existing_study, require_made_by_run
    from latencysolver.ship.export import export_trial

    _refuse_unused_selection_options(args)
    args.tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    args.margin = DEFAULT_MARGIN if args.margin is None else args.margin
    args.confidence = DEFAULT_CONFIDENCE if args.confidence is None else args.confidence
    if not args.tolerance >= 0:  # NaN too
        raise ConfigError(
            f"--tolerance: must be >= 0 (accuracy below the teacher's), but got {args.tolerance}",
            key="--tolerance",
            value=args.tolerance,
        )
    if not (args.margin >= 0 and math.isfinite(args.margin)):
        raise ConfigError(f"--margin: must be >= 0, but got {args.margin}", key="--margin", value=args.margin)
    if not 0.5 < args.confidence < 1:  # NaN too
        raise ConfigError(
            f"--confidence: must be in (0.5, 1), but got {args.confidence}", key="--confidence", value=args.confidence
        )
    opened = open_existing_study(args.study, args.storage)
    study = opened.study
    require_made_by_run(study, args.storage)
    if args.best:
        try:
            chosen = select_best(study, args.best, args.tolerance, args.margin, args.confidence)
        except SelectionError as exc:
            if not args.fallback or args.best != "non-inferior":
                raise
            print(f"{exc}; falling back to --best {args.fallback}", file=sys.stderr)
            fallback = select_best(study, args.fallback, args.tolerance)
            chosen = dataclasses.replace(fallback, reason=f"no trial was non-inferior; {fallback.reason}")
    elif args.max_latency_ms is not None:
        chosen = select_under_latency(study, args.max_latency_ms)
    else:
        chosen = None
    trial = chosen.trial if chosen else get_trial(study, args.trial)
    fell_back = chosen is not None and args.best and chosen.rule != args.best
    option = (
        f"--best {args.best}" + (f" --fallback {args.fallback}" if fell_back else "")
        if args.best
        else f"--max-latency-ms {args.max_latency_ms:g}"
        if chosen
        else f"--trial {trial.number}"
    )
    if chosen:
        print(f"selected trial {trial.number} by {option}: {chosen.reason}")
    check = trial_record(trial).stability()
    if check is not None and not check.stable:
        warn(
            f"trial {trial.number}'s latency is {check.describe()}; its speed-up is not to be trusted until "
            f"`latencysolver remeasure --study {study.study_name} --trials {trial.number}`"
        )
    selection = {
        "option": option,
        "rule": chosen.rule if chosen else "trial",
        "reason": chosen.reason if chosen else None,
    }
    repeated = [r for r in find_repeats(study, args.storage) if r.trial == trial.number]
    out = export_trial(
        study,
        trial,
        args.out,
        args.artifacts,
        storage=opened.storage,
        data=args.data,
        selection=selection,
        progress=not args.no_progress,
        log=print,
        repeats=repeated[0].to_dict() if repeated else None,
        retrain=retrain_figures(study, trial, opened.storage),
    )
    record = trial_record(trial)
    p50, speedup = (float("nan") if v is None else v for v in (record.latency_p50_ms, record.speedup))
    print(f"exported trial {trial.number} (accuracy {trial.values[0]:.3f}, {p50:.2f} ms, {speedup:.2f}x) to {out}")
    return 0


# export's options that tune one --best rule: which rule each applies to (--tolerance also as --fallback)
_RULE_OF_OPTION = {
    "margin": "non-inferior",
    "confidence": "non-inferior",
    "fallback": "non-inferior",
    "tolerance": "near-teacher",
}


def _refuse_unused_selection_options(args: argparse.Namespace) -> None:
    """An option given with a selection it does not apply to would be silently ignored: a usage error (exit 2)."""
    chosen = f"--best {args.best}" if args.best else "--trial" if args.trial is not None else "--max-latency-ms"
    for name, rule in _RULE_OF_OPTION.items():
        rules = {args.best, args.fallback} if name == "tolerance" else {args.best}
        if getattr(args, name) is not None and rule not in rules:
            also = " (or --fallback near-teacher)" if name == "tolerance" else ""
            args.usage_error(f"--{name} goes with --best {rule}{also}, not with {chosen}")


def cmd_report(args: argparse.Namespace) -> int:
    from latencysolver.results.report import write_report
    from latencysolver.results.storage import open_existing_study, require_made_by_run

    opened = open_existing_study(args.study, args.storage)
    require_made_by_run(opened.study, args.storage)
    result = write_report(
        opened.study, args.out, png=False if args.no_png else args.png, artifacts=args.artifacts, storage=opened.storage
    )
    for warning in result.warnings:
        print(f"latencysolver: warning: {warning}", file=sys.stderr)
    print(
        f"report: {result.trials} trials ({result.feasible} feasible, {len(result.front)} on the front) -> "
        f"{result.out}{', ' + str(result.png) if result.png else ''}"
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from latencysolver.ship.predict import (
        answer_text,
        check_output_is_not_input,
        export_schema,
        load_export,
        predict_file,
        predict_one,
        read_rows,
    )

    schema = export_schema(args.export_dir)
    if args.text is not None and args.text_pair is None and schema.text_pair is not None:
        args.usage_error(f"--text needs --text-pair (--passage): this export reads pairs ({schema.text_pair!r})")
    if args.text is not None and args.text_pair is not None and schema.text_pair is None:
        args.usage_error(f"--text-pair: this export reads single texts ({schema.text!r})")
    if args.input is not None and args.text_pair is not None:
        args.usage_error("--text-pair goes with --text, not with --input")
    if args.input is None and args.output is not None:
        args.usage_error("--output goes with --input")
    if args.batch_size < 1:
        args.usage_error(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.input is None:
        clf = load_export(args.export_dir)
        print(answer_text(predict_one(clf, args.text, args.text_pair)))
        return 0
    check_output_is_not_input(args.input, args.output)
    rows = read_rows(args.input, schema)  # every row checked before the model is even loaded
    clf = load_export(args.export_dir)
    summary = predict_file(clf, rows, args.output, args.batch_size, progress=not args.no_progress)
    print(summary.describe(), file=sys.stdout if args.output else sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from latencysolver.config.study import LatencyConfig
    from latencysolver.errors import ConfigError, FieldError
    from latencysolver.ship.bench import bench, load_target

    try:
        config = LatencyConfig(
            threads=args.threads, rows=args.rows, warmup=args.warmup, repeats=args.repeats, seed=args.seed
        )
    except FieldError as exc:  # the field is the option's name: --threads, --rows, --warmup, --repeats
        option = f"--{(exc.key or '').replace('_', '-')}"
        raise ConfigError(f"bench: {option}: {exc}", key=option, value=exc.value) from None
    if args.batch_size < 0:
        raise ConfigError(
            f"bench: --batch-size must be >= 0, but got {args.batch_size}", key="--batch-size", value=args.batch_size
        )
    if args.max_length is not None and args.max_length < 1:
        raise ConfigError(
            f"bench: --max-length must be > 0, but got {args.max_length}", key="--max-length", value=args.max_length
        )
    warn_threads(config.threads, "--threads")
    target = load_target(args.model, args.max_length)
    reference = load_target(args.reference, target.max_length) if args.reference else None
    result = bench(
        target,
        config,
        data=args.data,
        batch_size=args.batch_size or None,
        reference=reference,
        cache_dir=args.cache_dir,
    )

    lat = result.latency
    table = Table(title=f"latency of {result.target}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("p50, batch 1", f"{lat.p50_ms:.2f} ms"),
        ("p90, batch 1", f"{lat.p90_ms:.2f} ms"),
        ("mean, batch 1", f"{lat.mean_ms:.2f} ms"),
        ("CV of pass means", f"{lat.cv:.1%}"),
    ]
    if result.throughput:
        tp = result.throughput
        rows.append((f"throughput, batch {tp.batch_size}", f"{tp.rows_per_second:.1f} rows/s"))
    if result.paired:
        p = result.paired
        rows += [
            (f"reference p50 ({result.reference})", f"{p.reference.p50_ms:.2f} ms"),
            ("paired speed-up", f"{p.speedup:.2f}x ±{p.speedup_cv:.1%}"),
        ]
    if result.parameters is not None:
        rows.append(("parameters", f"{result.parameters:,}"))
    for row in rows:
        table.add_row(*row)
    Console(width=max(100, Console().width)).print(table)
    print(
        f"protocol: {lat.rows} seeded validation rows of {result.data_source} (seed {config.seed}), "
        f"{config.warmup} warm-up pass(es), {config.repeats} timed passes, {config.threads} threads"
    )
    print(f"hardware: {result.hardware.describe()} [{result.hardware.key}]")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from latencysolver.errors import OutputError, StorageError, shown_path
    from latencysolver.results.dashboard import artifact_folders, check_address, refresh_notes, serve, study_names
    from latencysolver.results.storage import check_intact, check_storage, shown_url

    check_storage(args.storage, must_exist=True)
    check_intact(args.storage)  # empty, no database, damaged: refused before Optuna writes its schema into it
    if args.artifacts and not os.path.isdir(args.artifacts):
        raise StorageError(f"--artifacts {shown_path(args.artifacts)}: no such folder")
    check_address(args.host, args.port)  # before the notes are written: a failure leaves the storage as it was
    artifacts = artifact_folders(args.storage, args.artifacts)
    try:
        check_storage(args.storage, must_exist=True, writable=True)
        studies, notes = refresh_notes(args.storage), "notes refreshed"
    except OutputError as exc:  # a read-only database can still be browsed; its notes stay as they were
        print(f"warning: {exc}; the study notes are not refreshed", file=sys.stderr)
        studies, notes = study_names(args.storage), "notes not refreshed"
    folders = ", ".join(str(f) for f in artifacts.folders) if artifacts else "none found (trial files not shown)"
    print(
        f"optuna-dashboard on http://{args.host}:{args.port}  (storage {shown_url(args.storage)}; {len(studies)} "
        f"studies, {notes}; artifacts {folders}); Ctrl-C stops it",
        flush=True,
    )
    serve(args.storage, args.host, args.port, artifacts)
    return 0
