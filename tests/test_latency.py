"""Batch-1 latency: the seeded sample of rows, the thread setting, and the statistics, with sleeping test doubles."""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from latencysolver.config.study import LatencyConfig
from latencysolver.data.batches import EncodedSplit
from latencysolver.latency import protocol
from latencysolver.latency.protocol import LatencyStats, latency_inputs, measure_latency, measure_paired


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
    for x, y in zip(a, b, strict=True):
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
    assert model.calls == config.warmup * 10 + 30  # warm-up passes run but are not timed
    assert stats.rows == 10
    assert 2.0 <= stats.p50_ms <= 6.0
    assert min(stats.samples_ms) >= 2.0  # a sleep never returns early
    assert 2.0 <= stats.mean_ms <= 8.0
    # the figures are the statistics of the samples recorded: all calls for p50/p90/mean, per-pass means for CV
    ordered = sorted(stats.samples_ms)
    assert stats.p50_ms == statistics.median(ordered)
    assert stats.p90_ms == ordered[round(0.9 * 29)]
    assert stats.mean_ms == pytest.approx(sum(stats.samples_ms) / 30)
    pass_means = [statistics.fmean(stats.samples_ms[i : i + 10]) for i in (0, 10, 20)]
    assert stats.cv == pytest.approx(statistics.pstdev(pass_means) / statistics.fmean(pass_means))
    assert not model.training  # measured in eval mode
    assert set(stats.summary()) == {"p50_ms", "p90_ms", "mean_ms", "cv", "threads", "rows"}


def test_two_speeds_show_in_p50_and_p90(restore_threads):
    lengths = [8] * 7 + [16] * 3  # 70% short rows at 2 ms, 30% long rows at 6 ms
    split = _split(lengths)
    config = LatencyConfig(threads=1, rows=10, warmup=1, repeats=2, seed=1)
    inputs = latency_inputs(split, config)
    stats = measure_latency(Sleeper(ms_by_length={8: 2.0, 16: 6.0}), inputs, config)
    assert len(stats.samples_ms) == 20
    assert 2.0 <= stats.p50_ms < 5.0  # the median call is a short row
    assert stats.p90_ms >= 6.0  # the 90th percentile is a long row
    assert sorted(stats.samples_ms)[-6] >= 6.0  # six long calls (3 rows x 2 passes)
    assert stats.mean_ms > stats.p50_ms


def scripted_clock(monkeypatch, ms_by_model: dict) -> dict[int, list[float]]:
    """Each timed call of a model takes the next of its scripted milliseconds, so the statistics can be worked
    out by hand.  Returns what is left of each script (by ``id(model)``): empty once every time was used."""
    left = {id(model): list(ms) for model, ms in ms_by_model.items()}
    monkeypatch.setattr(protocol, "_timed", lambda model, inputs: left[id(model)].pop(0))
    return left


def test_constant_time_gives_cv_zero(monkeypatch, restore_threads):
    config = LatencyConfig(threads=1, rows=4, warmup=1, repeats=3)
    model = Sleeper(ms=0.0)
    left = scripted_clock(monkeypatch, {model: [5.0] * 12})
    stats = measure_latency(model, latency_inputs(SPLIT, config), config)
    assert left == {id(model): []}
    assert (stats.p50_ms, stats.p90_ms, stats.mean_ms, stats.cv) == (5.0, 5.0, 5.0, 0.0)
    assert model.calls == 4  # the warm-up pass only: timed calls went through the scripted clock


def test_known_jitter_gives_the_hand_computed_statistics(monkeypatch, restore_threads):
    config = LatencyConfig(threads=1, rows=4, warmup=0, repeats=3)
    model = Sleeper(ms=0.0)
    left = scripted_clock(monkeypatch, {model: [1.0, 3.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0, 6.0, 5.0, 7.0, 6.0]})
    stats = measure_latency(model, latency_inputs(SPLIT, config), config)
    assert left == {id(model): []}
    # pass means 2, 4, 6 ms: mean 4, population standard deviation sqrt(8/3) = 1.632993, CV 0.408248
    assert stats.cv == pytest.approx(0.408248, abs=1e-6)
    # sorted: 1 2 2 3 4 4 4 4 5 6 6 7; median (4 + 4) / 2; p90 the nearest rank round(0.9 * 11) = 10 (0-based)
    assert (stats.p50_ms, stats.p90_ms, stats.mean_ms) == (4.0, 6.0, 4.0)


def test_paired_speedup_and_its_cv_from_known_pairs(monkeypatch, restore_threads):
    config = LatencyConfig(threads=1, rows=2, warmup=0, repeats=2)
    model, reference = Sleeper(ms=0.0), Sleeper(ms=0.0)
    left = scripted_clock(monkeypatch, {model: [2.0, 2.0, 2.0, 2.0], reference: [4.0, 4.0, 6.0, 6.0]})
    paired = measure_paired(model, reference, latency_inputs(SPLIT, config), config)
    assert left == {id(model): [], id(reference): []}
    # ratios 2, 2 in pass 1 and 3, 3 in pass 2: speed-up median 2.5; pass speed-ups 2 and 3, CV 0.5 / 2.5 = 0.2
    assert paired.speedup == 2.5 and paired.speedup_cv == pytest.approx(0.2)
    assert paired.model.cv == 0.0 and paired.reference.cv == pytest.approx(1.0 / 5.0)  # pass means 4, 6


# --------------------------------------------------------------------------------------------------------------
# Paired measurement against a reference, noise, throughput
# --------------------------------------------------------------------------------------------------------------


