"""An export that ``transformers`` itself loads: ``AutoModelForSequenceClassification.from_pretrained(folder,
trust_remote_code=True)`` rebuilds the compressed student.

A structurally pruned or factorized student has Linears of other shapes than its ``config.json`` describes (the
config keeps the unpruned widths: it has one head count and one FFN width for every layer), so loading the folder
as the family's own class (``BertForSequenceClassification``) fails on the first shrunk weight.  The Hugging Face
convention for a model whose code is not in ``transformers`` is ``auto_map``: ``config.json`` names a class in a
Python file shipped beside the weights, which ``from_pretrained`` imports when the user passes
``trust_remote_code=True``.  Here that file (``modeling_latencysolver.py``) subclasses the family's class and, after
building it from the config, replaces every Linear whose shape the export records (``latencysolver_linears``) by
one of that shape, or by the two-factor ``down``/``up`` pair of a low-rank layer, so the saved weights load as
they are.  Skipped layers need nothing: the config's depth is already the student's.  The attention forward
passes reshape to (-1, head size), so fewer heads follow the Linear shapes.

The file needs only torch and transformers (not latencysolver).  It gives the student's fp32 weights: an int8 or
onnxruntime trial's quantization is not re-applied (``latencysolver.load`` does; ``model.onnx`` is the graph the
trial ran).  The config stops passing for a class it cannot be loaded as: ``architectures`` is the export's class and
``model_type`` its own (``latencysolver_bert``), so ``from_pretrained`` without ``trust_remote_code`` refuses the
folder instead of building the family's class and re-initializing every weight whose shape differs (what
transformers 5 does, with a warning).  ``latencysolver.load`` reads the family's type from
``latencysolver_model_type``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from latencysolver.compression.low_rank import LowRankLinear

MODELING_FILE = "modeling_latencysolver.py"
CLASS_NAME = "LatencySolverForSequenceClassification"
SHAPES_KEY = "latencysolver_changes"
ORIGINAL_TYPE_KEY = "latencysolver_model_type"  # the family's own model_type ("bert"), for latencysolver.load

_TEMPLATE = '''"""The compressed student of a latencysolver export: ``from_pretrained(folder, trust_remote_code=True)``.

Written by latencysolver's export: the family's own class, reshaped as the config's ``{shapes_key}`` says (the
Linears of pruned heads and neurons, low-rank factor pairs, LayerNorms the family builds elsewhere, head counts).
fp32 weights; the trial's quantization is not re-applied here (``latencysolver.load`` does it).
"""

from torch import nn
from transformers import {base} as _Base
from transformers import {config_base} as _BaseConfig


class LatencySolverConfig(_BaseConfig):
    """The family's config under its own model type, so that nothing loads this folder as the family's plain
    class (whose shapes it does not have) without this file."""

    model_type = "{model_type}"


class _LowRank(nn.Module):
    """W ~ up @ down, as latencysolver's LowRankLinear (the same parameter names)."""

    def __init__(self, in_features, out_features, rank, bias):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x):
        return self.up(self.down(x))


def _build(spec):
    if spec["kind"] == "low_rank":
        return _LowRank(spec["in"], spec["out"], spec["rank"], spec["bias"])
    if spec["kind"] == "layer_norm":
        return nn.LayerNorm(spec["shape"], eps=spec["eps"], bias=spec["bias"])
    return nn.Linear(spec["in"], spec["out"], bias=spec["bias"])


class {class_name}(_Base):
    config_class = LatencySolverConfig

    def __init__(self, config):
        super().__init__(config)
        changes = getattr(config, "{shapes_key}", {{}})
        for name, spec in changes.get("modules", {{}}).items():
            owner, _, attribute = name.rpartition(".")
            setattr(self.get_submodule(owner) if owner else self, attribute, _build(spec))
        for name, values in changes.get("attributes", {{}}).items():
            for attribute, value in values.items():
                setattr(self.get_submodule(name), attribute, value)
'''

HEAD_COUNTS = ("num_attention_heads", "n_heads", "num_heads", "all_head_size")  # what attention modules read


def _spec(module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, LowRankLinear):
        return {
            "kind": "low_rank",
            "in": module.down.in_features,
            "out": module.up.out_features,
            "rank": module.down.out_features,
            "bias": module.up.bias is not None,
        }
    if isinstance(module, nn.Linear):
        return {"kind": "linear", "in": module.in_features, "out": module.out_features, "bias": module.bias is not None}
    if isinstance(module, nn.LayerNorm):
        return {
            "kind": "layer_norm",
            "shape": list(module.normalized_shape),
            "eps": module.eps,
            "bias": module.bias is not None,
        }
    return None


def student_changes(model: nn.Module) -> dict[str, Any]:
    """What the student has that its class, built from its config, does not: the modules of another shape or kind
    (by qualified name, outermost first) and the head-count attributes of another value."""
    fresh = dict(type(model)(model.config).named_modules())
    modules: dict[str, Any] = {}
    attributes: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        if any(name.startswith(f"{done}.") for done in modules):
            continue  # inside a module already rebuilt (a low-rank pair's down and up)
        spec, before = _spec(module), fresh.get(name)
        if spec is not None and (before is None or _spec(before) != spec):
            modules[name] = spec
        counts = {a: getattr(module, a) for a in HEAD_COUNTS if isinstance(getattr(module, a, None), int)}
        changed = {a: v for a, v in counts.items() if before is not None and getattr(before, a, None) != v}
        if changed:
            attributes[name] = changed
    return {"modules": modules, "attributes": attributes}


def write_remote_code(folder: Path, model: nn.Module) -> str:
    """Make ``folder`` (an export with ``config.json``) loadable by ``from_pretrained(..., trust_remote_code=True)``;
    returns the class it names.  ``model`` is the fp32 student whose weights the folder holds."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    base = (config.get("architectures") or [type(model).__name__])[0]
    if base == CLASS_NAME:  # already written (an export over an earlier one)
        base = config.get("latencysolver_base", type(model).__name__)
    family = config.get(ORIGINAL_TYPE_KEY, config["model_type"])
    module = MODELING_FILE.removesuffix(".py")
    config |= {
        "architectures": [CLASS_NAME],
        "model_type": f"latencysolver_{family}".replace("-", "_"),
        ORIGINAL_TYPE_KEY: family,
        "auto_map": {
            "AutoConfig": f"{module}.LatencySolverConfig",
            "AutoModelForSequenceClassification": f"{module}.{CLASS_NAME}",
        },
        "latencysolver_base": base,
        SHAPES_KEY: student_changes(model),
    }
    code = _TEMPLATE.format(
        base=base,
        config_base=type(model.config).__name__,
        model_type=config["model_type"],
        class_name=CLASS_NAME,
        shapes_key=SHAPES_KEY,
    )
    (folder / MODELING_FILE).write_text(code)
    path.write_text(json.dumps(config, indent=2))
    return CLASS_NAME
