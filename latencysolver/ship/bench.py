"""``latencysolver bench``: any exported student, fine-tuned teacher or base model, measured with the study's
latency protocol."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from latencysolver.cache import cache_root
from latencysolver.config.study import LatencyConfig
from latencysolver.data.batches import encode_split
from latencysolver.data.text import BOOLQ, YES_NO, Columns, load_data, recorded_schema
from latencysolver.errors import DataError, ModelError
from latencysolver.latency.hardware import HardwareFingerprint, hardware_fingerprint
from latencysolver.latency.protocol import (
    LatencyStats,
    PairedLatency,
    Runnable,
    Throughput,
    latency_inputs,
    measure_latency,
    measure_paired,
    measure_throughput,
    model_device,
    throughput_inputs,
)
from latencysolver.models.loading import (
    check_max_length,
    count_parameters,
    load_classifier,
    load_model_config,
    load_tokenizer,
    token_limits,
)


@dataclass
class BenchTarget:
    """A model ready to run, with what is needed to feed it."""

    name: str
    model: Runnable
    tokenizer: Any
    max_length: int
    data_source: str | None  # where its study's rows came from, when an export records it
    parameters: int | None
    columns: Columns = BOOLQ  # which columns of the data it reads (an export records its study's)
    labels: tuple[str, ...] | None = None  # its class names, when not read from the data (None: as the data says)


@dataclass(frozen=True)
class BenchResult:
    target: str
    latency: LatencyStats
    throughput: Throughput | None
    paired: PairedLatency | None  # against --reference, when given
    reference: str | None
    hardware: HardwareFingerprint
    parameters: int | None
    data_source: str


def load_target(location: str, max_length: int | None = None) -> BenchTarget:
    """An export folder (``student.json``) or a Hugging Face classifier (folder or hub id, e.g. a teacher)."""
    folder = Path(location)
    if (folder / "student.json").is_file():
        from latencysolver.ship.inference import load

        clf = load(folder)
        if max_length is not None:
            model_config = load_model_config(str(folder)) if (folder / "config.json").is_file() else None
            check_max_length(max_length, clf.tokenizer, model_config, "bench: ", "--max-length")
        metrics = _read_json(folder / "metrics.json")
        columns, labels = recorded_schema(clf.info)
        return BenchTarget(
            columns=columns,
            labels=None if labels == YES_NO else labels,
            name=str(location),
            model=clf.model,
            tokenizer=clf.tokenizer,
            max_length=max_length or clf.max_length,
            data_source=(metrics.get("data") or {}).get("source"),
            # the trial's count, before quantization packed the Linear weights away
            parameters=metrics.get("parameters")
            or (count_parameters(clf.model) if isinstance(clf.model, nn.Module) else None),
        )
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"bench: {location!r} is a file; pass an export folder, a model folder or a hub id")
    model = load_classifier(location)
    tokenizer = load_tokenizer(location)
    if max_length is None:  # 256, or less where the model takes fewer positions
        max_length = min(256, token_limits(tokenizer, model.config)[1] or 256)
    check_max_length(max_length, tokenizer, model.config, "bench: ", "--max-length")
    return BenchTarget(
        name=str(location),
        model=model,
        tokenizer=tokenizer,
        max_length=max_length,
        data_source=None,
        parameters=count_parameters(model),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def bench(
    target: BenchTarget,
    config: LatencyConfig,
    *,
    data: str | None = None,
    batch_size: int | None = 16,
    reference: BenchTarget | None = None,
    cache_dir: str | None = None,
) -> BenchResult:
    source = data or target.data_source
    if not source:
        raise DataError(
            f"bench: {target.name!r} records no data source; pass --data (a local BoolQ folder "
            "of jsonl/parquet files, or a hub dataset name) to draw the latency rows from"
        )
    validation = load_data(source, columns=target.columns, labels=target.labels).validation
    pad_id = target.tokenizer.pad_token_id or 0
    encoded = encode_split(
        validation,
        target.tokenizer,
        target.max_length,
        cache_root(cache_dir),
        getattr(target.tokenizer, "name_or_path", ""),
    )
    inputs = latency_inputs(encoded, config, pad_id)
    latency = measure_latency(target.model, inputs, config)
    throughput = (
        measure_throughput(target.model, throughput_inputs(encoded, config, batch_size, pad_id), config)
        if batch_size
        else None
    )
    paired = None
    if reference is not None:
        if reference.tokenizer.get_vocab() != target.tokenizer.get_vocab():
            raise ModelError(
                f"bench: --reference {reference.name!r} uses another tokenizer than {target.name!r}; "
                "a paired speed-up needs the same inputs"
            )
        paired = measure_paired(target.model, reference.model, inputs, config)
    device = model_device(target.model).type
    return BenchResult(
        target=target.name,
        latency=latency,
        throughput=throughput,
        paired=paired,
        reference=reference.name if reference else None,
        hardware=hardware_fingerprint(config.threads, device),
        parameters=target.parameters,
        data_source=source,
    )
