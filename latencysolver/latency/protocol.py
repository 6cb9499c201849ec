"""The latency protocol: what one latency figure means, for torch and onnxruntime models alike.

Inputs
    A seeded sample of ``rows`` real validation rows (``random.Random(seed)``), tokenized once, each a batch of
    one at its real length (no padding).  Every model of a study sees exactly the same tensors.

One measurement (``measure_latency``)
    The thread count is applied (``torch.set_num_threads``, and ``model.set_threads`` for runtimes that own their
    thread pool, such as onnxruntime) and restored afterwards.  ``warmup`` untimed passes over the whole sample
    (every input length runs once before timing: oneDNN and onnxruntime build kernels per shape, and a dynamic
    int8 model measured after five warm-up calls instead ran its first pass at 14.7 ms against 3.6 ms later),
    then ``repeats`` timed passes over the sample, one ``perf_counter`` interval per call (on CUDA the interval ends
    after ``torch.cuda.synchronize()``).  p50/p90/mean are over all calls; the CV is over the per-pass means.
    ``latency.device`` (``cpu``, the deployment target, by default; or ``cuda[:N]``) is where the torch models are
    moved for the measurement, and from where they come back to the CPU after it.

Paired measurement against a reference (``measure_paired``)
    Each call of the model is next to a call of the reference (the fp32 teacher) on the *same* input: A B, B A,
    A B, … (who goes first alternates, so neither always runs on a cache the other warmed).  The speed-up is the
    median over those pairs of ``reference ms / model ms``: on a quiet machine that is ``reference p50 / model
    p50``, and under load it stays there, because each ratio is taken between two calls microseconds apart.
    (A ratio of two p50s taken over a run whose first half was quiet and second half loaded is not robust: each
    p50 lands somewhere between the quiet and the loaded mode.)  Its CV is over the per-pass medians.

    Why the ratio is the figure to trust: on a shared machine the noise is mostly slow — another job starts, the
    clock steps down, the cache is thrashed for a few seconds.  Such noise scales both models' times by the same
    factor, since their calls are microseconds apart, and the factor cancels in the ratio.  Absolute milliseconds
    carry it in full.  For the same reason the ratio is what compares workers on different CPUs: a machine 1.5x
    slower makes both numbers 1.5x larger.  (It does not cancel noise that hits one call and not its neighbour;
    that part is what the speed-up's own CV shows.)

Throughput (``measure_throughput``)
    The same sample in batches of ``batch_size`` (padded to the longest row of each batch): rows per second,
    the median over ``repeats`` passes.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from latencysolver.config.study import LatencyConfig
from latencysolver.data.batches import EncodedSplit, collate
from latencysolver.devices import model_device, on_device, resolve_device

Inputs = dict[str, torch.Tensor]
# Anything called like a Hugging Face model: ``model(**inputs)``.  An ``nn.Module`` or an onnxruntime wrapper.
Runnable = Callable[..., Any]


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
        return {
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "mean_ms": self.mean_ms,
            "cv": self.cv,
            "threads": self.threads,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class PairedLatency:
    """A model and its reference measured call by call on the same inputs."""

    model: LatencyStats
    reference: LatencyStats
    speedup: float  # median over paired calls of reference ms / model ms
    speedup_cv: float  # CV of the per-pass speed-ups: what is left after the common noise cancels

    def summary(self) -> dict[str, Any]:
        return {
            "speedup": self.speedup,
            "speedup_cv": self.speedup_cv,
            "model": self.model.summary(),
            "reference": self.reference.summary(),
        }


@dataclass(frozen=True)
class Throughput:
    rows_per_second: float
    batch_size: int
    threads: int
    rows: int


# --------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------


def sample_rows(split: EncodedSplit, config: LatencyConfig) -> list[int]:
    """The same row indices for every model of a study: ``Random(seed)`` picks them."""
    return random.Random(config.seed).sample(range(len(split)), min(config.rows, len(split)))


def latency_inputs(split: EncodedSplit, config: LatencyConfig, pad_id: int = 0) -> list[Inputs]:
    """The sampled rows, each a batch of one at its real length."""
    return [collate(split, [i], pad_id).inputs for i in sample_rows(split, config)]


def throughput_inputs(split: EncodedSplit, config: LatencyConfig, batch_size: int, pad_id: int = 0) -> list[Inputs]:
    """The sampled rows in batches of ``batch_size``, each padded to its longest row."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, but got {batch_size!r}")
    rows = sample_rows(split, config)
    return [collate(split, rows[i : i + batch_size], pad_id).inputs for i in range(0, len(rows), batch_size)]


# --------------------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------------------


def _timed(model: Runnable, inputs: Inputs) -> float:
    """Milliseconds for one call; on CUDA the kernels are waited for, not just launched."""
    cuda = next(iter(inputs.values())).is_cuda
    start = time.perf_counter()
    model(**inputs)
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000.0


