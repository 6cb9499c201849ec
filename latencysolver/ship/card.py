"""The card of an export (its README.md): what the model is, how sure its figures are, how it was measured.

Built from the ``metrics.json`` dict that ``export_trial`` writes beside it, so the card never says anything the
metrics do not hold.
"""

from __future__ import annotations

import math
from typing import Any

from latencysolver.config.recipe import Recipe
from latencysolver.results.front import difference_text
from latencysolver.results.repeats import is_new_seed
from latencysolver.stats import Interval, PairedComparison, SeedSummary


def _f(value: Any, spec: str = ".4f", suffix: str = "") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:{spec}}{suffix}"
    return "n/a"


def _interval(raw: Any) -> str:
    """``[0.652, 0.733]`` (95%, Wilson) from a stored interval; empty when not recorded."""
    try:
        return Interval.from_dict(raw).describe(estimate=False) if raw else ""
    except (KeyError, TypeError, ValueError):
        return ""


def _paired(raw: Any) -> str:
    """``-0.2 [-3.1, +2.7], same answer on 91.2% of rows, McNemar p = 0.87``; ``n/a`` when not recorded."""
    try:
        paired = PairedComparison.from_dict(raw) if raw else None
    except (KeyError, TypeError, ValueError):
        paired = None
    if paired is None:
        return "n/a"
    return (
        f"{difference_text(paired)}, same answer on {paired.agreement:.1%} of rows, McNemar p = {paired.mcnemar_p:.2g}"
    )


def _repeats(raw: Any) -> str:
    """The seed repeats' line, or a pointer to ``latencysolver confirm`` when there are none."""
    if not raw or not raw.get("validation"):
        return (
            "Seed repeats: none (the validation score above is one seed's, picked among many: "
            "`latencysolver confirm --study NAME --trials N` measures its spread)."
        )

    def figure(key: str, scale: float = 1.0, digits: int = 3) -> str:
        value = raw.get(key)
        return SeedSummary.from_dict(value).describe(scale=scale, digits=digits) if value else "n/a"

    return (
        f"Seed repeats (`latencysolver confirm`, {raw['validation']['n']} new seeds, mean ± sd): validation "
        f"{figure('validation')}, test {figure('test')}, paired difference to the teacher on test "
        f"{figure('test_vs_teacher', 100, 1)} points, speed-up {figure('speedup', 1, 2)}x."
    )


def _retrained(raw: Any) -> str:
    """Both budgets of a trial of ``latencysolver retrain``: its steps and its search trial's ('' for any other)."""
    if not raw:
        return ""
    ran = raw.get("distill_steps")
    stopped = f", stopped at step {ran} below the accuracy floor" if isinstance(ran, int) and ran < raw["steps"] else ""
    seed = raw.get("seed")
    seeded = f"a new seed ({seed}, `retrain --seeds`)" if is_new_seed(seed) else "the search trial's seed"
    return (
        f"\nTraining: retrained for {raw['steps']} steps{stopped} (search trial #{raw['search_trial']}: "
        f"{_f(raw.get('search_steps'), 'd')} steps, validation accuracy {_f(raw.get('search_accuracy'), '.3f')}) by "
        f"`latencysolver retrain`, from the teacher, with {seeded}; the search (study "
        f"`{raw.get('search_study')}`) chose the recipe on its shorter budget.\n"
    )