class SharedLoad:
    """A noisy neighbour both models feel: every ``period`` calls the machine is ``factor`` times slower."""

    def __init__(self, period: int = 10, factor: float = 3.0):
        self.period, self.factor, self.calls = period, factor, 0

    def scale(self) -> float:
        self.calls += 1
        return self.factor if (self.calls // self.period) % 2 else 1.0


class LoadedSleeper(nn.Module):
    def __init__(self, ms: float, load: SharedLoad):
        super().__init__()
        self.ms, self.load = ms, load

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        time.sleep(self.ms * self.load.scale() / 1000.0)
        return SimpleNamespace(logits=torch.zeros(input_ids.shape[0], 2))


def test_paired_speedup_of_a_model_against_itself_is_one(restore_threads):
    from latencysolver.latency.protocol import measure_paired

    config = LatencyConfig(threads=1, rows=10, warmup=2, repeats=3, seed=0)
    model = Sleeper(ms=2.0)
    paired = measure_paired(model, model, latency_inputs(SPLIT, config), config)
    assert model.calls == 2 * config.rows * (config.warmup + config.repeats)
    assert len(paired.model.samples_ms) == len(paired.reference.samples_ms) == 30
    ratios = [b / a for a, b in zip(paired.model.samples_ms, paired.reference.samples_ms, strict=True)]
    assert paired.speedup == pytest.approx(statistics.median(ratios))
    assert abs(paired.speedup - 1.0) <= max(3 * paired.speedup_cv, 0.15)


def test_paired_speedup_cancels_noise_that_hits_both_models(restore_threads):
    """Under a load that triples every call for stretches, p50 ms moves a lot; the paired ratio does not."""
    from latencysolver.latency.protocol import measure_paired

    config = LatencyConfig(threads=1, rows=10, warmup=0, repeats=4, seed=0)
    load = SharedLoad(period=20, factor=3.0)  # 20 calls = one pass of both models: alternate passes are slow
    fast, slow = LoadedSleeper(2.0, load), LoadedSleeper(6.0, load)
    paired = measure_paired(fast, slow, latency_inputs(SPLIT, config), config)
    assert paired.model.cv > 0.3  # the absolute figure swings between quiet and loaded passes
    assert paired.speedup == pytest.approx(3.0, rel=0.15)  # the true ratio, 6 ms / 2 ms
    assert paired.speedup_cv < paired.model.cv / 2


def test_jittered_model_still_gives_its_median(restore_threads):
    """Rare long stalls (one call in eight takes +25 ms) move the mean, not the median."""
    import random as _random

    class Jittery(nn.Module):
        def __init__(self):
            super().__init__()
            self.rng = _random.Random(0)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            stall = 25.0 if self.rng.random() < 0.125 else 0.0
            time.sleep((2.0 + stall) / 1000.0)
            return SimpleNamespace(logits=torch.zeros(1, 2))

    config = LatencyConfig(threads=1, rows=16, warmup=2, repeats=3, seed=0)
    stats = measure_latency(Jittery(), latency_inputs(SPLIT, config), config)
    assert 2.0 <= stats.p50_ms <= 3.5
    assert stats.mean_ms > stats.p50_ms + 1.0  # the stalls are there, and the median ignores them


def test_paired_measurement_on_real_models_orders_them_by_depth(restore_threads):
    """A BERT with half the layers of another is reported faster, and a model against itself is 1.0x."""
    from transformers import BertConfig, BertForSequenceClassification

    from latencysolver.latency.protocol import measure_paired

    def bert(layers: int) -> nn.Module:
        torch.manual_seed(0)
        return BertForSequenceClassification(
            BertConfig(
                vocab_size=2000, hidden_size=128, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=512
            )
        ).eval()

    deep, shallow = bert(8), bert(4)
    split = _split([40 + (13 * i) % 60 for i in range(20)])
    config = LatencyConfig(threads=1, rows=12, warmup=3, repeats=3, seed=0)
    inputs = latency_inputs(split, config)
    halved = measure_paired(shallow, deep, inputs, config)
    assert halved.speedup > 1.3  # ideally ~2; embeddings and the head do not shrink
    itself = measure_paired(deep, deep, inputs, config)
    assert abs(itself.speedup - 1.0) <= max(3 * itself.speedup_cv, 0.15)


def test_throughput_batches_the_same_rows(restore_threads):
    from latencysolver.latency.protocol import measure_throughput, throughput_inputs

    config = LatencyConfig(threads=1, rows=10, warmup=1, repeats=2, seed=0)
    batches = throughput_inputs(SPLIT, config, batch_size=4)
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    sampled = sorted(_row_of(x) for x in latency_inputs(SPLIT, config))
    assert sorted(int(row[1]) - 1000 for b in batches for row in b["input_ids"]) == sampled
    for b in batches:  # padded to the longest row of its batch, the mask marks the real tokens
        assert b["input_ids"].shape[1] == int(b["attention_mask"].sum(dim=1).max())
    result = measure_throughput(Sleeper(ms=5.0), batches, config)  # 3 calls of 5 ms per pass for 10 rows
    assert result.rows == 10 and result.batch_size == 4 and result.threads == 1
    assert 200 <= result.rows_per_second <= 10 / 0.015 + 1


def test_set_threads_is_called_on_runtimes_that_own_their_threads(restore_threads):
    class Runtime:
        """Not an nn.Module: called like one, with its own thread pool (as the onnxruntime wrapper is)."""

        def __init__(self):
            self.threads = None

        def set_threads(self, n: int) -> None:
            self.threads = n

        def __call__(self, **inputs):
            return SimpleNamespace(logits=torch.zeros(1, 2))

    runtime = Runtime()
    config = LatencyConfig(threads=1, rows=3, warmup=1, repeats=1)
    stats = measure_latency(runtime, latency_inputs(SPLIT, config), config)
    assert runtime.threads == 1 and stats.threads == 1 and len(stats.samples_ms) == 3
