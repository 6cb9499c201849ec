"""What each distillation term costs per step: logits only, + the hidden-state MSE, + the attention relations, and
both, for the students of elastic_slices.py cut from the default MiniLM (its pretrained weights: timing does not
depend on the fine-tune), on real BoolQ train rows.

    .venv/bin/python benchmarks/layerwise_cost.py [--data ../shared/data/boolq-dev-split] [--steps 10]

Each (student, terms) pair runs ``--steps`` AdamW steps of batch 16 after two untimed ones, the pairs interleaved
round by round so that a slow spell of the machine falls on all of them; prints the median seconds per step and
its ratio to logits only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


import yaml

from latencysolver.config.recipe import Recipe
from latencysolver.config.study import DEFAULT_MODEL, DataConfig
from latencysolver.config.training import TrainConfig
from latencysolver.data.batches import encode_split
from latencysolver.data.text import configured
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.models.student import compress
from latencysolver.training.distillation import distill, hidden_targets

# the same three recipes in elastic_slices.py, small_students.py and layerwise_cost.py: their results compare
RECIPES = {
    name: Recipe(**fields)
    for name, fields in yaml.safe_load((REPO / "benchmarks" / "slice_recipes.yaml").read_text()).items()
}

TERMS = {"logits only": (0.0, 0.0), "+ hidden states": (1.0, 0.0), "+ attention": (0.0, 1.0), "+ both": (1.0, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"hardware: {hardware_fingerprint(2).describe()}", flush=True)
    data = configured(DataConfig(source=args.data, limit_train=16 * (args.steps + 2)))
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    train = encode_split(data.train, tokenizer, 256)
    teacher = load_classifier(DEFAULT_MODEL, num_labels=2).eval()
    logits = torch.randn(len(train), 2)
    depth = len(teacher.bert.encoder.layer)
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, recipe in RECIPES.items():
            for term, (hidden, attention) in TERMS.items():
                student = compress(teacher, recipe)
                config = TrainConfig(steps=args.steps + 2, batch_size=16, learning_rate=1e-4, seed=0)
                marks: list[float] = []

                def stop(step: int, total: int, marks: list[float] = marks) -> bool:
                    marks.append(time.perf_counter())
                    return False

                distill(
                    student.model,
                    train,
                    logits,
                    config,
                    2.0,
                    0.5,
                    pad_id=tokenizer.pad_token_id,
                    progress=False,
                    should_stop=stop,
                    hidden_weight=hidden,
                    attention_weight=attention,
                    teacher=teacher,
                    hidden_layers=hidden_targets(student.kept_layers, depth),
                )
                per_step = (marks[-1] - marks[1]) / (len(marks) - 2)  # after the two untimed steps
                seconds.setdefault((name, term), []).append(per_step)
                print(f"  {name} / {term}: {per_step:.3f} s/step", flush=True)
    print("\n| student | terms | s/step (median of rounds) | vs logits only |\n| --- | --- | --- | --- |")
    for name in RECIPES:
        base = statistics.median(seconds[(name, "logits only")])
        for term in TERMS:
            value = statistics.median(seconds[(name, term)])
            print(f"| {name} | {term} | {value:.3f} | {value / base:.2f}x |")


if __name__ == "__main__":
    main()
