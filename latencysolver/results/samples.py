"""The raw latency samples of the front's trials (each trial's ``latency_samples.json`` artifact), read from
the artifact store, and their figure: every call of the student and of the teacher it was paired with."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from latencysolver.errors import StorageError, first_line
from latencysolver.results.figures import FEASIBLE_COLOR

# The knobs in the order the page shows them (the knob table's); a knob a later recipe adds comes after these.
from latencysolver.results.records import LATENCY_SAMPLES
from latencysolver.results.storage import artifact_store_of


@dataclass(frozen=True)
class LatencySamples:
    model: dict[int, list[float]]  # trial number -> the student's batch-1 calls, ms
    reference: list[float]  # the teacher's calls paired with those trials, pooled
    missing: tuple[int, ...]  # front trials without a latency_samples.json artifact


def load_latency_samples(
    study: optuna.Study, trials: Sequence[FrozenTrial], artifacts: str | None = None, *, storage: BaseStorage | str
) -> LatencySamples:
    """Download each trial's ``latency_samples.json`` artifact (StorageError if the artifact folder is gone).

    ``storage``: the one ``study`` was opened on (or its URL), where the artifacts' metadata are."""
    from optuna.artifacts import download_artifact, get_all_artifact_meta
    from optuna.artifacts.exceptions import ArtifactNotFound

    if not trials:
        return LatencySamples({}, [], ())
    store = artifact_store_of(study, artifacts)
    storage = optuna.storages.get_storage(storage)
    model: dict[int, list[float]] = {}
    reference: list[float] = []
    missing = []
    with tempfile.TemporaryDirectory() as tmp:
        for trial in trials:
            metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=storage)}
            if LATENCY_SAMPLES not in metas:
                missing.append(trial.number)
                continue
            target = Path(tmp) / f"{trial.number}-{LATENCY_SAMPLES}"
            try:
                download_artifact(
                    artifact_store=store, artifact_id=metas[LATENCY_SAMPLES].artifact_id, file_path=str(target)
                )
            except (ArtifactNotFound, OSError) as exc:  # a file deleted from the folder, say
                raise StorageError(
                    f"trial {trial.number}: cannot read artifact {LATENCY_SAMPLES!r} from the "
                    f"study's artifact store: {first_line(exc)}"
                ) from None
            try:
                record = json.loads(target.read_text())
                model[trial.number] = list(record["model"]["samples_ms"])
                reference += record["reference"]["samples_ms"]
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"trial {trial.number}: artifact {LATENCY_SAMPLES!r} is not a latency record: {first_line(exc)}"
                ) from None
    return LatencySamples(model, reference, tuple(missing))


def latency_figure(samples: LatencySamples) -> go.Figure:
    """Box plots of the raw batch-1 calls: one per front trial, then the teacher's (paired) calls."""
    fig = go.Figure()
    for number, values in samples.model.items():
        fig.add_trace(
            go.Box(
                y=values, name=f"trial {number}", boxpoints="outliers", marker={"color": FEASIBLE_COLOR}, boxmean=True
            )
        )
    if samples.reference:
        fig.add_trace(
            go.Box(
                y=samples.reference,
                name="teacher (fp32)",
                boxpoints="outliers",
                boxmean=True,
                marker={"color": "#555555"},
            )
        )
    fig.update_layout(
        title="latency per call, batch 1: the front's students and the teacher timed beside them",
        yaxis_title="ms per call (batch 1) ↓",
        showlegend=False,
        height=420,
        template="plotly_white",
    )
    return fig


# ------------------------------------------------------------------------------------------------ page
