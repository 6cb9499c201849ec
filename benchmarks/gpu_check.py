"""Five minutes on a machine with an NVIDIA GPU: train there, time on the CPU (issue 19).

    .venv/bin/python benchmarks/gpu_check.py [--data ../shared/data/boolq-dev-split] [--trials 3] [--steps 30]
        [--out /tmp/gpu-check] [--config studies/boolq-quick.yaml] [--cpu-only]

Installs nothing beyond the project (`make install`).  It prints what torch sees, then:

1. the quick study (``studies/boolq-quick.yaml``) for ``--trials`` trials with ``training.device: cuda`` and
   ``latency.device: cpu`` (the teacher is fine-tuned on the GPU when the cache has none; its time is printed);
2. the time of a distillation step of a 3-layer student on each device (``--steps`` steps of batch 16, after
   3 untimed ones), on the GPU with and without bf16 autocast, and on the CPU;
3. every trial's accuracy, paired speed-up (timed on the CPU) and wall time.

``--cpu-only`` runs the same on the CPU alone: a check of the script on a machine without a GPU, not a GPU figure.
Without CUDA and without ``--cpu-only`` it says so and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import load_study_config
from latencysolver.config.training import DeviceConfig
from latencysolver.devices import Placement
from latencysolver.models.student import compress
from latencysolver.results.records import study_record, trial_record
from latencysolver.search.preparation import RunOptions, prepare
from latencysolver.search.run import run_study
from latencysolver.training.distillation import distill


def step_seconds(prepared, config, placement: Placement, steps: int) -> float:
    """Seconds per distillation step of a 3-layer student (pruned 0.3), after 3 untimed steps."""
    recipe = Recipe(prune_ratio=0.3, prune_kind="structured", skip_prob=0.5)
    student = compress(prepared.teacher.model, recipe).model
    budget = dataclasses.replace(config.distillation, steps=3)
    distill(
        student, prepared.train, prepared.teacher.train_logits, budget, 2.0, 0.5, progress=False, placement=placement
    )
    budget = dataclasses.replace(config.distillation, steps=steps)
    result = distill(
        student, prepared.train, prepared.teacher.train_logits, budget, 2.0, 0.5, progress=False, placement=placement
    )
    return result.seconds / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed distillation steps per device")
    parser.add_argument("--out", default="/tmp/gpu-check")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--config", default=str(REPO / "studies" / "boolq-quick.yaml"), help="the study YAML")
    parser.add_argument("--cpu-only", action="store_true", help="check the script where there is no GPU")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, CUDA {'available' if cuda else 'not available'}", flush=True)
    if cuda:
        for i in range(torch.cuda.device_count()):
            print(f"  cuda:{i} {torch.cuda.get_device_name(i)}, bf16 {torch.cuda.is_bf16_supported()}")
    elif not args.cpu_only:
        print("no CUDA device: nothing to check here (--cpu-only checks the script on the CPU)")
        return 2
    device = "cuda" if cuda and not args.cpu_only else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = load_study_config(
        args.config,
        data=args.data,
        storage=f"sqlite:///{out / 'study.db'}",
        n_trials=args.trials,
    )
    config = dataclasses.replace(
        config,
        name=f"gpu-check-{int(time.time())}",
        artifacts=str(out / "artifacts"),
        training=DeviceConfig(device=device),
    )
    options = RunOptions(cache_dir=args.cache_dir, progress=False)
    start = time.perf_counter()
    study = run_study(config, options)
    print(
        f"\nstudy: {len(study.trials)} trials in {time.perf_counter() - start:.0f} s (teacher fine-tune included "
        f"when it was not cached)"
    )

    prepared = prepare(config, options, log=lambda _: None)
    placements = [("cpu", Placement())]
    if device == "cuda":
        placements = [
            ("cuda bf16", Placement(torch.device("cuda"), True)),
            ("cuda fp32", Placement(torch.device("cuda"), False)),
            *placements,
        ]
    print(f"\ndistillation step, 3-layer student, batch {config.distillation.batch_size}:")
    for name, placement in placements:
        print(f"  {name:<10} {1000 * step_seconds(prepared, config, placement, args.steps):8.1f} ms/step", flush=True)

    record = study_record(study)
    print(
        f"\nteacher: validation accuracy {record.teacher.accuracy:.3f}, CPU p50 {record.teacher.latency_p50_ms:.1f} ms"
    )
    print("trials (trained on " + device + ", timed on the CPU):")
    for t in study.trials:
        r = trial_record(t)
        if t.values is None:
            print(f"  trial {t.number}: {t.state.name} {r.fail_reason or ''}")
            continue
        print(
            f"  trial {t.number}: accuracy {t.values[0]:.3f}, speed-up {r.speedup:.2f}x, {r.seconds:.0f} s, "
            f"trained on {r.hardware['training_device']}, timed on {r.hardware['device']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
