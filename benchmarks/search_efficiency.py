"""Hypervolume against wall-clock time: elastic trials against per-trial ones, TPE against random search (issue 18).

    .venv/bin/python benchmarks/search_efficiency.py [--data ../shared/data/boolq-dev-split]
        [--arms elastic-tpe,elastic-random,per-trial-tpe,per-trial-random,per-trial-tpe-rungs,per-trial-tpe-rungs-auc]
        [--seeds 0,1,2] [--trials 30]
        [--minutes 90] [--out benchmarks/results/search_efficiency] [--cache-dir DIR] [--progress] [--report-only]

Each arm and sampler seed is one study (``ARM-sSEED``) in ``--out/study.db``, run by ``run_study`` with the arm's
YAML (``studies/boolq-elastic.yaml`` or ``studies/boolq-pareto.yaml``, the sampler and its seed replaced).  A study
already there is resumed up to ``--trials``, so an interrupted run continues where it stopped: Ctrl-C or SIGTERM
fails the running trial, which the resumed run does not count.

The clock of a study is the sum of its trials' wall times (start to finish, as Optuna stored them), plus, for an
elastic arm, the one elastic training (its ``elastic.json``), which every elastic arm pays once; the teacher's
fine-tune is shared by both modes and left out.  After each trial, the hypervolume of the feasible trials so far in
(validation accuracy, speed-up), above the reference (the validation majority rate, 1.0x).  Per arm: trials per
hour, the median trial time, the hypervolume at ``--minutes`` and at the end, as mean ± sd over seeds.

Writes ``results.md``, ``results.json`` and ``hypervolume.png`` (and ``.html``) into ``--out``.  An (arm, seed)
that an earlier invocation wrote to ``--out/results.json`` and this one does not run is kept in the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, get_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna

from latencysolver.cache import cache_root
from latencysolver.config.study import RungMetric, load_study_config
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.models.elastic import training_seconds
from latencysolver.results.front import feasible_trials, hypervolume
from latencysolver.results.records import study_record, trial_record
from latencysolver.results.scoring import markdown_table
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.search.workers import Terminated, sigterm_as_interrupt

RUNGS = (1 / 9, 1 / 3)  # of the 300 distillation steps: 33 and 100
SIGNALS = get_args(RungMetric)  # what a rung records on the check rows: accuracy, auc, log_likelihood
ARMS = {  # arm: (study YAML, sampler, early_stop changes)
    "elastic-tpe": ("studies/boolq-elastic.yaml", "tpe", {}),
    "elastic-random": ("studies/boolq-elastic.yaml", "random", {}),
    # the per-trial arms record their rung accuracies without stopping on them: the rung fidelity measurement
    "per-trial-tpe": ("studies/boolq-pareto.yaml", "tpe", {"rungs": RUNGS, "rung_stop": False}),
    "per-trial-random": ("studies/boolq-pareto.yaml", "random", {"rungs": RUNGS, "rung_stop": False}),
    "per-trial-tpe-rungs": ("studies/boolq-pareto.yaml", "tpe", {"rungs": RUNGS, "rung_stop": True}),
    # the same, ranked on the check rows' AUC: at 1/9 nearly every student still answers the majority class
    "per-trial-tpe-rungs-auc": (
        "studies/boolq-pareto.yaml",
        "tpe",
        {"rungs": RUNGS, "rung_stop": True, "rung_metric": "auc"},
    ),
}


def curve(study: optuna.Study, setup_seconds: float, reference: tuple[float, float]) -> list[dict[str, float]]:
    """After each finished trial (in the order they finished): the clock and the hypervolume of the feasible ones."""
    finished = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_start),
        key=lambda t: t.datetime_complete,
    )
    feasible = {t.number: (t.values[0], t.values[1]) for t in feasible_trials(study)}
    clock, points, out = setup_seconds, [], []
    for t in finished:
        clock += (t.datetime_complete - t.datetime_start).total_seconds()
        if t.number in feasible:
            points.append(feasible[t.number])
        out.append({"trial": t.number, "seconds": clock, "hypervolume": hypervolume(points, reference)})
    return out


def at(points: list[dict[str, float]], seconds: float) -> float:
    """The hypervolume reached by ``seconds`` on the clock (0 before the first trial ends)."""
    reached = [p["hypervolume"] for p in points if p["seconds"] <= seconds]
    return reached[-1] if reached else 0.0


def run_arm(arm: str, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    yaml_path, sampler, early_stop = ARMS[arm]
    storage = f"sqlite:///{out / 'study.db'}"
    config = load_study_config(REPO / yaml_path, data=args.data, storage=storage, n_trials=args.trials)
    config = dataclasses.replace(
        config,
        name=f"{arm}-s{seed}",
        artifacts=str(out / "study-artifacts"),
        sampler=dataclasses.replace(config.sampler, name=sampler, seed=seed),
        early_stop=dataclasses.replace(config.early_stop, **early_stop),
    )
    if args.report_only:  # the studies as they are: an interrupted run's finished trials
        study = optuna.load_study(study_name=config.name, storage=storage)
    else:
        with sigterm_as_interrupt():  # a SIGTERM fails the running trial (a resumed run does not count it)
            study = run_study(config, RunOptions(cache_dir=args.cache_dir, progress=args.progress))
    record = study_record(study)
    setup = 0.0
    if record.elastic_artifacts is not None:
        setup = training_seconds(cache_root(args.cache_dir) / "elastic" / record.elastic_artifacts.key) or 0.0
    reference = (record.data.majority_rate, 1.0)
    points = curve(study, setup, reference)
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in study.get_trials(deepcopy=False)
        if t.datetime_complete and t.datetime_start
    ]
    without_recovery = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in study.get_trials(deepcopy=False)
        if t.datetime_complete and t.datetime_start and not t.params.get("recovery_steps")
    ]
    return {
        "median_trial_seconds_without_recovery": statistics.median(without_recovery) if without_recovery else None,
        "arm": arm,
        "seed": seed,
        "trials": len(durations),
        "feasible": len(feasible_trials(study)),
        "setup_seconds": setup,
        "median_trial_seconds": statistics.median(durations) if durations else None,
        "trials_per_hour": 3600 * len(durations) / sum(durations) if durations else None,
        "clock_seconds": points[-1]["seconds"] if points else setup,
        "hypervolume_at_budget": at(points, args.minutes * 60),
        "hypervolume_final": points[-1]["hypervolume"] if points else 0.0,
        "curve": points,
        "rungs": rung_results(study),
    }


def rung_results(study: optuna.Study) -> list[dict[str, Any]]:
    """Per trial that reached a rung: its signals at each rung (accuracy, AUC and log-likelihood on the check rows;
    trials stored before the last two were recorded have only accuracy), whether a rung stopped it, and its final
    validation accuracy (None when a check stopped it)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        record = trial_record(t)
        if not record.rungs or t.values is None:
            continue
        out.append(
            {
                "trial": t.number,
                "rungs": {f"{r['rung']:.4f}": {m: r[m] for m in SIGNALS if m in r} for r in record.rungs},
                "stopped": (record.early_stopped or {}).get("reason"),
                "final": None if record.early_stopped else t.values[0],
                "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
            }
        )
    return out


