"""Hardware gating: measure once what each precision/backend buys on this machine, and search only what helps.

bf16 and fp16 on a CPU without bf16/fp16 math units run slower than fp32, and a study that spends trials on
them wastes its budget.  Rather than guess from CPU flags alone, the probe *measures*: a two-layer cut of the
teacher, converted to every ``quant_dtype`` setting, each timed interleaved with the fp32 original on real
validation rows (the paired protocol of ``latency.py``).  A setting whose speed-up is below ``threshold`` is
dropped from the search space unless the study keeps slow settings on purpose (``drop_slow_settings: false``
or ``--keep-slow-settings``).  The probe, with the CPU flags and runtime versions, is stored in the study's
user attrs, and a resumed study reuses it so that every trial samples from the same space.

The probe's figures are checked like a trial's (``latency/stability.py``): a setting whose pair-ratio CV passes
``max_speedup_cv`` is measured again after ``remeasure_wait_s`` (doubling), at most ``remeasure_attempts`` more
times.  (The teacher-drift bound has no baseline here: the study's baseline times the whole teacher, the probe a
cut of it.)  Other jobs on the machine bias the figures, by a factor of two or more (benchmarks/README.md), so a
probe with a setting that stays unstable gates nothing for speed: only the settings that cannot run at all are
dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from latencysolver.config.knobs import QUANT_DTYPES, USUAL_RECIPES
from latencysolver.config.space import Choices, Fixed, SearchSpace
from latencysolver.config.study import LatencyConfig
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import Inputs, Runnable
from latencysolver.latency.stability import measure_checked

PROBE_LAYERS = 2  # enough to time every kernel kind, few enough that the probe takes seconds
THRESHOLD = 1.0  # a setting must be at least as fast as fp32 torch to be searched


@dataclass(frozen=True)
class ProbeResult:
    hardware_key: str
    cpu_model: str
    cpu_flags: tuple[str, ...]
    runtimes: dict[str, str]
    speedup: dict[str, float]  # quant_dtype setting -> paired speed-up over fp32 torch on the probe
    errors: dict[str, str] = field(default_factory=dict)  # settings that could not run here, and why
    threshold: float = THRESHOLD
    # each measured setting's pair-ratio CV, whether it passed the stability checks, and the measurements it took
    # (empty in probes stored by versions before the checks: read as stable)
    speedup_cv: dict[str, float] = field(default_factory=dict)
    stable: dict[str, bool] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def unstable(self) -> tuple[str, ...]:
        """The settings whose figures stayed unstable after every re-measurement."""
        return tuple(name for name, ok in self.stable.items() if not ok)

    def slow(self) -> dict[str, str]:
        """Settings that cannot buy speed on this machine, with the reason; when a setting's figure stayed
        unstable, none is slow (the figures are not trusted), and only those that cannot run are listed."""
        out = {
            name: f"{value:.2f}x fp32 on the probe"
            for name, value in self.speedup.items()
            if value < self.threshold and not self.unstable
        }
        return out | dict(self.errors)

    def describe_unstable(self) -> str:
        """``ort-int8 pair-ratio CV 23.1% after 3 measurements, bf16 ...`` for the unstable settings."""
        return ", ".join(
            f"{name} pair-ratio CV {self.speedup_cv.get(name, float('nan')):.1%} after "
            f"{self.attempts.get(name, 1)} measurements"
            for name in self.unstable
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"cpu_flags": list(self.cpu_flags)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ProbeResult:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**({k: v for k, v in raw.items() if k in known} | {"cpu_flags": tuple(raw["cpu_flags"])}))


Convert = Callable[[nn.Module, str], Runnable]


def probe_hardware(
    teacher: nn.Module,
    inputs: list[Inputs],
    latency: LatencyConfig,
    convert: Convert,
    settings: tuple[str, ...] = QUANT_DTYPES,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Time every setting against fp32 torch on a ``PROBE_LAYERS``-layer cut of the teacher, each measured again
    while its pair-ratio CV passes ``latency.max_speedup_cv`` (see the module docstring)."""
    from latencysolver.compression import drop_layers_, encoder_layers

    probe = copy.deepcopy(teacher).eval()
    layers = len(encoder_layers(probe))
    drop_layers_(probe, list(range(min(PROBE_LAYERS, layers))))
    config = dataclasses.replace(latency, repeats=max(2, latency.repeats))
    speedup: dict[str, float] = {}
    errors: dict[str, str] = {}
    spread: dict[str, float] = {}
    stable: dict[str, bool] = {}
    attempts: dict[str, int] = {}
    for setting in settings:
        if setting == "fp32":
            speedup[setting] = 1.0
            continue
        try:
            runnable = convert(probe, setting)
        # a runtime that is missing or refuses this model, whatever it raises: not searchable here
        except Exception as exc:  # noqa: BLE001
            errors[setting] = f"cannot run here: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        paired, check = measure_checked(runnable, probe, inputs, config, None, sleep=sleep)
        speedup[setting] = round(paired.speedup, 3)
        spread[setting] = round(check.speedup_cv, 4)
        stable[setting] = check.stable
        attempts[setting] = check.attempts
    fingerprint = hardware_fingerprint(latency.threads, latency.device)
    return ProbeResult(
        hardware_key=fingerprint.key,
        cpu_model=fingerprint.cpu_model,
        cpu_flags=fingerprint.cpu_flags,
        runtimes={"torch": fingerprint.torch, "onnxruntime": fingerprint.onnxruntime},
        speedup=speedup,
        errors=errors,
        speedup_cv=spread,
        stable=stable,
        attempts=attempts,
    )


def usual_settings(probe: ProbeResult, keep_slow: bool) -> tuple[str, ...]:
    """The usual recipes' settings that ran on the probe, less the slow ones unless ``keep_slow`` (an unstable
    probe finds none slow: ``ProbeResult.slow``)."""
    slow = probe.slow()
    return tuple(s for s in USUAL_RECIPES if s in probe.speedup and (keep_slow or s not in slow))


def gate_space(space: SearchSpace, probe: ProbeResult) -> tuple[SearchSpace, dict[str, str]]:
    """The space without the slow ``quant_dtype`` choices, and what was dropped (setting -> reason).

    fp32 is the reference and never dropped.  A fixed setting is the user's explicit choice and stays; if every
    choice is slow, the fastest of them stays, so the knob always has a value.
    """
    knob = space.quant_dtype
    slow = probe.slow()
    if not isinstance(knob, Choices):
        return space, {}
    kept = tuple(v for v in knob.values if v == "fp32" or v not in slow)
    if not kept:
        kept = (max(knob.values, key=lambda v: probe.speedup.get(v, 0.0)),)
    dropped = {v: slow[v] for v in knob.values if v not in kept}
    new_knob = Fixed(kept[0]) if len(kept) == 1 else Choices(kept)
    return dataclasses.replace(space, quant_dtype=new_knob), dropped
