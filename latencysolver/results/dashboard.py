"""``latencysolver dashboard``: optuna-dashboard on a study storage, with the trials' artifacts and a note per study.

optuna-dashboard already shows what a study holds: trials, the Pareto front, objective names (our
``study.set_metric_names``) and each trial's artifacts when it is given an artifact store.  Two things are ours:

- a markdown **note** per study made by ``run`` (optuna-dashboard's ``save_note``) with what a reader needs next
  to the plots: the teacher baseline, the hardware the latencies were measured on, the data split, the objective
  and the constraints.  ``run`` writes it when a study starts and again when its trials are done; ``dashboard``
  refreshes it for every study ``run`` made, so older studies get one too.  Ours is one part of the note between
  two markers (markdown link definitions, which render as nothing): text a person writes around it is kept, a
  note without our part (a plain Optuna study's, or one a person rewrote) is never touched;
- one artifact store for studies whose artifacts live in different folders (each study records its own).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from latencysolver.errors import ConfigError, shown
from latencysolver.latency.hardware import HardwareFingerprint
from latencysolver.results.front import interval_text, unstable_trials
from latencysolver.results.records import present, study_record, trial_record

# What each latency objective is called on the dashboard's axes (the study's metric names are the short keys).
OBJECTIVE_LABELS = {
    "accuracy": "validation accuracy ↑",
    "speedup": "speed-up vs fp32 teacher ↑ (paired)",
    "latency_ms": "p50 latency, batch 1 (ms) ↓",
}


def study_note(study: optuna.Study) -> str:
    """The study's markdown note: teacher baseline, hardware fingerprint(s), data split, objective, constraints."""
    record = study_record(study)
    teacher, data = present(record.teacher), present(record.data)
    latency = record.latency or {}
    lines = [f"## latencysolver study `{study.study_name}`", ""]
    names = study.metric_names or ["accuracy", "speedup"]
    lines.append("**Objectives:** " + ", ".join(OBJECTIVE_LABELS.get(n, n) for n in names))
    if teacher:
        lines += [
            "",
            "### Teacher baseline (fine-tuned, fp32 torch)",
            "",
            "| base model | validation accuracy | F1 | p50 latency (batch 1) | parameters |",
            "| --- | --- | --- | --- | --- |",
            f"| `{teacher.get('base_model')}` | {teacher.get('accuracy', float('nan')):.3f} "
            f"{interval_text(record.teacher.interval() if record.teacher else None)} | "
            f"{teacher.get('f1', float('nan')):.3f} | {teacher.get('latency_p50_ms', float('nan')):.2f} ms | "
            f"{teacher.get('parameters', 0):,} |",
        ]
    lines += [
        "",
        "Each trial's validation accuracy carries a 95% interval (Wilson) and its paired difference to the "
        "teacher on the same rows (Newcombe's interval, in points): the trial's user attrs `accuracy_interval` "
        "and `vs_teacher`.",
    ]
    if data:
        lines += [
            "",
            "### Data",
            "",
            f"`{data.get('source')}`: {data.get('train_rows')} train / {data.get('validation_rows')} "
            f"validation / {data.get('test_rows', 0)} test rows, max length {data.get('max_length')} tokens; "
            f"majority class {data.get('majority_rate', 0):.1%} of validation. Trials are scored on "
            "validation; the test split is only used by `latencysolver export` for the model card.",
        ]
    lines += ["", "### Hardware", ""]
    fingerprints = _fingerprints(study)
    if not fingerprints and record.hardware:  # no trial yet: the machine that measured the teacher
        hardware = HardwareFingerprint.from_dict(record.hardware)
        lines.append(f"- `{hardware.key}` (the teacher's measurement; no trial yet): {hardware.describe()}")
    for key, (hardware, count) in fingerprints.items():
        lines.append(f"- `{key}` ({count} trial{'s' if count != 1 else ''}): {hardware.describe()}")
    if latency:
        lines += [
            "",
            f"Latency protocol: batch 1, {latency.get('threads')} threads, {latency.get('rows')} seeded "
            f"validation rows, {latency.get('warmup')} warm-up and {latency.get('repeats')} timed passes; "
            "speed-up = median ratio of calls interleaved with the fp32 teacher.",
        ]
    unstable = [t.number for t in unstable_trials(study)]
    if unstable:
        lines += [
            "",
            f"**Latency unstable** (measured on a loaded machine, held off the front): trials {unstable}. "
            f"`latencysolver remeasure --study {study.study_name}` times them again. The dashboard's own Pareto "
            "plot reads the trials' stored values and still shows them.",
        ]
    constraints = record.constraints
    if constraints:
        ceiling = constraints.max_latency_ms
        lines += [
            "",
            f"**Constraints:** accuracy {constraints.min_accuracy_resolved}, "
            + (f"p50 latency ≤ {ceiling} ms" if ceiling is not None else "no latency ceiling")
            + " (infeasible trials are left out of the front).",
        ]
    return "\n".join(lines) + "\n"