def rung_fidelity(runs: list[dict[str, Any]], resamples: int = 2000) -> list[dict[str, Any]]:
    """Spearman's rho between each rung's check signal (each of SIGNALS) and the final validation accuracy, over
    the trials that ran their whole budget (pooled over arms and seeds, a trial repeated in two studies counted
    once), with a 95% percentile bootstrap over trials.  A rung stored as a bare number (results from before AUC
    and log-likelihood) is its accuracy."""
    import numpy as np
    from scipy.stats import spearmanr

    pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    seen = set()
    for r in runs:
        for t in r.get("rungs") or ():
            if t["final"] is None:
                continue
            rungs = {k: v if isinstance(v, dict) else {"accuracy": v} for k, v in t["rungs"].items()}
            # arms with one sampler seed share their first (random start-up) recipes, and training is deterministic:
            # the same trial in two studies has the same rung accuracies and final accuracy, and counts once per signal
            trial = (t["final"], json.dumps({k: v["accuracy"] for k, v in rungs.items()}, sort_keys=True))
            for rung, signals in rungs.items():
                for metric, value in signals.items():
                    if (trial, rung, metric) not in seen:
                        seen.add((trial, rung, metric))
                        pairs.setdefault((rung, metric), []).append((value, t["final"]))
    out = []
    rng = np.random.default_rng(0)
    order = sorted(pairs, key=lambda k: (float(k[0]), SIGNALS.index(k[1])))
    for (rung, metric), xy in ((k, pairs[k]) for k in order):
        a = np.array(xy)
        if len(a) < 4 or np.ptp(a[:, 0]) == 0:  # too few, or one value on every trial: it ranks nothing
            continue
        rho = float(spearmanr(a[:, 0], a[:, 1]).statistic)
        boot = []
        for _ in range(resamples):
            sample = a[rng.integers(0, len(a), len(a))]
            if np.ptp(sample[:, 0]) > 0 and np.ptp(sample[:, 1]) > 0:
                boot.append(spearmanr(sample[:, 0], sample[:, 1]).statistic)
        low, high = np.percentile(boot, [2.5, 97.5])
        out.append(
            {
                "rung": float(rung),
                "signal": metric,
                "trials": len(a),
                "spearman": rho,
                "low": float(low),
                "high": float(high),
            }
        )
    return out


