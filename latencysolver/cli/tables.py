"""The tables commands print (rich): a study's Pareto front, and the seed repeats of ``confirm``."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def print_front(study) -> None:
    from latencysolver.results.front import front_rows, hardware_warning, interval_text, unstable_trials
    from latencysolver.results.records import is_feasible, present, study_record

    record = study_record(study)
    teacher = present(record.teacher)
    objective = "speed-up ↑" if study.directions[1].name == "MAXIMIZE" else "latency ↓"
    table = Table(title=f"Pareto front of study {study.study_name!r} (accuracy ↑, {objective})")
    columns = ("trial", "accuracy", "95% CI", "vs teacher (pts)", "F1", "p50 ms", "speed-up", "layers", "params")
    for name in (*columns, "size MB", "recipe"):
        table.add_column(name, justify="left" if name == "recipe" else "right")
    if teacher:
        table.add_row(
            "teacher",
            f"{teacher['accuracy']:.3f}",
            interval_text(record.teacher.interval() if record.teacher else None),
            "",
            f"{teacher['f1']:.3f}",
            f"{teacher['latency_p50_ms']:.2f}",
            "1.00x",
            "",
            f"{teacher['parameters']:,}",
            f"{teacher['size_bytes'] / 1e6:.1f}",
            "fine-tuned fp32 baseline",
            style="dim",
        )
    rows = front_rows(study)
    for r in rows:
        cv = f" ±{r['speedup_cv']:.0%}" if r.get("speedup_cv") is not None else ""
        table.add_row(
            str(r["trial"]),
            f"{r['accuracy']:.3f}",
            r["accuracy_interval"],
            r["vs_teacher"],
            f"{r['f1']:.3f}",
            f"{r['latency_ms']:.2f}",
            f"{r['speedup']:.2f}x{cv}",
            str(r["layers"]),
            f"{r['parameters']:,}",
            f"{r['size_mb']:.1f}",
            r["recipe"],
        )
    Console(width=max(160, Console().width)).print(table)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    infeasible = [t.number for t in complete if not is_feasible(t)]
    if not rows:
        print("(no completed feasible trials yet)")
    if infeasible:
        bounds = present(record.constraints)
        ceiling = bounds.get("max_latency_ms")
        print(
            f"{len(infeasible)} of {len(complete)} completed trials are infeasible and left out (trials "
            f"{infeasible[:20]}{' …' if len(infeasible) > 20 else ''}): accuracy floor "
            f"{bounds.get('min_accuracy_resolved', 'above the majority rate')}, "
            + (f"max latency {ceiling} ms" if ceiling is not None else "no latency ceiling")
        )
    unstable = [t.number for t in unstable_trials(study)]
    if unstable:
        print(
            f"{len(unstable)} completed trials are left out because their latency was measured unstable (a loaded "
            f"machine?): trials {unstable[:20]}{' …' if len(unstable) > 20 else ''}; "
            f"`latencysolver remeasure --study {study.study_name}` times them again"
        )
    warning = hardware_warning(study)
    if warning:
        print(warning, file=sys.stderr)


def print_repeats(study: str, repeats: list[Any]) -> None:
    """``confirm``'s table: per recipe, mean ± sd over its seed repeats, and the winner's curse in one line."""
    table = Table(title=f"Seed repeats of study {study!r} (mean ± sd over seeds)")
    for name in ("trial", "search val", "val", "test", "test vs teacher (pts)", "speed-up", "n", "recipe"):
        table.add_column(name, justify="left" if name == "recipe" else "right")
    for r in repeats:
        table.add_row(
            str(r.trial),
            f"{r.search_accuracy:.3f}",
            r.validation.describe() if r.validation else "n/a",
            r.test.describe() if r.test else "n/a",
            r.test_vs_teacher.describe(scale=100, digits=1) if r.test_vs_teacher else "n/a",
            r.speedup.describe(digits=2, suffix="x") if r.speedup else "n/a",
            f"{r.finished}" + (f" ({r.failed} failed)" if r.failed else ""),
            r.recipe,
        )
    Console(width=200).print(table)
    curse = [r.search_accuracy - r.validation.mean for r in repeats if r.validation]
    if curse:
        print(
            f"search-time validation scores exceed their seed means by {sum(curse) / len(curse):+.3f} on average "
            f"(the winner's curse; per recipe {', '.join(f'{c:+.3f}' for c in curse)})"
        )


def print_retrained(study: str, retrained: list[Any]) -> None:
    """``retrain``'s table: per retrain, the search trial's validation score and steps beside the retrained one's
    validation and test accuracy, each with its 95% interval, and its paired difference to the teacher on test;
    a line per recipe retrained with several seeds (their mean ± sd); then whether the two budgets rank the
    recipes alike (Spearman's rho, from 4 recipes on)."""
    from latencysolver.results.front import difference_text
    from latencysolver.results.retrained import rank_agreements, seed_summaries
    from latencysolver.stats import Interval, PairedComparison

    def scored(accuracy: float | None, raw: Any) -> str:
        interval = Interval.from_dict(raw) if isinstance(raw, dict) else None
        return interval.describe() if interval else f"{accuracy:.3f}" if accuracy is not None else "n/a"

    table = Table(title=f"Retrained recipes of study {study!r} (95% intervals)")
    columns = (
        "trial",
        "search val",
        "search steps",
        "steps",
        "seed",
        "val",
        "test",
        "test vs teacher (pts)",
        "speed-up",
    )
    for name in (*columns, "retrained trial", "recipe"):
        table.add_column(name, justify="left" if name == "recipe" else "right")
    for r in retrained:
        s, t = r.search, r.retrained
        paired = PairedComparison.from_dict(t.test_vs_teacher) if isinstance(t.test_vs_teacher, dict) else None
        done = r.state.name == "COMPLETE"
        table.add_row(
            str(r.trial),
            scored(s.accuracy, s.accuracy_interval),
            str(s.distill_steps if s.distill_steps is not None else "n/a"),
            str(t.distill_steps if done else r.steps),
            str(r.seed if r.seed is not None else "n/a"),
            scored(t.accuracy, t.accuracy_interval) if done else r.state.name,
            scored(t.test_accuracy, t.test_accuracy_interval) if done else "",
            difference_text(paired) if done else "",
            f"{t.speedup:.2f}x" if done and t.speedup is not None else "",
            str(r.number),
            r.recipe,
        )
    Console(width=200).print(table)
    for summary in seed_summaries(retrained):
        print(f"seed mean ± sd, {summary.describe()}")
    agreements = rank_agreements(retrained)
    if isinstance(agreements, str):
        print(agreements)
        return
    for split, agreement in agreements.items():
        print(f"rank agreement, search validation against retrained {split}: {agreement.describe()}")