def _fingerprints(study: optuna.Study) -> dict[str, tuple[HardwareFingerprint, int]]:
    """Each distinct hardware fingerprint of the study's trials, with how many trials it measured."""
    found: dict[str, tuple[HardwareFingerprint, int]] = {}
    for trial in study.get_trials(deepcopy=False):
        r = trial_record(trial)
        if r.hardware:
            key = r.hardware_key or "?"
            hardware, count = found.get(key, (HardwareFingerprint.from_dict(r.hardware), 0))
            found[key] = (hardware, count + 1)
    return found


# Our part of a study's note lies between these lines: link reference definitions, which markdown renders as
# nothing (an HTML comment would show as text: optuna-dashboard passes raw HTML through as text).
NOTE_BEGIN = "[//]: # (latencysolver note: begin; rewritten by latencysolver, write your own text outside it)"
NOTE_END = "[//]: # (latencysolver note: end)"
_UNMARKED = "## latencysolver study `"  # how our notes began before they had markers


def merged_note(current: str, ours: str) -> str | None:
    """The note body with ``ours`` as its latencysolver part, or None where the note is not ours to change.

    An empty note becomes our part; a note with our part gets it replaced and keeps the text around it; a note
    written before the markers existed (it begins with our heading) is replaced.  Any other note is someone
    else's: None."""
    part = f"{NOTE_BEGIN}\n\n{ours.rstrip()}\n\n{NOTE_END}\n"
    if not current.strip() or current.startswith(_UNMARKED):
        return part
    begin = current.find(NOTE_BEGIN)
    end = current.find(NOTE_END, begin)
    if begin < 0 or end < 0:
        return None
    return current[:begin] + part + current[end + len(NOTE_END) :].removeprefix("\n")


def made_by_run(study: optuna.Study) -> bool:
    """A study ``run`` created (or a ``confirm`` sibling, which copies its records): it records its teacher or
    its config.  Only these get a note."""
    record = study_record(study)
    return record.config is not None or record.teacher is not None


def save_study_note(study: optuna.Study) -> bool:
    """Write our part of the study's note, where the note is ours to change (see ``merged_note``); whether it
    did.  A study ``run`` did not make is left alone."""
    from optuna_dashboard import get_note, save_note

    if not made_by_run(study):
        return False
    current = get_note(study)
    body = merged_note(current, study_note(study))
    if body is None or body == current:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        save_note(study, body)
    return True


@dataclass(frozen=True)
class ArtifactFolders:
    """An optuna artifact store over several ``FileSystemArtifactStore`` folders: reads from whichever has the id.

    Artifact ids are UUIDs, so one id is in at most one folder.  Writes go to the first folder (the dashboard
    only writes when a user uploads a file by hand).
    """

    folders: tuple[Path, ...]

    def open_reader(self, artifact_id: str) -> BinaryIO:
        for folder in self.folders:
            if (folder / artifact_id).is_file():
                return FileSystemArtifactStore(str(folder)).open_reader(artifact_id)
        raise ArtifactNotFound(f"artifact {artifact_id!r} is in none of {[str(f) for f in self.folders]}")

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        FileSystemArtifactStore(str(self.folders[0])).write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        for folder in self.folders:
            if (folder / artifact_id).is_file():
                FileSystemArtifactStore(str(folder)).remove(artifact_id)


def artifact_folders(storage: str, override: str | None = None) -> ArtifactFolders | None:
    """``--artifacts`` if given, else every artifact folder the storage's studies recorded that exists here."""
    candidates = (
        [override] if override else [study_record(s).artifact_dir for s in optuna.get_all_study_summaries(storage)]
    )
    folders = tuple(dict.fromkeys(Path(c) for c in candidates if c and Path(c).is_dir()))
    return ArtifactFolders(folders) if folders else None


def study_names(storage: str) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def refresh_notes(storage: str) -> list[str]:
    """Refresh our part of the note of every study ``run`` made in the storage; returns every study's name."""
    names = study_names(storage)
    for name in names:
        save_study_note(optuna.load_study(study_name=name, storage=storage))
    return names


def check_address(host: str, port: int) -> None:
    """The server can listen on ``host:port``: a port in 1..65535, a host that resolves, nothing there already.

    A ``ConfigError`` (one line) otherwise; checked before anything is written to the storage.
    """
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port!r}", key="--port", value=port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ConfigError(f"--host {shown(host)}: cannot resolve it ({reason})", key="--host", value=host) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"--host {shown(host)} --port {port}: cannot listen there ({exc.strerror or exc}); "
                "is another server on that port?",
                key="--port",
                value=port,
            ) from None


def serve(storage: str, host: str, port: int, artifacts: ArtifactFolders | None) -> None:
    """Blocks until interrupted (optuna-dashboard's own wsgiref server)."""
    from optuna_dashboard import run_server

    run_server(storage, host=host, port=port, artifact_store=artifacts)
