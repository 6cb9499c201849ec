"""Batch-1 latency: the seeded sample of rows, the thread setting, and the statistics, with sleeping test doubles."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from latencysolver.batches import EncodedSplit
from latencysolver.config import LatencyConfig
from latencysolver.latency import LatencyStats, latency_inputs, measure_latency


def _split(lengths: list[int]) -> EncodedSplit:
    """Row i is [CLS] 1000+i ... [SEP] with its own length, so a sampled row can be told apart from every other."""
    ids = tuple((101,) + (1000 + i,) * (n - 2) + (102,) for i, n in enumerate(lengths))
    types = tuple((0,) * (n // 2) + (1,) * (n - n // 2) for n in lengths)
    return EncodedSplit(input_ids=ids, token_type_ids=types, labels=tuple(i % 2 for i in range(len(lengths))))


SPLIT = _split([5 + (7 * i) % 23 for i in range(40)])  # 40 rows, lengths 5 .. 27


def _row_of(x: dict[str, torch.Tensor]) -> int:
    return int(x["input_ids"][0, 1]) - 1000


class Sleeper(nn.Module):
    """Sleeps a fixed time per call (or per input length) and records what it saw."""

    def __init__(self, ms: float = 2.0, ms_by_length: dict[int, float] | None = None):
        super().__init__()
        self.ms, self.ms_by_length = ms, ms_by_length or {}
        self.calls = 0
        self.threads_seen: list[int] = []

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        self.calls += 1
        self.threads_seen.append(torch.get_num_threads())
        time.sleep(self.ms_by_length.get(input_ids.shape[1], self.ms) / 1000.0)
        return SimpleNamespace(logits=torch.zeros(input_ids.shape[0], 2))


# --------------------------------------------------------------------------------------------------------------
# The sample
# --------------------------------------------------------------------------------------------------------------


def test_same_seed_same_rows():
    a = latency_inputs(SPLIT, LatencyConfig(rows=8, seed=3))
    b = latency_inputs(SPLIT, LatencyConfig(rows=8, seed=3))
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):
        assert torch.equal(x["input_ids"], y["input_ids"])
        assert torch.equal(x["attention_mask"], y["attention_mask"])
    assert len({_row_of(x) for x in a}) == 8  # distinct rows


def test_different_seeds_pick_different_rows():
    rows = [[_row_of(x) for x in latency_inputs(SPLIT, LatencyConfig(rows=8, seed=s))] for s in range(4)]
    assert len({tuple(r) for r in rows}) == 4
    assert rows[0] != rows[1]


def test_each_input_is_batch_one_with_its_real_length():
    inputs = latency_inputs(SPLIT, LatencyConfig(rows=12, seed=0))
    assert len({x["input_ids"].shape[1] for x in inputs}) > 1  # not padded to a common width
    for x in inputs:
        i = _row_of(x)
        n = len(SPLIT.input_ids[i])
        assert x["input_ids"].shape == (1, n)
        assert x["input_ids"][0].tolist() == list(SPLIT.input_ids[i])
        assert x["attention_mask"].shape == (1, n) and bool(x["attention_mask"].all())
        assert x["token_type_ids"][0].tolist() == list(SPLIT.token_type_ids[i])


def test_more_rows_than_the_split_takes_every_row_once():
    small = _split([4, 6, 8])
    inputs = latency_inputs(small, LatencyConfig(rows=32, seed=0))
    assert sorted(_row_of(x) for x in inputs) == [0, 1, 2]


# --------------------------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_threads_are_set_for_the_measurement_and_restored(restore_threads):
    torch.set_num_threads(2)
    model = Sleeper(ms=0.0)
    inputs = latency_inputs(SPLIT, LatencyConfig(rows=3, seed=0))
    stats = measure_latency(model, inputs, LatencyConfig(threads=1, rows=3, warmup=2, repeats=2))
    assert torch.get_num_threads() == 2
    assert stats.threads == 1
    assert model.threads_seen and set(model.threads_seen) == {1}

    torch.set_num_threads(1)
    stats = measure_latency(Sleeper(ms=0.0), inputs, LatencyConfig(threads=2, rows=3, warmup=0, repeats=1))
    assert (torch.get_num_threads(), stats.threads) == (1, 2)


def test_threads_are_restored_when_the_model_fails(restore_threads):
    class Broken(nn.Module):
        def forward(self, **inputs):
            raise RuntimeError("boom")

    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(Broken(), latency_inputs(SPLIT, LatencyConfig(rows=2)), LatencyConfig(threads=1, warmup=1))
    assert torch.get_num_threads() == 2


def test_fixed_sleep_gives_its_duration(restore_threads):
    config = LatencyConfig(threads=1, rows=10, warmup=3, repeats=3, seed=0)
    inputs = latency_inputs(SPLIT, config)
    model = Sleeper(ms=2.0)
    stats = measure_latency(model, inputs, config)
    assert isinstance(stats, LatencyStats)
    assert len(stats.samples_ms) == config.rows * config.repeats == 30
    assert model.calls == config.warmup + 30  # warm-up calls run but are not timed
    assert stats.rows == 10
    assert 2.0 <= stats.p50_ms <= 6.0
    assert stats.p90_ms >= stats.p50_ms
    assert min(stats.samples_ms) >= 2.0  # a sleep never returns early
    assert 2.0 <= stats.mean_ms <= 8.0
    assert stats.mean_ms == pytest.approx(sum(stats.samples_ms) / 30)
    assert stats.cv >= 0.0
    assert not model.training  # measured in eval mode
    assert set(stats.summary()) == {"p50_ms", "p90_ms", "mean_ms", "cv", "threads", "rows"}


def test_two_speeds_show_in_p50_and_p90(restore_threads):
    lengths = [8] * 7 + [16] * 3  # 70% short rows at 2 ms, 30% long rows at 6 ms
    split = _split(lengths)
    config = LatencyConfig(threads=1, rows=10, warmup=1, repeats=2, seed=1)
    inputs = latency_inputs(split, config)
    stats = measure_latency(Sleeper(ms_by_length={8: 2.0, 16: 6.0}), inputs, config)
    assert len(stats.samples_ms) == 20
    assert stats.p90_ms >= stats.p50_ms
    assert 2.0 <= stats.p50_ms < 5.0  # the median call is a short row
    assert stats.p90_ms >= 6.0  # the 90th percentile is a long row
    assert sorted(stats.samples_ms)[-6] >= 6.0  # six long calls (3 rows x 2 passes)
    assert stats.mean_ms > stats.p50_ms
