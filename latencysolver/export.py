"""Ship one trial: its stored student (no retraining), the tokenizer and a metrics card, in one folder."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import FrozenTrial

from latencysolver.errors import StorageError
from latencysolver.models import load_tokenizer
from latencysolver.objective import PREDICTIONS
from latencysolver.recipe import Recipe
from latencysolver.student import STUDENT_JSON, WEIGHTS
from latencysolver.study import artifact_store_of

REQUIRED = (WEIGHTS, STUDENT_JSON, PREDICTIONS)


def export_trial(study: optuna.Study, trial: FrozenTrial, out: str | Path, artifacts: str | None = None) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "student.json").is_file():
        raise StorageError(f"--out {str(out)!r}: folder exists and is not an earlier export; pick an empty one")
    store = artifact_store_of(study, artifacts)
    metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=study._storage)}
    missing = [name for name in REQUIRED if name not in metas]
    if missing:
        raise StorageError(f"trial {trial.number}: artifact {missing[0]!r} is missing from the study's artifact store")
    out.mkdir(parents=True, exist_ok=True)
    for name, meta in metas.items():  # the student's own files (+ model.onnx), predictions, latency samples
        target = out / name
        target.unlink(missing_ok=True)  # download_artifact refuses to overwrite
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(target))
    teacher = study.user_attrs.get("teacher", {})
    source = teacher.get("path") if Path(teacher.get("path", "")).is_dir() else teacher.get("base_model")
    load_tokenizer(source).save_pretrained(out)
    metrics = _metrics(study, trial)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "README.md").write_text(_card(metrics))
    return out


def _metrics(study: optuna.Study, trial: FrozenTrial) -> dict:
    a = trial.user_attrs
    return {
        "study": study.study_name, "trial": trial.number,
        "validation": {"accuracy": trial.values[0], "f1": a.get("f1")},
        "latency": {"p50_ms": a.get("latency_p50_ms"), "p90_ms": a.get("latency_p90_ms"), "cv": a.get("latency_cv"),
                    "speedup_vs_teacher": a.get("speedup"), **study.user_attrs.get("latency", {})},
        "parameters": a.get("parameters"), "nonzero_parameters": a.get("nonzero_parameters"),
        "size_bytes": a.get("size_bytes"), "layers": a.get("layers"), "recipe": a.get("recipe"),
        "teacher": study.user_attrs.get("teacher"), "data": study.user_attrs.get("data"),
    }


def _card(m: dict) -> str:
    recipe = Recipe.from_dict(m["recipe"])
    teacher, data, lat = m["teacher"] or {}, m["data"] or {}, m["latency"]
    return f"""# BoolQ yes/no classifier — latencysolver study `{m['study']}`, trial {m['trial']}

Compressed from a fine-tuned `{teacher.get('base_model')}` teacher by latencysolver.

| | this model | teacher |
| --- | --- | --- |
| validation accuracy | {m['validation']['accuracy']:.4f} | {teacher.get('accuracy', float('nan')):.4f} |
| validation F1 (yes) | {m['validation']['f1']:.4f} | {teacher.get('f1', float('nan')):.4f} |
| latency p50, batch 1 | {lat['p50_ms']:.2f} ms | {teacher.get('latency_p50_ms', float('nan')):.2f} ms |
| speed-up | {lat['speedup_vs_teacher']:.2f}x | 1.00x |
| parameters (nonzero) | {m['parameters']:,} ({m['nonzero_parameters']:,}) | {teacher.get('parameters', 0):,} |
| size (serialized state dict) | {m['size_bytes'] / 1e6:.1f} MB | {teacher.get('size_bytes', 0) / 1e6:.1f} MB |
| encoder layers | {m['layers']} | |

Recipe: `{recipe.describe()}`

Latency: batch 1, {lat.get('threads')} threads, {lat.get('rows')} fixed validation rows, {lat.get('warmup')} warm-up
pass(es), {lat.get('repeats')} timed passes; measured during the search on the machine that ran the trial, interleaved
call by call with the fp32 teacher (the speed-up is the median ratio of those paired calls).

Data: `{data.get('source')}` ({data.get('train_rows')} train / {data.get('validation_rows')} validation rows,
max length {data.get('max_length')}; majority class {data.get('majority_rate', 0):.1%} of validation). Accuracy on
a local split of the BoolQ dev set is not comparable to published BoolQ dev accuracies.

Load it:

```python
import latencysolver
clf = latencysolver.load("path/to/this/folder")
clf.predict(["is the sky blue"], ["The sky is blue on a clear day."])
```

BoolQ: Clark et al., NAACL 2019, CC BY-SA 3.0.
"""
