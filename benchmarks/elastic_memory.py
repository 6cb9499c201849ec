"""Does the elastic student's training hold its memory flat over steps?  The process's resident memory per step.

    .venv/bin/python benchmarks/elastic_memory.py [--config studies/boolq-elastic.yaml]
        [--data ../shared/data/boolq-dev-split] [--rows 40] [--steps N] [--every 5] [--threads 1] [--keep-freed]

Trains the elastic student of ``--config`` through ``models.elastic.prepare_elastic``, as a study does (its log
lines included), into a temporary cache: its search space's smallest sub-network, its ``elastic:`` settings with
``--steps`` (default: unset, so the number the data gives) and magnitude importance, on the first ``--rows`` train
rows, from the pretrained model of the study (memory does not depend on the fine-tune) with random teacher
logits.  Every ``--every`` steps it prints, read at the start of a step (the previous step's graphs freed):

- ``rss``: the process's resident memory (``VmRSS``), and ``peak``: its highest resident memory during those steps
  (``VmHWM``, reset after each reading through ``/proc/self/clear_refs``);
- ``malloc used`` / ``malloc free``: what glibc's allocator has handed out and what it holds freed (``mallinfo2``,
  every arena; freed memory handed back to the system still counts here, not in ``rss``), which tells an
  allocator's retention from live tensors;
- seconds a step over those steps.

``--keep-freed`` skips handing the freed memory back between steps, to see what that does.  Memory is read from
``latencysolver.training.elastic.sandwich``, which every step calls once before its forward passes, so the same
script measures any commit of the training.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latencysolver.config.study import load_study_config
from latencysolver.data.batches import encode_split
from latencysolver.data.text import configured
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.models.elastic import prepare_elastic
from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.models.teacher import Teacher
from latencysolver.training import elastic

MB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo():
    """glibc's ``mallinfo2`` (None off glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


def _status(field: str) -> float:
    """A ``kB`` field of ``/proc/self/status``, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS (Linux 4.0+)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "studies" / "boolq-elastic.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--rows", type=int, default=40, help="train rows (the issue's tiny study had 40)")
    parser.add_argument("--steps", type=int, default=None, help="default: unset (the number the data gives)")
    parser.add_argument("--every", type=int, default=5, help="print every N steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--keep-freed", action="store_true", help="do not hand freed memory back between steps (to see what it does)"
    )
    args = parser.parse_args()
    if args.keep_freed and hasattr(elastic, "release_freed_memory"):
        elastic.release_freed_memory = lambda: False  # type: ignore[assignment]
    torch.set_num_threads(args.threads)
    print(f"hardware: {hardware_fingerprint(args.threads).describe()}", flush=True)
    config = load_study_config(args.config, data=args.data)
    config = dataclasses.replace(
        config, elastic=dataclasses.replace(config.elastic, steps=args.steps, importance="magnitude")
    )
    data = configured(dataclasses.replace(config.data, limit_train=args.rows))
    tokenizer = load_tokenizer(config.model)
    train = encode_split(data.train, tokenizer, config.data.max_length)
    lengths = train.lengths()
    print(f"{len(train)} train rows ({min(lengths)}-{max(lengths)} tokens), {args.threads} thread(s)", flush=True)
    mallinfo = _mallinfo()
    print(f"{'step':>5} {'rss MB':>8} {'peak MB':>8} {'malloc used':>12} {'malloc free':>12} {'s/step':>7}", flush=True)
    real = elastic.sandwich
    clock = {"step": 0, "since": time.perf_counter()}

    def report(label: str = "") -> None:
        now = time.perf_counter()
        used = free = "-"
        if mallinfo is not None:
            info = mallinfo()
            used, free = f"{(info.uordblks + info.hblkhd) / MB:.0f}", f"{info.fordblks / MB:.0f}"
        seconds = f"{(now - clock['since']) / args.every:.1f}" if clock["step"] and not label else "-"
        print(
            f"{label or clock['step']:>5} {_status('VmRSS'):>8.0f} {_status('VmHWM'):>8.0f} {used:>12} {free:>12} "
            f"{seconds:>7}",
            flush=True,
        )
        _reset_peak()
        clock["since"] = time.perf_counter()

    def spy(*a, **k):
        if clock["step"] % args.every == 0:
            report()
        clock["step"] += 1
        return real(*a, **k)

    elastic.sandwich = spy  # type: ignore[assignment]  # read memory at the start of every step
    _reset_peak()
    with tempfile.TemporaryDirectory() as folder:
        model = load_classifier(config.model, num_labels=2)
        logits = torch.randn(len(train), 2, generator=torch.Generator().manual_seed(0))
        teacher = Teacher(path=Path(folder), key="pretrained", model=model, train_logits=logits)
        prepare_elastic(config, teacher, train, data.train.fingerprint(), Path(folder), progress=False)
    report("saved")  # after the last step and the student's save


if __name__ == "__main__":
    main()
