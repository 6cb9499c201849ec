"""Hardware gating: measure once what each precision/backend buys on this machine, and search only what helps.

bf16 and fp16 on a CPU without bf16/fp16 math units run slower than fp32, and a study that spends trials on
them wastes its budget.  Rather than guess from CPU flags alone, the probe *measures*: a two-layer cut of the
teacher, converted to every ``quant_dtype`` setting, each timed interleaved with the fp32 original on real
validation rows (the paired protocol of ``latency.py``).  A setting whose speed-up is below ``threshold`` is
dropped from the search space unless the study keeps slow settings on purpose (``drop_slow_settings: false``
or ``--keep-slow-settings``).  The probe, with the CPU flags and runtime versions, is stored in the study's
user attrs, and a resumed study reuses it so that every trial samples from the same space.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from latencysolver.config.knobs import QUANT_DTYPES, USUAL_RECIPES
from latencysolver.config.space import Choices, Fixed, SearchSpace
from latencysolver.config.study import LatencyConfig
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import Inputs, Runnable, measure_paired

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

    def slow(self) -> dict[str, str]:
        """Settings that cannot buy speed on this machine, with the reason."""
        out = {
            name: f"{value:.2f}x fp32 on the probe" for name, value in self.speedup.items() if value < self.threshold
        }
        return out | dict(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"cpu_flags": list(self.cpu_flags)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ProbeResult:
        return cls(**(raw | {"cpu_flags": tuple(raw["cpu_flags"])}))


Convert = Callable[[nn.Module, str], Runnable]


def probe_hardware(
    teacher: nn.Module,
    inputs: list[Inputs],
    latency: LatencyConfig,
    convert: Convert,
    settings: tuple[str, ...] = QUANT_DTYPES,
) -> ProbeResult:
    """Time every setting against fp32 torch on a ``PROBE_LAYERS``-layer cut of the teacher."""
    from latencysolver.compression import drop_layers_, encoder_layers

    probe = copy.deepcopy(teacher).eval()
    layers = len(encoder_layers(probe))
    drop_layers_(probe, list(range(min(PROBE_LAYERS, layers))))
    config = dataclasses.replace(latency, repeats=max(2, latency.repeats))
    speedup, errors = {}, {}
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
        speedup[setting] = round(measure_paired(runnable, probe, inputs, config).speedup, 3)
    fingerprint = hardware_fingerprint(latency.threads, latency.device)
    return ProbeResult(
        hardware_key=fingerprint.key,
        cpu_model=fingerprint.cpu_model,
        cpu_flags=fingerprint.cpu_flags,
        runtimes={"torch": fingerprint.torch, "onnxruntime": fingerprint.onnxruntime},
        speedup=speedup,
        errors=errors,
    )


def usual_settings(probe: ProbeResult, keep_slow: bool) -> tuple[str, ...]:
    """The usual recipes' settings that ran on the probe, less the slow ones unless ``keep_slow``."""
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