def spread(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f} (one seed)"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(runs: list[dict[str, Any]], args: argparse.Namespace, hardware: str) -> str:
    lines = [
        f"# Search efficiency (benchmarks/search_efficiency.py)\n\nHost: {hardware}.  Hypervolume of the feasible "
        f"trials in (validation accuracy, speed-up over the fp32 torch teacher), reference (majority rate, 1.0x); "
        f"the clock sums the trials' wall times, plus the elastic training for elastic arms.\n",
    ]
    columns = ("arm", "seed", "trials", "feasible", "median s/trial", "median s, recovery 0", "trials/h", "clock min")
    table = []
    for r in runs:
        median, bare = r["median_trial_seconds"], r["median_trial_seconds_without_recovery"]
        per_hour = r["trials_per_hour"]
        table.append(
            (
                *(r["arm"], r["seed"], r["trials"], r["feasible"]),
                *("—" if v is None else f"{v:.0f}" for v in (median, bare, per_hour)),
                f"{r['clock_seconds'] / 60:.0f}",
                f"{r['hypervolume_at_budget']:.4f}",
                f"{r['hypervolume_final']:.4f}",
            )
        )
    lines.append(markdown_table((*columns, f"HV at {args.minutes:g} min", "HV final"), table, left=10).rstrip("\n"))
    summary = []
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        per_hour = [r["trials_per_hour"] for r in mine if r["trials_per_hour"]]
        summary.append(
            (
                *(arm, len(mine), f"{statistics.mean(per_hour):.0f}"),
                spread([r["hypervolume_at_budget"] for r in mine]),
                spread([r["hypervolume_final"] for r in mine]),
            )
        )
    columns = ("arm", "seeds", "trials/h", f"HV at {args.minutes:g} min (mean ± sd)", "HV final (mean ± sd)")
    lines += ["", markdown_table(columns, summary, left=5).rstrip("\n")]
    fidelity = rung_fidelity(runs)
    if fidelity:
        lines += [
            "",
            "Rung fidelity: Spearman's rho between a signal on the check rows at a rung (accuracy; AUC of the "
            "scores; mean log-likelihood of the true answer) and the final validation accuracy, over the trials "
            "that ran their whole budget (95% bootstrap over trials).",
            "",
            markdown_table(
                ("rung (of the steps)", "signal", "trials", "Spearman rho [95%]"),
                [
                    (
                        f"{f['rung']:.3f}",
                        f["signal"],
                        f["trials"],
                        f"{f['spearman']:.2f} [{f['low']:.2f}, {f['high']:.2f}]",
                    )
                    for f in fidelity
                ],
                left=4,
            ).rstrip("\n"),
        ]
    stopped = [t for r in runs for t in r.get("rungs") or () if t["stopped"] == "rung"]
    if stopped:
        median = statistics.median(t["seconds"] for t in stopped)
        lines.append(f"\nStopped at a rung: {len(stopped)} trials (median {median:.0f} s each).")
    return "\n".join(lines) + "\n"


