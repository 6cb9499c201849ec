"""The hardware fingerprint: what it reads from /proc/cpuinfo, and that its key changes with what matters."""

from __future__ import annotations

import dataclasses
import os

import pytest

from latencysolver.latency.hardware import SPEED_FLAGS, busy_warning, cpu_info, hardware_fingerprint
from tests.conftest import TINY_LATENCY

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni
"""


def test_cpu_info_reads_model_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    model, flags = cpu_info(path)
    assert model == "AMD EPYC 9R14 96-Core Processor"
    assert {"avx2", "avx512_bf16", "avx512_vnni"} <= flags and "amx_bf16" not in flags


def test_cpu_info_without_the_file_still_answers(tmp_path):
    model, flags = cpu_info(tmp_path / "missing")
    assert model and flags == frozenset()


def test_fingerprint_records_threads_versions_and_only_speed_flags():
    import torch

    fp = hardware_fingerprint(threads=3)
    assert fp.threads == 3 and fp.device == "cpu" and fp.logical_cpus >= 1
    assert set(fp.cpu_flags) <= set(SPEED_FLAGS)
    assert torch.__version__.startswith(fp.torch)
    assert fp.onnxruntime and fp.transformers
    d = fp.to_dict()
    assert d["threads"] == 3 and isinstance(d["cpu_flags"], list)
    assert "3 threads" in fp.describe()


def test_key_is_stable_and_changes_with_threads_or_cpu():
    a, b = hardware_fingerprint(threads=2), hardware_fingerprint(threads=2)
    assert a.key == b.key and len(a.key) == 12
    assert hardware_fingerprint(threads=1).key != a.key
    assert dataclasses.replace(a, cpu_model="another CPU").key != a.key


@pytest.mark.parametrize(("load", "warned"), [(5.0, True), (2.0, False), (0.3, False)])
def test_the_machine_looks_busy_above_the_latency_threads(monkeypatch, load, warned):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    warning = busy_warning(threads=2)
    assert (warning is not None) == warned
    if warning:
        assert f"load average {load:.1f}" in warning and "2 threads" in warning


def test_no_load_average_no_warning(monkeypatch):
    def unavailable():
        raise OSError("getloadavg unavailable")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert busy_warning(threads=2) is None


def test_run_warns_once_when_the_machine_looks_busy(study_yaml, session_cache, monkeypatch):
    """Issue 17: a load average above the latency threads (2 here) is named once, before the trials (the
    threshold itself: the test above)."""
    from latencysolver.config.study import load_study_config
    from latencysolver.search.preparation import RunOptions
    from latencysolver.search.run import run_study

    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    lines: list[str] = []
    config = load_study_config(study_yaml(n_trials=1, latency={**TINY_LATENCY, "threads": 2}))
    run_study(config, RunOptions(cache_dir=session_cache, progress=False), log=lines.append)
    busy = [line for line in lines if "looks busy" in line]
    assert len(busy) == 1, lines
    assert "load average 5.0" in busy[0] and "2 threads" in busy[0]
