"""A study's hardware probe and what follows from it: the search space without the settings that cannot buy
speed on this machine (``latency/gating.py``), and a new study's first trials, the usual recipes (the teacher as
is in each backend the probe keeps), so that its front always holds what a user gets without any search."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
import torch

from latencysolver.config.knobs import USUAL_RECIPES
from latencysolver.config.space import Choices, SearchSpace
from latencysolver.config.study import StudyConfig
from latencysolver.latency.gating import PROBE_LAYERS, ProbeResult, gate_space, probe_hardware
from latencysolver.latency.hardware import HardwareFingerprint
from latencysolver.locks import storage_lock
from latencysolver.models.student import to_runnable
from latencysolver.results.attributes import enqueue_baseline
from latencysolver.results.records import StudyRecord, study_record, write_study_record
from latencysolver.search.workers import open_storage

Log = Callable[[str], None]


def gated_space(
    study: optuna.Study,
    config: StudyConfig,
    teacher: torch.nn.Module,
    inputs: list,
    hardware: HardwareFingerprint,
    log: Log,
) -> tuple[SearchSpace, ProbeResult]:
    """Probe once per study (stored in ``hardware_probe``), then drop the settings that cannot buy speed.  The
    probe also times the usual recipes' settings when the study runs them.  A probe whose figures stayed unstable
    (``ProbeResult.unstable``) drops nothing for speed, and says so."""
    space = config.search_space
    stored = study_record(study).hardware_probe
    settings = space.quant_dtype.values if isinstance(space.quant_dtype, Choices) else ()
    if config.usual_recipes and config.latency.device == "cpu":
        settings = (*settings, *(s for s in USUAL_RECIPES if s not in settings))
    if stored and set(settings) <= set(stored["speedup"]) | set(stored["errors"]):
        probe = ProbeResult.from_dict(stored)
        if probe.hardware_key != hardware.key:
            log(
                f"note: this study's hardware probe ran on [{probe.hardware_key}], this worker is "
                f"[{hardware.key}]; keeping the study's probe so that every trial searches the same space"
            )
    else:
        with tempfile.TemporaryDirectory() as tmp:

            def convert(model: torch.nn.Module, setting: str):
                return to_runnable(model, setting, inputs[0], Path(tmp) / setting, config.latency.threads)

            probe = probe_hardware(teacher, inputs[:8], config.latency, convert, ("fp32", *settings))
        write_study_record(study, StudyRecord(hardware_probe=probe.to_dict()))
    if probe.speedup or probe.errors:
        measured = ", ".join(f"{k} {v:.2f}x" for k, v in probe.speedup.items())
        log(
            f"hardware probe: speed-up over fp32 on a {PROBE_LAYERS}-layer cut of the teacher: {measured}"
            + (f"; cannot run: {', '.join(probe.errors)}" if probe.errors else "")
        )
    if probe.unstable:
        bound = config.latency.max_speedup_cv
        log(
            f"hardware gating: off, the probe stayed unstable ({probe.describe_unstable()}"
            + (f", bound {bound:.1%}" if bound is not None else "")
            + "): other jobs bias its figures, so no setting is dropped for speed"
        )
    if not config.drop_slow_settings:
        return space, probe
    gated, dropped = gate_space(space, probe)
    for setting, reason in dropped.items():
        log(f"hardware gating: quant_dtype {setting} dropped from the search ({reason}); --keep-slow-settings keeps it")
    return gated, probe


def enqueue_usual_recipes(study: optuna.Study, config: StudyConfig, settings: tuple[str, ...], log: Log) -> None:
    """A new study's first trials: the teacher as is in each of ``settings`` (under the study's lock, so two
    ``run``s starting together enqueue them once)."""
    storage = open_storage(config.storage, config.workers)
    with storage_lock(storage.engine, f"latencysolver:{study.study_name}"):
        if study.get_trials(deepcopy=False):
            return
        for setting in settings:
            enqueue_baseline(study, setting)
    if settings:
        log(f"usual recipes: the teacher as is in {', '.join(settings)}, untrained: the first {len(settings)} trials")
