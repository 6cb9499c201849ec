"""Where training runs (issue 19), checked on CPU-only machines: ``training.device`` resolution and its errors, the
training loop's moves to the device and back, GPUs handed to local workers, and caches that ignore the device."""

from __future__ import annotations

import dataclasses
import platform

import pytest
import torch
from optuna.trial import TrialState

from latencysolver.cli import main
from latencysolver.config.study import load_study_config
from latencysolver.config.training import DeviceConfig, TrainConfig
from latencysolver.data.batches import EncodedSplit
from latencysolver.devices import CPU, Placement, resolve_device, training_placement, worker_gpus
from latencysolver.errors import ConfigError
from latencysolver.latency.hardware import HardwareFingerprint, hardware_fingerprint
from latencysolver.models.teacher import teacher_key
from latencysolver.results.records import trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.training.loop import cross_entropy_loss, train
from tests.test_cli_errors import assert_nothing_written


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture()
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cpu_and_auto_without_cuda_train_on_the_cpu(no_cuda):
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == CPU


def test_cuda_without_cuda_is_one_clear_error(no_cuda):
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda", file="s.yaml", key="training.device")
    assert info.value.key == "training.device" and info.value.value == "cuda"
    assert str(info.value).startswith("s.yaml: training.device: cuda, but torch") and "no CUDA device" in str(
        info.value
    )


