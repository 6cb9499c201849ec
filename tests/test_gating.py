"""Hardware gating: a probe that finds a setting slow removes it from what trials can sample."""

from __future__ import annotations

import dataclasses

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
    config = LatencyConfig(threads=1, rows=4, warmup=1, repeats=2, max_speedup_cv=None)  # bounds: tests below
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
    assert probe.stable == {"bf16": True} and probe.attempts == {"bf16": 1} and "bf16" in probe.speedup_cv


def spread_paired(monkeypatch, cv: float, speedup: float = 0.5) -> list:
    """Every paired measurement of the stability checks reads ``speedup`` with a pair-ratio CV of ``cv`` (the
    real calls run, on the tiny model); returns the list of measured models, one per measurement."""
    import latencysolver.latency.stability as stability

    real = stability.measure_paired
    measured = []

    def paired(model, reference, inputs, config, reference_inputs=None):
        measured.append(model)
        result = real(model, reference, inputs, config, reference_inputs)
        return dataclasses.replace(result, speedup=speedup, speedup_cv=cv)

    monkeypatch.setattr(stability, "measure_paired", paired)
    return measured


BOUNDED = LatencyConfig(threads=1, rows=4, warmup=0, repeats=2, max_speedup_cv=0.10, remeasure_wait_s=1.5)


@pytest.mark.parametrize("cv", [0.30, 0.02])
def test_the_probe_remeasures_an_unstable_setting_and_then_gates_nothing(tiny_model_dir, one_thread, monkeypatch, cv):
    from latencysolver.config.knobs import USUAL_RECIPES
    from latencysolver.latency.gating import usual_settings
    from latencysolver.latency.protocol import latency_inputs
    from latencysolver.models.loading import load_classifier
    from tests.test_latency import SPLIT

    measured = spread_paired(monkeypatch, cv)
    sleeps: list[float] = []
    teacher = load_classifier(str(tiny_model_dir))
    settings = ("fp32", *USUAL_RECIPES)  # int8 among them
    probe = probe_hardware(
        teacher, latency_inputs(SPLIT, BOUNDED), BOUNDED, lambda m, s: m, settings, sleep=sleeps.append
    )
    space = SearchSpace(quant_dtype=Choices(("fp32", "int8")))
    others = tuple(s for s in settings if s != "fp32")
    if cv > BOUNDED.max_speedup_cv:  # measured 3 times each (remeasure_attempts 2, waits doubling), then not trusted
        assert len(measured) == 3 * len(others) and sleeps == [1.5, 3.0] * len(others)
        assert probe.unstable == others and probe.attempts["int8"] == 3 and probe.speedup_cv["int8"] == 0.3
        assert gate_space(space, probe) == (space, {})  # 0.5x, but not trusted: nothing dropped
        assert usual_settings(probe, keep_slow=False) == USUAL_RECIPES  # every usual recipe that ran stays
        assert "int8 pair-ratio CV 30.0% after 3 measurements" in probe.describe_unstable()
    else:  # stable at once: gated as before
        assert len(measured) == len(others) and sleeps == [] and probe.unstable == ()
        assert gate_space(space, probe)[0].quant_dtype == Fixed("fp32")
        assert usual_settings(probe, keep_slow=False) == ()  # all read 0.5x
    assert ProbeResult.from_dict(probe.to_dict()) == probe


def test_a_probe_stored_before_the_checks_is_read_as_stable():
    old = fake_probe(bf16=0.4, int8=2.5).to_dict()
    for key in ("speedup_cv", "stable", "attempts"):
        del old[key]
    probe = ProbeResult.from_dict(old)
    assert probe.unstable == () and probe.stable == {}
    assert gate_space(SPACE, probe)[0].quant_dtype == Choices(("fp32", "int8"))


@pytest.mark.parametrize("cv", [0.30, 0.02])
def test_run_says_when_an_unstable_probe_gates_nothing(study_yaml, tiny_model_dir, one_thread, monkeypatch, cv):
    from latencysolver.latency.hardware import hardware_fingerprint
    from latencysolver.latency.protocol import latency_inputs
    from latencysolver.models.loading import load_classifier
    from latencysolver.search.probe import gated_space
    from tests.test_latency import SPLIT

    latency = {"rows": 4, "warmup": 0, "repeats": 2, "threads": 1, "max_speedup_cv": 0.1, "remeasure_wait_s": 0}
    config = load_study_config(study_yaml(drop_slow_settings=True, latency=latency))
    spread_paired(monkeypatch, cv)
    study = optuna.create_study(directions=["maximize", "maximize"])
    teacher = load_classifier(str(tiny_model_dir))
    inputs = latency_inputs(SPLIT, config.latency)
    for _ in range(2):  # probed, then the stored probe read back (a resumed study)
        logs: list[str] = []
        space, probe = gated_space(study, config, teacher, inputs, hardware_fingerprint(1), logs.append)
        stored = study_record(study).hardware_probe
        assert stored["speedup_cv"] == {"int8": cv} and stored["stable"] == {"int8": cv < 0.1}
        unstable = [line for line in logs if "stayed unstable" in line]
        if cv > 0.1:
            assert space.quant_dtype == config.search_space.quant_dtype  # int8 read 0.5x, but is kept
            assert unstable == [
                "hardware gating: off, the probe stayed unstable (int8 pair-ratio CV 30.0% after 3 measurements, "
                "bound 10.0%): other jobs bias its figures, so no setting is dropped for speed"
            ]
            assert not any("quant_dtype int8 dropped" in line for line in logs)
        else:
            assert space.quant_dtype == Fixed("fp32") and unstable == []
            assert any("quant_dtype int8 dropped" in line for line in logs)


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
