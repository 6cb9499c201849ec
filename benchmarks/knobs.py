"""What each compression knob buys on its own, and the CNN student: accuracy, latency, size, speed-up.

    .venv/bin/python benchmarks/knobs.py [--config studies/boolq-quick.yaml]
                                         [--data ../shared/data/boolq-dev-split] [--only NAME ...]

Loads (or fine-tunes once, about 8 minutes) the study's teacher, then for each setting below builds the student
exactly as a trial would (``students.train_student``: compress, distill with the study's budget, finalize),
converts it to its precision/backend (``student.to_runnable``), and measures on the validation split:
accuracy, p50 latency at batch 1 and the paired speed-up over the fp32 torch teacher (latency protocol of the
study YAML), parameters and size.  Precision-only settings change no weights, so they are applied to the
teacher without distillation.  ``max_tokens`` settings cut every row (question whole, passage shortened) for the
student, as a trial does (``students.for_recipe``), while the teacher it is paired with reads the full rows.

First, on a tiny random BERT (4 layers, hidden 256, FFN 1024), the latency of 50% FFN pruning (structured,
heads kept) against the unpruned model: does removing neurons really cut time?
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch

from latencysolver.compression import structured_prune_
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import LatencyConfig, load_study_config
from latencysolver.latency.hardware import hardware_fingerprint
from latencysolver.latency.protocol import latency_inputs, measure_paired
from latencysolver.models.loading import count_parameters
from latencysolver.models.student import to_runnable
from latencysolver.search.kinds import train_student
from latencysolver.search.objective import model_size_bytes
from latencysolver.search.preparation import RunOptions, prepare, standalone_context
from latencysolver.search.students import for_recipe
from latencysolver.training.evaluate import predict_logits, scores

DISTILL = {"temperature": 2.0, "alpha": 0.5}
SETTINGS: dict[str, Recipe] = {
    "prune 0.4 unstructured": Recipe(prune_ratio=0.4, **DISTILL),
    "prune 0.25 structured": Recipe(prune_ratio=0.25, prune_kind="structured", **DISTILL),
    "prune 0.5 structured": Recipe(prune_ratio=0.5, prune_kind="structured", **DISTILL),
    "skip 0.34 (4 of 6 layers)": Recipe(skip_prob=0.34, **DISTILL),
    "skip 0.5 (3 of 6 layers)": Recipe(skip_prob=0.5, **DISTILL),
    "rank 128": Recipe(rank=128, **DISTILL),
    "rank 0.25 of full": Recipe(rank=0.25, **DISTILL),
    "bf16 (torch)": Recipe(quant_dtype="bf16"),
    "fp16 (torch)": Recipe(quant_dtype="fp16"),
    "int8 dynamic (torch)": Recipe(quant_dtype="int8"),
    "fp32 (onnxruntime)": Recipe(quant_dtype="ort-fp32"),
    "int8 dynamic (onnxruntime)": Recipe(quant_dtype="ort-int8"),
    "cnn student fp32": Recipe(architecture="cnn", **DISTILL),
    "cnn student int8 (onnxruntime)": Recipe(architecture="cnn", quant_dtype="ort-int8", **DISTILL),
    # the sequence length (issue 18): the teacher read shorter without retraining, then a small int8 student
    # (3 of 6 layers, structured 0.5, onnxruntime int8) at the full length and shorter, each distilled at it
    "max_tokens 128 (teacher, no retraining)": Recipe(max_tokens=128),
    "max_tokens 96 (teacher, no retraining)": Recipe(max_tokens=96),
    "max_tokens 64 (teacher, no retraining)": Recipe(max_tokens=64),
    **{
        f"small int8 student, {'full length' if n is None else f'max_tokens {n}'}": Recipe(
            skip_prob=0.5, prune_ratio=0.5, prune_kind="structured", quant_dtype="ort-int8", max_tokens=n, **DISTILL
        )
        for n in (None, 128, 96, 64)
    },
}


def ffn_pruning_check(protocol: LatencyConfig) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    dense = BertForSequenceClassification(
        BertConfig(vocab_size=2000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    ).eval()
    pruned = copy.deepcopy(dense)
    structured_prune_(pruned, 0.5, head_ratio=0.0)
    g = torch.Generator().manual_seed(0)
    inputs = [
        {
            "input_ids": torch.randint(1000, 2000, (1, n), generator=g),
            "attention_mask": torch.ones(1, n, dtype=torch.long),
        }
        for n in (64, 96, 128, 160, 192, 256) * 4
    ]
    paired = measure_paired(pruned, dense, inputs, protocol)
    print(
        f"tiny BERT (4x256, FFN 1024): unpruned p50 {paired.reference.p50_ms:.2f} ms, "
        f"50% FFN pruned p50 {paired.model.p50_ms:.2f} ms, paired speed-up {paired.speedup:.2f}x "
        f"({count_parameters(dense):,} -> {count_parameters(pruned):,} parameters)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "studies" / "boolq-quick.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "boolq-dev-split"))
    parser.add_argument("--teacher", help="fine-tuned teacher folder (default: the study's cached teacher)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--only", nargs="*", help="run only the settings whose name contains one of these")
    args = parser.parse_args()

    config = load_study_config(args.config, data=args.data)
    protocol = config.latency
    print(f"hardware: {hardware_fingerprint(protocol.threads).describe()}")
    ffn_pruning_check(protocol)

    prepared = prepare(config, RunOptions(cache_dir=args.cache_dir, teacher_path=args.teacher, progress=False))
    teacher = prepared.teacher.model.eval()
    validation = prepared.validation
    inputs = latency_inputs(validation, protocol, prepared.pad_id)
    teacher_accuracy = scores(
        predict_logits(teacher, validation, pad_id=prepared.pad_id, progress=False), validation.labels
    ).accuracy
    itself = measure_paired(teacher, teacher, inputs, protocol)
    rows = [
        (
            "fp32 torch teacher",
            teacher_accuracy,
            itself.reference.p50_ms,
            itself.reference.p50_ms,
            itself.speedup,
            count_parameters(teacher),
            model_size_bytes(teacher),
            0.0,
        )
    ]

    with tempfile.TemporaryDirectory() as tmp:
        ctx = standalone_context(config, prepared, inputs, str(tmp))
        for name, recipe in SETTINGS.items():
            if args.only and not any(part in name for part in args.only):
                continue
            start = time.perf_counter()
            trial_ctx = for_recipe(ctx, recipe)  # max_tokens: every row cut, the teacher still timed at full length
            changes_weights = recipe.architecture == "cnn" or recipe.prune_ratio or recipe.skip_prob or recipe.rank
            model = train_student(trial_ctx, recipe).model if changes_weights else teacher
            runnable = to_runnable(
                model,
                recipe.quant_dtype,
                trial_ctx.latency_inputs[0],
                Path(tmp) / name.replace(" ", "_").replace(",", ""),
                protocol.threads,
            )
            accuracy = scores(
                predict_logits(runnable, trial_ctx.validation, pad_id=prepared.pad_id, progress=False),
                validation.labels,
            ).accuracy
            paired = measure_paired(runnable, teacher, trial_ctx.latency_inputs, protocol, reference_inputs=inputs)
            rows.append(
                (
                    name,
                    accuracy,
                    paired.model.p50_ms,
                    paired.reference.p50_ms,
                    paired.speedup,
                    count_parameters(model),
                    model_size_bytes(runnable),
                    time.perf_counter() - start,
                )
            )
            print(f"  done: {name} ({rows[-1][-1]:.0f} s)", flush=True)

    print()
    print(
        f"teacher: {config.model}, {len(prepared.train)} train rows; students distilled for "
        f"{config.distillation.steps} steps (CNN: {config.cnn_distillation.epochs:g} epochs, lr "
        f"{config.cnn_distillation.learning_rate:g}); latency: {protocol.rows} validation rows, batch 1, "
        f"{protocol.threads} threads, speed-up paired against the fp32 torch teacher"
    )
    print("| setting | val. accuracy | p50 ms | teacher p50 ms (paired) | speed-up | parameters | size MB | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, accuracy, p50, teacher_p50, speedup, params, size, seconds in rows:
        print(
            f"| {name} | {accuracy:.3f} | {p50:.2f} | {teacher_p50:.2f} | {speedup:.2f}x | {params:,} | "
            f"{size / 1e6:.1f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