def figure(runs: list[dict[str, Any]], out: Path, minutes: float) -> str | None:
    import plotly.graph_objects as go

    colours = {
        "elastic-tpe": "#1f77b4",
        "elastic-random": "#aec7e8",
        "per-trial-tpe": "#d62728",
        "per-trial-random": "#ff9896",
        "per-trial-tpe-rungs": "#2ca02c",
        "per-trial-tpe-rungs-auc": "#98df8a",
    }
    fig = go.Figure()
    for r in runs:
        fig.add_trace(
            go.Scatter(
                x=[0, *(p["seconds"] / 60 for p in r["curve"])],
                y=[0, *(p["hypervolume"] for p in r["curve"])],
                mode="lines+markers",
                line={"shape": "hv", "color": colours.get(r["arm"])},
                marker={"size": 4},
                name=f"{r['arm']} seed {r['seed']}",
            )
        )
    fig.add_vline(x=minutes, line_dash="dot", annotation_text=f"{minutes} min")
    fig.update_layout(
        title="Hypervolume against wall-clock time (elastic arms include the one elastic training)",
        xaxis_title="minutes",
        yaxis_title="hypervolume (accuracy × speed-up above majority, 1.0x)",
    )
    fig.write_html(str(out / "hypervolume.html"), include_plotlyjs=True)
    try:
        fig.write_image(str(out / "hypervolume.png"), width=1000, height=600, scale=2)
    except Exception as exc:  # noqa: BLE001 - kaleido needs Chromium and raises its own error types
        return f"warning: hypervolume.png not written (kaleido: {type(exc).__name__}: {str(exc).strip()[:200]})"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--arms", default="elastic-tpe,elastic-random", help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--seeds", default="0,1,2", help="sampler seeds, comma-separated")
    parser.add_argument("--trials", type=int, default=30, help="trials per study")
    parser.add_argument("--minutes", type=float, default=90.0, help="the wall-clock budget the hypervolume is read at")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "search_efficiency"))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="run no trial: tabulate the studies in --out")
    args = parser.parse_args(argv)
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        parser.error(f"--arms: unknown arm {unknown[0]!r} (known: {', '.join(ARMS)})")
    return args


def kept_runs(path: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs an earlier invocation wrote to ``path`` for an (arm, seed) this one did not run: results build up
    over invocations (and over machines: a study whose database is gone keeps its figures), a re-run replaces."""
    if not path.exists():
        return []
    done = {(r["arm"], r["seed"]) for r in runs}
    kept = [r for r in json.loads(path.read_text())["runs"] if (r["arm"], r["seed"]) not in done]
    for r in kept:
        print(f"{r['arm']}, sampler seed {r['seed']}: kept from {path}", flush=True)
    return kept


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = []
    stored = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{out / 'study.db'}")}
    for seed in (int(s) for s in args.seeds.split(",")):  # seed by seed: an interrupted run leaves every arm alike
        for arm in args.arms.split(","):
            if args.report_only and f"{arm}-s{seed}" not in stored:
                print(f"{arm}, sampler seed {seed}: not run, left out of the report", flush=True)
                continue
            print(f"[{time.perf_counter() - start:6.0f}s] {arm}, sampler seed {seed}", flush=True)
            runs.append(run_arm(arm, seed, args, out))
    runs = kept_runs(out / "results.json", runs) + runs
    hardware = hardware_fingerprint(2, "cpu").describe()
    text = markdown(runs, args, hardware)
    warning = figure(runs, out, args.minutes)
    (out / "results.md").write_text(text + (f"\n{warning}\n" if warning else ""))
    (out / "results.json").write_text(
        json.dumps({"hardware": hardware, "arguments": vars(args), "runs": runs}, indent=1)
    )
    print(text)
    return runs


if __name__ == "__main__":
    try:
        main()
    except Terminated:
        sys.exit("search_efficiency: terminated (SIGTERM); the running trial is recorded FAIL, rerun to resume")
