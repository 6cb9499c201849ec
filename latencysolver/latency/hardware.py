"""Where a latency figure was measured: CPU model and flags, threads, device and library versions.

Milliseconds from two machines (or two thread counts, or two torch releases) are different units.  Each trial
stores this fingerprint and its ``key``; a study whose front mixes keys says so (``study.mixed_hardware``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

# The CPU features that decide which kernels can be fast: fp32 SIMD width, int8 dot products, bf16/fp16 math.
SPEED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "f16c",
)


@dataclass(frozen=True)
class HardwareFingerprint:
    cpu_model: str
    cpu_flags: tuple[str, ...]  # the SPEED_FLAGS this CPU has
    logical_cpus: int  # CPUs this process may run on
    threads: int  # threads the measurement used
    device: str  # "cpu" or the CUDA device name
    torch: str
    onnxruntime: str
    transformers: str
    python: str
    # where the students were trained ("cpu", or "cuda: <GPU name>"): recorded, but not part of ``key``, since it
    # does not change what a millisecond means
    training_device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self) | {"cpu_flags": list(self.cpu_flags)}

    @classmethod
    def from_dict(cls, raw: dict) -> HardwareFingerprint:
        """The inverse of ``to_dict`` (a trial's or study's ``hardware`` user attr)."""
        return cls(**{**raw, "cpu_flags": tuple(raw.get("cpu_flags", ()))})

    @property
    def key(self) -> str:
        """Short hash of everything that changes what a millisecond means."""
        timed = {k: v for k, v in self.to_dict().items() if k != "training_device"}
        return hashlib.sha256(json.dumps(timed, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        flags = ",".join(self.cpu_flags) or "none"
        return (
            f"{self.cpu_model} ({self.logical_cpus} CPUs, {self.threads} threads, flags {flags}), "
            f"device {self.device}, torch {self.torch}, onnxruntime {self.onnxruntime}"
            + (f"; trained on {self.training_device}" if self.training_device != "cpu" else "")
        )


def cpu_info(path: str | Path = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """CPU model name and the set of all its flags, from ``/proc/cpuinfo`` (Linux); elsewhere what platform says."""
    try:
        text = Path(path).read_text()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model = ""
    flags: frozenset[str] = frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.machine(), flags


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _logical_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def hardware_fingerprint(threads: int, device: str = "cpu", training_device: str = "cpu") -> HardwareFingerprint:
    """``device`` is where latency is timed, ``training_device`` where the students were trained."""
    model, flags = cpu_info()
    device, training_device = _named(device), _named(training_device)
    return HardwareFingerprint(
        cpu_model=model,
        cpu_flags=tuple(f for f in SPEED_FLAGS if f in flags),
        logical_cpus=_logical_cpus(),
        threads=threads,
        device=device,
        torch=_version("torch"),
        onnxruntime=_version("onnxruntime"),
        transformers=_version("transformers"),
        python=platform.python_version(),
        training_device=training_device,
    )


def _named(device: str) -> str:
    """ "cpu", or "cuda: <the GPU's name>"."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"


def busy_warning(threads: int) -> str | None:
    """A warning when the machine looks busy: a 1-minute load average above the ``threads`` a measurement uses.

    Under oversubscription a long call is preempted more often than a short one, so even the paired speed-up is
    biased, not cancelled (benchmarks/README.md has figures)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None
    if load <= threads:
        return None
    return (
        f"warning: this machine looks busy (load average {load:.1f} over the last minute, latency measured with "
        f"{threads} threads): other jobs bias the speed-ups, not only the milliseconds; measure on a quiet machine"
    )
