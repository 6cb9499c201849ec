"""Hardware gating: a probe that finds a setting slow removes it from what trials can sample."""

from __future__ import annotations

import optuna
import pytest
import torch

from latencysolver.config.space import Choices, Fixed, SearchSpace
from latencysolver.config.study import LatencyConfig, load_study_config
from latencysolver.latency.gating import ProbeResult, gate_space, probe_hardware
from latencysolver.results.records import study_record, trial_record
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study
from latencysolver.search.suggest import suggest_recipe


def fake_probe(**speedup: float) -> ProbeResult:
    return ProbeResult(
        hardware_key="test",
        cpu_model="test CPU",
        cpu_flags=("avx2",),
        runtimes={"torch": "x", "onnxruntime": "y"},
        speedup={"fp32": 1.0, **speedup},
    )


SPACE = SearchSpace(quant_dtype=Choices(("fp32", "bf16", "int8")), temperature=Choices((1.0, 2.0)))


def test_slow_bf16_is_absent_from_the_sampled_space():
    gated, dropped = gate_space(SPACE, fake_probe(bf16=0.4, int8=2.5))
    assert gated.quant_dtype == Choices(("fp32", "int8"))
    assert set(dropped) == {"bf16"} and "0.40x" in dropped["bf16"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled = {suggest_recipe(study.ask(), gated).quant_dtype for _ in range(40)}
    assert sampled == {"fp32", "int8"}
    # without gating the same sampler does reach bf16: the test would notice if gating did nothing
    other = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ungated = {suggest_recipe(other.ask(), SPACE).quant_dtype for _ in range(40)}
    assert "bf16" in ungated


def test_gating_keeps_fp32_fixed_values_and_at_least_one_choice():
    assert gate_space(SPACE, fake_probe(bf16=0.4, int8=0.5))[0].quant_dtype == Fixed("fp32")
    fixed = SearchSpace(quant_dtype=Fixed("bf16"))  # the user's explicit choice stays
    assert gate_space(fixed, fake_probe(bf16=0.4)) == (fixed, {})
    only_slow = SearchSpace(quant_dtype=Choices(("bf16", "fp16")))
    gated, dropped = gate_space(only_slow, fake_probe(bf16=0.8, fp16=0.3))
    assert gated.quant_dtype == Fixed("bf16") and set(dropped) == {"fp16"}


def test_a_setting_that_cannot_run_is_dropped_with_its_reason():
    probe = ProbeResult(
        hardware_key="k",
        cpu_model="m",
        cpu_flags=(),
        runtimes={},
        speedup={"fp32": 1.0},
        errors={"ort-int8": "cannot run here: ImportError: no onnxruntime"},
    )
    gated, dropped = gate_space(SearchSpace(quant_dtype=Choices(("fp32", "ort-int8"))), probe)
    assert gated.quant_dtype == Fixed("fp32") and "ImportError" in dropped["ort-int8"]
    assert ProbeResult.from_dict(probe.to_dict()) == probe


def test_probe_times_each_setting_against_fp32(tiny_model_dir, one_thread):
    from latencysolver.latency.protocol import latency_inputs
    from latencysolver.models.loading import load_classifier
    from tests.test_latency import SPLIT

    teacher = load_classifier(str(tiny_model_dir))
    config = LatencyConfig(threads=1, rows=4, warmup=1, repeats=2)
    inputs = latency_inputs(SPLIT, config)
    slowed = []

    class Slow(torch.nn.Module):  # a "setting" 20 ms slower than the probe model per call
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **x):
            import time

            time.sleep(0.02)
            return self.inner(**x)

    def convert(model, setting):
        if setting == "broken":
            raise RuntimeError("no such kernel")
        slowed.append(setting)
        return Slow(model)

    probe = probe_hardware(teacher, inputs, config, convert, ("fp32", "bf16", "broken"))
    assert probe.speedup["fp32"] == 1.0 and probe.speedup["bf16"] < 0.5
    assert "no such kernel" in probe.errors["broken"]
    assert set(probe.slow()) == {"bf16", "broken"}
    assert slowed == ["bf16"]


def test_study_stores_its_probe_and_a_resumed_study_reuses_it(study_yaml, tmp_path):
    config = load_study_config(study_yaml(drop_slow_settings=True, n_trials=1))
    options = RunOptions(cache_dir=str(tmp_path / "cache"), progress=False)
    logs: list[str] = []
    study = run_study(config, options, log=logs.append)
    probe = study_record(study).hardware_probe
    assert set(probe["speedup"]) == {"fp32", "int8"} and probe["cpu_model"]
    assert any(line.startswith("hardware probe:") for line in logs)
    # a slow setting per the stored probe is gated on resume, without probing again
    study.set_user_attr("hardware_probe", dict(probe, speedup={"fp32": 1.0, "int8": 0.1}))
    logs.clear()
    study = run_study(load_study_config(study_yaml(drop_slow_settings=True, n_trials=4)), options, log=logs.append)
    assert any("quant_dtype int8 dropped" in line for line in logs)
    record = study_record(study)
    assert record.searched_space["quant_dtype"] == "fp32"
    assert all(trial_record(t).recipe_dict["quant_dtype"] == "fp32" for t in study.get_trials()[1:])
    assert record.hardware_probe["speedup"]["int8"] == 0.1  # not re-probed


def test_keep_slow_settings_flag(study_yaml):
    config = load_study_config(study_yaml(drop_slow_settings=True), keep_slow_settings=True)
    assert config.drop_slow_settings is False


@pytest.mark.parametrize("value", ["yes", 1])
def test_drop_slow_settings_must_be_a_boolean(study_yaml, value):
    from latencysolver.errors import ConfigError

    with pytest.raises(ConfigError, match=r"drop_slow_settings: expected true or false"):
        load_study_config(study_yaml(drop_slow_settings=value))
