"""benchmarks/gpu_check.py runs end to end on a CPU-only machine (``--cpu-only``, a tiny study) and says so when
asked for a GPU that is not there: the script itself is checked wherever the tests run."""

from __future__ import annotations

import torch

from tests.conftest import load_benchmark, write_study_yaml


def test_cpu_only_run_prints_step_times_and_trials(tmp_path, tiny_model_dir, synthetic_data_dir, capsys):
    path = write_study_yaml(tmp_path, tiny_model_dir, synthetic_data_dir, distillation={"steps": 3, "batch_size": 8})
    argv = ["--cpu-only", "--config", str(path), "--data", str(synthetic_data_dir), "--trials", "2", "--steps", "2"]
    assert (
        load_benchmark("gpu_check").main(
            [*argv, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "study: 2 trials" in out
    assert len([line for line in out.splitlines() if line.strip().startswith("cpu") and "ms/step" in line]) == 1
    trials = [line for line in out.splitlines() if line.strip().startswith("trial ") and "accuracy" in line]
    assert len(trials) == 2 and all("trained on cpu, timed on cpu" in line for line in trials)


def test_without_cuda_it_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_benchmark("gpu_check").main([]) == 2
    assert "no CUDA device" in capsys.readouterr().out
