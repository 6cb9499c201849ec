"""Batch-1 inference latency on a fixed sample of real validation rows.

Protocol (see DESIGN.md): a seeded sample of ``rows`` validation rows, tokenized once with their real lengths;
``torch.set_num_threads(threads)`` for the measurement (restored afterwards); ``warmup`` untimed calls; then
``repeats`` timed passes over the whole sample, one ``perf_counter`` interval per call.  p50/p90/mean are over
all calls; the CV is over the per-pass means, i.e. how much the same sample varied from pass to pass.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from latencysolver.batches import EncodedSplit, collate
from latencysolver.config import LatencyConfig


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    cv: float
    threads: int
    rows: int
    samples_ms: tuple[float, ...]

    def summary(self) -> dict[str, float | int]:
        return {"p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "mean_ms": self.mean_ms, "cv": self.cv,
                "threads": self.threads, "rows": self.rows}


def latency_inputs(split: EncodedSplit, config: LatencyConfig, pad_id: int = 0) -> list[dict[str, torch.Tensor]]:
    """The same rows for every model of a study: ``Random(seed)`` picks them, each a batch of one."""
    rows = random.Random(config.seed).sample(range(len(split)), min(config.rows, len(split)))
    return [collate(split, [i], pad_id).inputs for i in rows]


@torch.inference_mode()
def measure_latency(model: nn.Module, inputs: list[dict[str, torch.Tensor]], config: LatencyConfig) -> LatencyStats:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        model.eval()
        for i in range(config.warmup):
            model(**inputs[i % len(inputs)])
        samples: list[float] = []
        pass_means: list[float] = []
        for _ in range(config.repeats):
            times = []
            for x in inputs:
                start = time.perf_counter()
                model(**x)
                times.append((time.perf_counter() - start) * 1000.0)
            samples += times
            pass_means.append(statistics.fmean(times))
    finally:
        torch.set_num_threads(previous_threads)
    ordered = sorted(samples)
    mean_of_passes = statistics.fmean(pass_means)
    cv = statistics.pstdev(pass_means) / mean_of_passes if len(pass_means) > 1 else 0.0
    return LatencyStats(
        p50_ms=statistics.median(ordered),
        p90_ms=ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        mean_ms=statistics.fmean(ordered),
        cv=cv,
        threads=config.threads,
        rows=len(inputs),
        samples_ms=tuple(samples),
    )