def card(m: dict) -> str:
    recipe = Recipe.from_dict(m["recipe"])
    teacher, data, lat, test, onnx = m["teacher"] or {}, m["data"] or {}, m["latency"], m["test"], m["onnx"]
    hardware = lat.get("hardware") or {}
    selection = m.get("selection")
    chosen = ""
    if selection:
        reason = f": {selection['reason']}" if selection.get("reason") else ""
        chosen = f"\nSelected with `{selection.get('option') or selection.get('rule')}`{reason}.\n"
    cv = f" ±{lat['speedup_cv']:.0%}" if isinstance(lat.get("speedup_cv"), (int, float)) else ""
    classes = m.get("classes") or ["no", "yes"]
    columns = m.get("columns") or {"text": "question", "text_pair": "passage", "label": "label"}
    boolq = classes == ["no", "yes"] and columns == {"text": "question", "text_pair": "passage", "label": "label"}
    f1 = "F1 (yes)" if boolq else f"F1 ({classes[1]})" if len(classes) == 2 else "F1 (macro)"
    title = "BoolQ yes/no classifier" if boolq else f"{len(classes)}-class text classifier ({', '.join(classes)})"
    pair = columns.get("text_pair") is not None
    example = (
        '["is the sky blue"], ["The sky is blue on a clear day."]'
        if boolq
        else '["a text"]' + (', ["its second text"]' if pair else "")
    )
    cli = (
        '--question "is the sky blue" --passage "..."'
        if boolq
        else '--text "a text"' + (' --text-pair "its second text"' if pair else "")
    )
    note = (
        " Accuracy on a local split of the BoolQ dev set is not\ncomparable to published BoolQ dev accuracies."
        if boolq
        else ""
    )
    reads = (
        ""
        if boolq
        else (
            f"\nIt reads column `{columns['text']}`"
            + (f" with `{columns['text_pair']}`" if pair else "")
            + f" and answers one of {', '.join(f'`{c}`' for c in classes)} (column `{columns['label']}`).\n"
        )
    )
    if test is not None:
        test_rows = (
            f"| test accuracy | {_f(test['accuracy'])} {_interval(test.get('accuracy_interval'))} | |\n"
            f"| vs teacher on test (points, paired) | {_paired(test.get('vs_teacher'))} | |\n"
            f"| test {f1} | {_f(test['f1'])} | |\n"
        )
        test_text = (
            f"Test: {test['rows']} rows of the `test` split of `{test['source']}` (majority class "
            f"{_f(test['majority_rate'], '.1%')}), measured at export time by loading this folder with "
            "`latencysolver.load`; the search never saw them."
        )
    else:
        test_rows = "| test accuracy | not measured | |\n"
        test_text = f"Test: not measured — {m.get('test_unavailable')}."
    validated = (
        "measured on this retrained model (the search chose the recipe by its search trial's score)"
        if m.get("retrain")
        else "measured during the search (the search chose among trials by it)"
    )
    onnx_test = onnx.get("test") or {}
    onnx_line = ""
    if onnx_test.get("same_as_model"):
        onnx_line = " It is the model `latencysolver.load` runs for this trial, so the figures above are its own."
    elif "agreement_with_model" in onnx_test:
        onnx_line = (
            f" On the test rows it scores accuracy {_f(onnx_test['accuracy'])}, F1 {_f(onnx_test['f1'])}, "
            f"and gives the same answer as the torch model on {_f(onnx_test['agreement_with_model'], '.1%')}"
            " of them."
        )
    return f"""# {title} — latencysolver study `{m["study"]}`, trial {m["trial"]}

Compressed from a fine-tuned `{teacher.get("base_model")}` teacher by latencysolver.
{reads}{chosen}
| | this model | teacher |
| --- | --- | --- |
| validation accuracy | {_f(m["validation"]["accuracy"])} {_interval(m["validation"].get("accuracy_interval"))} | {_f(teacher.get("accuracy"))} {_interval(teacher.get("accuracy_interval"))} |
| vs teacher on validation (points, paired) | {_paired(m["validation"].get("vs_teacher"))} | |
| validation {f1} | {_f(m["validation"]["f1"])} | {_f(teacher.get("f1"))} |
{test_rows}| latency p50, batch 1 | {_f(lat["p50_ms"], ".2f", " ms")} | {_f(teacher.get("latency_p50_ms"), ".2f", " ms")} |
| latency p90, batch 1 | {_f(lat["p90_ms"], ".2f", " ms")} | {_f(teacher.get("latency_p90_ms"), ".2f", " ms")} |
| paired speed-up | {_f(lat["speedup_vs_teacher"], ".2f", "x")}{cv} | 1.00x |
| parameters (nonzero) | {_f(m["parameters"], ",")} ({_f(m["nonzero_parameters"], ",")}) | {_f(teacher.get("parameters"), ",")} |
| size (serialized state dict) | {_f((m["size_bytes"] or 0) / 1e6, ".1f", " MB")} | {_f((teacher.get("size_bytes") or 0) / 1e6, ".1f", " MB")} |
| encoder layers | {m["layers"]} | |

Recipe: `{recipe.describe()}` (`quant_dtype` {recipe.quant_dtype}, {recipe.backend} backend)
{_retrained(m.get("retrain"))}
Latency: batch 1, {lat.get("threads")} threads, {lat.get("rows")} fixed validation rows, {lat.get("warmup")} warm-up
pass(es), {lat.get("repeats")} timed passes; measured during the search on the machine that ran the trial, interleaved
call by call with the fp32 teacher (the speed-up is the median ratio of those paired calls). Milliseconds hold only for
this hardware: {hardware.get("describe") or "not recorded"} [`{hardware.get("key") or "unknown"}`].

Validation: {data.get("validation_rows")} rows, {validated}.
{test_text}
{_repeats(m.get("repeats"))}

Teacher: `{teacher.get("base_model")}` fine-tuned on the train split; validation accuracy {_f(teacher.get("accuracy"), ".3f")},
F1 {_f(teacher.get("f1"), ".3f")}, latency p50 {_f(teacher.get("latency_p50_ms"), ".2f", " ms")} on the same machine.

Data: `{data.get("source")}` ({data.get("train_rows")} train / {data.get("validation_rows")} validation /
{data.get("test_rows")} test rows, max length {data.get("max_length")}; majority class
{_f(data.get("majority_rate"), ".1%")} of validation).{note}

ONNX: `{onnx["file"]}` is {onnx["precision"]} — {onnx["how"]}.{onnx_line}

Load it:

```python
import latencysolver
clf = latencysolver.load("path/to/this/folder")
clf.predict({example})
```

or `latencysolver predict path/to/this/folder {cli}`, or run `{onnx["file"]}`
in onnxruntime (int64 inputs {", ".join(f"`{name}`" for name in onnx.get("inputs", []))}; output `logits`).
{"BoolQ: Clark et al., NAACL 2019, CC BY-SA 3.0." if boolq else ""}
"""
