"""Rungs for per-trial mode: asynchronous successive halving on non-dominated rank (MO-ASHA).

Optuna's pruners refuse multi-objective studies (optuna/optuna#3450), so, as OptunaHub's ``multi_metric_pruner``
does, the intermediate values live in each trial's user attrs.  At each rung (a fraction of the distillation
steps) a trial writes its signals on the check rows (accuracy, ranking AUC, log-likelihood) and its speed-up
(measured before training: latency first) under ``rungs``, reads the same rung's values of every other trial in
the storage (running or finished, from any worker), and ranks them all by Pareto dominance of
(``early_stop.rung_metric``, speed-up) (non-dominated sorting, as NSGA-II).  The trial goes on while its rank is
within that of the best ``ceil(n / reduction_factor)``, so a trial on the rung's front always goes on; nothing
stops before ``min_trials`` trials have reached the rung.  Asynchronous, as ASHA (Li et al., MLSys 2020): a
decision never waits for other trials, and early trials are judged against fewer.  The ranking follows MO-ASHA
(Schmucker et al., 2021), with ties at the cut-off rank kept rather than broken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import optuna

from latencysolver.config.study import EarlyStopConfig
from latencysolver.results.attributes import reported_rungs, write_rungs


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (every objective maximized)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def nondominated_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Rank 0 for the points nothing dominates, rank k for those dominated only by ranks below k."""
    ranks = [0] * len(points)
    remaining = set(range(len(points)))
    rank = 0
    while remaining:
        front = {i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)}
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return ranks


@dataclass(frozen=True)
class RungDecision:
    rung: float  # the fraction of the distillation steps
    step: int
    accuracy: float  # on the check rows (early_stop.rows)
    auc: float  # of the scores on the check rows (training.evaluate.ranking_auc)
    log_likelihood: float  # mean log-probability of the true answer on the check rows
    metric: str  # which of the three the rank is on (early_stop.rung_metric)
    speedup: float
    rank: int  # non-dominated rank among the ``trials`` that reached the rung, this one included
    trials: int
    kept: int  # how many of them go on: ceil(trials / reduction_factor), or all below min_trials
    stop: bool

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    own: tuple[float, float], others: Sequence[tuple[float, float]], reduction_factor: int, min_trials: int
) -> tuple[int, int, bool]:
    """(rank, kept, stop) of ``own`` among ``others`` at one rung."""
    points = [*others, own]
    ranks = nondominated_ranks(points)
    n = len(points)
    if n < min_trials:
        return ranks[-1], n, False
    kept = math.ceil(n / reduction_factor)
    cutoff = sorted(ranks)[kept - 1]
    return ranks[-1], kept, ranks[-1] > cutoff


def rung_points(
    trials: Sequence[optuna.trial.FrozenTrial], rung: float, exclude: int, metric: str
) -> list[tuple[float, float]]:
    """(``metric``, speed-up) of every trial but ``exclude`` that reported ``rung`` (and ``metric``: trials stored
    before a signal was recorded have only their accuracy)."""
    out = []
    for t in trials:
        if t.number == exclude:
            continue
        for entry in reported_rungs(t):
            if entry.get("rung") == rung and metric in entry:
                out.append((float(entry[metric]), float(entry["speedup"])))
    return out


class Rungs:
    """One trial's rungs: where they fall in its distillation, and the decision at each."""

    def __init__(self, trial: optuna.Trial, config: EarlyStopConfig, speedup: float) -> None:
        assert config.rungs  # built only when the study has rungs
        self.trial = trial
        self.config = config
        self.speedup = speedup
        self.reported: list[dict] = []

    def rung_at(self, step: int, total: int) -> float | None:
        """The rung that falls on ``step`` of ``total`` (None between rungs)."""
        for rung in self.config.rungs or ():
            if step == max(1, round(rung * total)):
                return rung
        return None

    def reached(self, rung: float, step: int, signals: dict[str, float]) -> RungDecision:
        """Rank this trial among those at ``rung`` by its ``signals`` (accuracy, auc, log_likelihood on the check
        rows), and store the decision where the other trials will read it."""
        metric = self.config.rung_metric
        trials = self.trial.study.get_trials(deepcopy=False)
        others = rung_points(trials, rung, exclude=self.trial.number, metric=metric)
        rank, kept, stop = decide(
            (signals[metric], self.speedup), others, self.config.reduction_factor, self.config.min_trials
        )
        decision = RungDecision(
            rung=rung,
            step=step,
            accuracy=signals["accuracy"],
            auc=signals["auc"],
            log_likelihood=signals["log_likelihood"],
            metric=metric,
            speedup=self.speedup,
            rank=rank,
            trials=len(others) + 1,
            kept=kept,
            stop=stop and self.config.rung_stop,
        )
        self.reported.append(decision.to_dict())
        write_rungs(self.trial, self.reported)
        return decision