@contextmanager
def _threads(threads: int, *models: Runnable) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    for model in models:
        if hasattr(model, "set_threads"):  # runtimes with their own thread pool (onnxruntime)
            model.set_threads(threads)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _placed(config: LatencyConfig, *models: Runnable) -> Iterator[None]:
    """The torch models on ``config.device`` for the measurement, back on the CPU after it."""
    device = resolve_device(config.device, key="latency.device", auto=False)
    with ExitStack() as stack:
        for model in models:
            if isinstance(model, torch.nn.Module):
                stack.enter_context(on_device(model, device))
        yield


def _prepare(model: Runnable, inputs: list[Inputs]) -> list[Inputs]:
    if hasattr(model, "eval"):
        model.eval()
    device = model_device(model)
    return [{k: v.to(device) for k, v in x.items()} for x in inputs] if device.type != "cpu" else inputs


def _stats(samples: list[float], pass_means: list[float], threads: int, rows: int) -> LatencyStats:
    ordered = sorted(samples)
    return LatencyStats(
        p50_ms=statistics.median(ordered),
        p90_ms=ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        mean_ms=statistics.fmean(ordered),
        cv=coefficient_of_variation(pass_means),
        threads=threads,
        rows=rows,
        samples_ms=tuple(samples),
    )


def coefficient_of_variation(values: list[float]) -> float:
    """Population standard deviation over mean; 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean else 0.0


def measure_latency(model: Runnable, inputs: list[Inputs], config: LatencyConfig) -> LatencyStats:
    """Batch-1 latency of one model on the sample (see the module docstring for the protocol)."""
    with _placed(config, model), _threads(config.threads, model):
        inputs = _prepare(model, inputs)
        for x in inputs * config.warmup:
            model(**x)
        samples: list[float] = []
        pass_means: list[float] = []
        for _ in range(config.repeats):
            times = [_timed(model, x) for x in inputs]
            samples += times
            pass_means.append(statistics.fmean(times))
    return _stats(samples, pass_means, config.threads, len(inputs))


def measure_paired(
    model: Runnable,
    reference: Runnable,
    inputs: list[Inputs],
    config: LatencyConfig,
    reference_inputs: list[Inputs] | None = None,
) -> PairedLatency:
    """Model and reference interleaved call by call on the same inputs; the speed-up is the median pair ratio.

    ``reference_inputs``: the same rows as the reference reads them, where the model reads fewer tokens of each
    (a ``max_tokens`` student against the teacher at the study's full length); default ``inputs``."""
    if reference_inputs is not None and len(reference_inputs) != len(inputs):
        raise ValueError(f"{len(reference_inputs)} reference inputs for {len(inputs)} model inputs")
    with _placed(config, model, reference), _threads(config.threads, model, reference):
        model_inputs = _prepare(model, inputs)
        reference_inputs = _prepare(reference, inputs if reference_inputs is None else reference_inputs)
        for x, y in zip(model_inputs * config.warmup, reference_inputs * config.warmup, strict=True):
            model(**x)
            reference(**y)
        a_all: list[float] = []
        b_all: list[float] = []
        a_means: list[float] = []
        b_means: list[float] = []
        ratios: list[float] = []
        pass_speedups: list[float] = []
        for p in range(config.repeats):
            a_pass, b_pass = [], []
            for i in range(len(inputs)):
                if (p + i) % 2 == 0:
                    a_pass.append(_timed(model, model_inputs[i]))
                    b_pass.append(_timed(reference, reference_inputs[i]))
                else:
                    b_pass.append(_timed(reference, reference_inputs[i]))
                    a_pass.append(_timed(model, model_inputs[i]))
            a_all += a_pass
            b_all += b_pass
            a_means.append(statistics.fmean(a_pass))
            b_means.append(statistics.fmean(b_pass))
            pass_ratios = [b / a for a, b in zip(a_pass, b_pass, strict=True)]
            ratios += pass_ratios
            pass_speedups.append(statistics.median(pass_ratios))
    return PairedLatency(
        model=_stats(a_all, a_means, config.threads, len(inputs)),
        reference=_stats(b_all, b_means, config.threads, len(inputs)),
        speedup=statistics.median(ratios),
        speedup_cv=coefficient_of_variation(pass_speedups),
    )


def measure_throughput(model: Runnable, batches: list[Inputs], config: LatencyConfig) -> Throughput:
    """Rows per second over the sample in batches (the median pass); warm-up and threads as for latency."""
    rows = sum(int(next(iter(x.values())).shape[0]) for x in batches)
    with _placed(config, model), _threads(config.threads, model):
        batches = _prepare(model, batches)
        for x in batches * config.warmup:
            model(**x)
        seconds = [sum(_timed(model, x) for x in batches) / 1000.0 for _ in range(config.repeats)]
    return Throughput(
        rows_per_second=rows / statistics.median(seconds),
        batch_size=max(int(next(iter(x.values())).shape[0]) for x in batches),
        threads=config.threads,
        rows=rows,
    )
