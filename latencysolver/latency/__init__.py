"""Latency: the measurement protocol (``protocol.py``: seeded real rows at batch 1, warm-up, timed passes,
the speed-up paired against the fp32 teacher, throughput), the hardware fingerprint stored with every figure
(``hardware.py``), and the once-per-study probe that drops quantization settings this CPU cannot make faster
(``gating.py``).  Takes plain models; no Optuna."""

from typing import TYPE_CHECKING

from latencysolver.lazy import lazy_attributes

if TYPE_CHECKING:
    from latencysolver.latency.gating import ProbeResult, gate_space, probe_hardware
    from latencysolver.latency.hardware import HardwareFingerprint, hardware_fingerprint
    from latencysolver.latency.protocol import (
        LatencyStats,
        PairedLatency,
        Throughput,
        latency_inputs,
        measure_latency,
        measure_paired,
        measure_throughput,
        throughput_inputs,
    )

__all__ = [
    "HardwareFingerprint",
    "LatencyStats",
    "PairedLatency",
    "ProbeResult",
    "Throughput",
    "gate_space",
    "hardware_fingerprint",
    "latency_inputs",
    "measure_latency",
    "measure_paired",
    "measure_throughput",
    "probe_hardware",
    "throughput_inputs",
]

# imported on first use: a module that needs one name does not import all the others
__getattr__ = lazy_attributes(
    __name__,
    {
        "ProbeResult": "latencysolver.latency.gating",
        "gate_space": "latencysolver.latency.gating",
        "probe_hardware": "latencysolver.latency.gating",
        "HardwareFingerprint": "latencysolver.latency.hardware",
        "hardware_fingerprint": "latencysolver.latency.hardware",
        "LatencyStats": "latencysolver.latency.protocol",
        "PairedLatency": "latencysolver.latency.protocol",
        "Throughput": "latencysolver.latency.protocol",
        "latency_inputs": "latencysolver.latency.protocol",
        "measure_latency": "latencysolver.latency.protocol",
        "measure_paired": "latencysolver.latency.protocol",
        "measure_throughput": "latencysolver.latency.protocol",
        "throughput_inputs": "latencysolver.latency.protocol",
    },
)