def test_a_gpu_number_past_the_last_is_refused(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"cuda:2, but this machine has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_a_malformed_device_names_the_key(study_yaml, spec):
    with pytest.raises(ConfigError) as info:
        load_study_config(study_yaml(training={"device": spec}))
    assert info.value.key == "training.device" and "auto, cpu, cuda or cuda:N" in str(info.value)


def test_run_on_cuda_without_cuda_exits_before_anything_is_written(study_yaml, tmp_path, capsys, no_cuda):
    path = study_yaml(training={"device": "cuda"})
    code = main(["run", str(path), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert str(path) in err and "training.device: cuda" in err
    assert_nothing_written(tmp_path)


def test_a_study_with_training_on_the_cpu_records_it(study_yaml, tmp_path):
    config = load_study_config(study_yaml(training={"device": "cpu", "bf16": False}, n_trials=1))
    assert config.training == DeviceConfig(device="cpu", bf16=False)
    study = run_study(config, RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=lambda _: None)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE
    assert trial_record(trial).hardware["training_device"] == "cpu"


def test_the_training_device_is_recorded_but_keeps_the_latency_key():
    here = hardware_fingerprint(1)
    on_gpu = dataclasses.replace(here, training_device="cuda: NVIDIA H200")
    assert on_gpu.key == here.key  # a millisecond means the same whoever trained the student
    assert "trained on cuda: NVIDIA H200" in on_gpu.describe() and "trained on" not in here.describe()
    old = {k: v for k, v in here.to_dict().items() if k != "training_device"}  # written before issue 19
    assert HardwareFingerprint.from_dict(old).key == here.key


def test_the_teacher_cache_key_ignores_the_device(study_yaml):
    config = load_study_config(study_yaml())
    elsewhere = dataclasses.replace(config, training=DeviceConfig(device="cuda:1", bf16=False))
    assert teacher_key(config, "data") == teacher_key(elsewhere, "data")


class _Moves(torch.nn.Module):
    """A classifier that records where ``train`` sends it (``.to`` is recorded, not done: there is no GPU)."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(16, 4)
        self.head = torch.nn.Linear(4, 2)
        self.moves: list[str] = []
        self.fail_at, self.calls = fail_at, 0

    def to(self, device, *args, **kwargs):
        self.moves.append(str(device))
        return self

    def forward(self, input_ids, attention_mask, **_):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory")
        logits = self.head(self.embed(input_ids).mean(dim=1))
        return type("Out", (), {"logits": logits})()


def _rows() -> EncodedSplit:
    return EncodedSplit(input_ids=tuple((1, 2, 3 + i % 5) for i in range(8)), token_type_ids=None, labels=(0, 1) * 4)


def test_train_moves_the_model_to_the_device_and_back(monkeypatch):
    sent: list[str] = []
    from latencysolver.data import batches

    monkeypatch.setattr(batches.Batch, "to", lambda self, device: sent.append(str(device)) or self)
    placement = Placement(device=torch.device("cuda:1"), bf16=False)
    model = _Moves()
    train(model, _rows(), TrainConfig(steps=3, batch_size=4), cross_entropy_loss, progress=False, placement=placement)
    assert model.moves == ["cuda:1", "cpu"] and sent == ["cuda:1"] * 3

    failing = _Moves(fail_at=2)  # an error part-way still leaves the model on the CPU
    with pytest.raises(RuntimeError, match="out of memory"):
        train(
            failing,
            _rows(),
            TrainConfig(steps=3, batch_size=4),
            cross_entropy_loss,
            progress=False,
            placement=placement,
        )
    assert failing.moves == ["cuda:1", "cpu"]


def test_training_placement_follows_the_study(study_yaml, no_cuda):
    config = load_study_config(study_yaml(training={"device": "auto"}))
    assert training_placement(config) == Placement(device=CPU, bf16=True)
    assert not training_placement(config).autocast_bf16  # no autocast off CUDA


def test_local_workers_get_one_gpu_each(two_gpus, monkeypatch):
    assert worker_gpus("auto", 3) == ["0", "1", "0"]
    assert worker_gpus("cuda", 2) == ["0", "1"]
    assert worker_gpus("cuda:1", 2) == [None, None]  # one named GPU: every worker uses it
    assert worker_gpus("cpu", 2) == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert worker_gpus("auto", 3) == ["2", "5", "2"]


def test_spawned_workers_see_their_gpu(monkeypatch):
    from latencysolver.search import workers

    seen = []
    monkeypatch.setattr(workers.subprocess, "Popen", lambda command, env: seen.append(env.get("CUDA_VISIBLE_DEVICES")))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    workers.spawn_workers(3, "s", "sqlite:///x.db", [], ["0", "1", "0"])
    workers.spawn_workers(2, "s", "sqlite:///x.db", [])
    assert seen == ["0", "1", "0", None, None]


def test_no_gpus_means_no_worker_environment_change(no_cuda):
    assert worker_gpus("auto", 2) == [None, None]


def test_latency_on_cuda_refuses_cpu_only_backends(study_yaml):
    with pytest.raises(ConfigError) as info:
        load_study_config(study_yaml(latency={"device": "cuda", "threads": 1}))  # the tiny space has int8
    assert info.value.key == "search_space.quant_dtype" and "int8 does not run on latency.device cuda" in str(
        info.value
    )
    with pytest.raises(ConfigError) as info:
        load_study_config(study_yaml(latency={"device": "auto"}))
    assert info.value.key == "latency.device"


def test_run_timing_on_cuda_without_cuda_exits_before_anything_is_written(study_yaml, tmp_path, capsys, no_cuda):
    space = {"prune_ratio": {"choices": [0.0, 0.5]}, "quant_dtype": {"choices": ["fp32", "fp16"]}}
    path = study_yaml(latency={"device": "cuda:0", "threads": 1}, search_space=space)
    code = main(["run", str(path), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "latency.device: cuda:0, but torch" in err
    assert_nothing_written(tmp_path)


def test_measurements_move_torch_models_to_the_latency_device_and_back(two_gpus, monkeypatch):
    from latencysolver.config.study import LatencyConfig
    from latencysolver.latency import protocol

    monkeypatch.setattr(protocol, "_timed", lambda model, inputs: (model(**inputs), 1.0)[1])  # no CUDA to wait for
    model, reference = _Moves(), _Moves()
    rows = [{"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}]
    config = LatencyConfig(device="cuda:1", threads=1, rows=1, repeats=2, warmup=1)
    protocol.measure_paired(model, reference, rows, config)
    assert model.moves == reference.moves == ["cuda:1", "cpu"]
    protocol.measure_latency(model, rows, LatencyConfig(threads=1, rows=1, repeats=2))
    assert model.moves == ["cuda:1", "cpu"]  # timed on the CPU: not moved


def test_freed_memory_is_handed_back_where_there_is_glibc(monkeypatch):
    from latencysolver import devices

    devices._malloc_trim.cache_clear()
    assert devices.release_freed_memory() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setattr(devices.sys, "platform", "darwin")
    devices._malloc_trim.cache_clear()
    assert devices.release_freed_memory() is False  # no glibc: nothing to call, no error
    devices._malloc_trim.cache_clear()
