"""Where training runs: ``training.device`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) and bf16 autocast.

The teacher fine-tune, its logits, every distillation and the elastic student's training run on the training
device; everything else (compression passes, quantization, ONNX export, latency, caches and exports) sees models
on the CPU.  A training run moves its model to the device and back to the CPU when it ends, even on an error, so
a teacher fine-tuned on a GPU is reused by a CPU-only machine and the other way round: the caches never hold
device tensors.

``auto`` is CUDA when torch sees a GPU, else the CPU.  On CUDA, the forward passes run under bf16 autocast when
the GPU supports bf16 (``training.bf16: false`` turns it off); the loss, the optimizer and the weights stay fp32.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from latencysolver.errors import ConfigError

CPU = torch.device("cpu")


def resolve_device(
    spec: str, *, file: str = "<memory>", key: str = "training.device", auto: bool = True
) -> torch.device:
    """The torch device ``spec`` names on this machine; a CUDA device that is not there is a ``ConfigError``.
    ``auto``: whether ``key`` takes ``auto`` (``latency.device`` does not), so the message offers it or not."""
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if spec == "cpu":
        return CPU
    if not torch.cuda.is_available():
        instead = "use cpu, or auto to take a GPU where there is one" if auto else "time on cpu"
        raise ConfigError(
            f"{file}: {key}: {spec}, but torch {torch.__version__} sees no CUDA device here ({instead})",
            file=file,
            key=key,
            value=spec,
        )
    index = int(spec.split(":")[1]) if ":" in spec else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(
            f"{file}: {key}: {spec}, but this machine has {count} CUDA device{'s' if count != 1 else ''} "
            f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})",
            file=file,
            key=key,
            value=spec,
        )
    return torch.device(spec)


@dataclass(frozen=True)
class Placement:
    """Where one training run computes, and whether its forward passes autocast to bf16."""

    device: torch.device = CPU
    bf16: bool = False

    @property
    def autocast_bf16(self) -> bool:
        return self.device.type == "cuda" and self.bf16 and torch.cuda.is_bf16_supported()

    def autocast(self) -> Any:
        if self.autocast_bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def describe(self) -> str:
        if self.device.type != "cuda":
            return str(self.device)
        name = torch.cuda.get_device_name(self.device)
        return f"{self.device} ({name}{', bf16 autocast' if self.autocast_bf16 else ''})"


def training_placement(config: Any) -> Placement:
    """The study's training placement (``config`` is a ``StudyConfig``)."""
    device = resolve_device(config.training.device, file=config.config_file, key="training.device")
    return Placement(device=device, bf16=config.training.bf16)


def model_device(model: Any) -> torch.device:
    """Where a torch module's parameters are; the CPU for anything else (an onnxruntime session)."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return CPU


@contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` on ``device`` inside the block, back on the CPU after it (also when the block raises)."""
    if device.type == "cpu":
        yield model
        return
    model.to(device)
    try:
        yield model
    finally:
        model.to(CPU)


def worker_gpus(spec: str, workers: int) -> list[str | None]:
    """``run --workers N``: the ``CUDA_VISIBLE_DEVICES`` of each worker.  Training on an unnumbered CUDA device
    (``auto`` or ``cuda``) on a machine with more than one GPU, worker i gets GPU i modulo their count (of those
    this process may see); otherwise None for every worker (their environment is left as it is)."""
    if spec not in ("auto", "cuda") or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return [None] * workers
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = visible or [str(i) for i in range(torch.cuda.device_count())]
    return [ids[i % len(ids)] for i in range(workers)]


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (None elsewhere: macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Give the memory the process has freed back to the system (glibc's ``malloc_trim(0)``); False where there
    is no glibc.  glibc keeps freed blocks for reuse, and once a large block has been freed it serves blocks up to
    32 MB from its heaps instead of fresh mappings: a training step whose tensors change size with every batch
    (the elastic student's sub-networks) leaves the process holding its largest step's memory, fragmented, for
    good.  Freeing after each such step keeps the resident memory at what the tensors alive need."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
