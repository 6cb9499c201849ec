"""From teacher to compressed student, and the student's on-disk form.

    copy(teacher) → layer skip → magnitude prune → low rank → [distill] → bake in masks (→ drop layers)
                  → quantize

Layer skip has two modes.  ``deterministic`` removes the skipped layers (fixed evenly spaced rule) *before*
distilling, so the student trains in the shape it will run in.  ``stochastic`` follows the original LayerDrop
recipe: all layers stay while distilling, each skipped at rate p per step, and a seeded random choice of
``round((1-p)·L)`` layers is kept afterwards.  Measured on the shared BoolQ split (teacher 0.698, p = 0.5, 80
distillation steps, no other knob): removing first gave 0.652 validation accuracy in 49 s; LayerDrop on all
6 layers, then keeping layers 0, 2, 4 gave 0.622 — the majority class — in 65 s.

The distillation step lives in ``distill.py``; this module does what comes before and after it, and saves or
loads the result.  A saved student is the *pre-quantization* weights (safetensors), the Hugging Face config of
the shrunken architecture, and ``student.json`` (recipe, kept layers, low-rank ranks).  Quantization is a
deterministic function of those weights, so ``load_student`` re-applies it and gets the same model back.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from latencysolver.compression import (
    LowRankLinear,
    drop_layers_,
    enable_layerdrop_,
    encoder_layers,
    factorize_,
    kept_layer_indices,
    magnitude_prune_,
    make_pruning_permanent_,
    quantize,
    restore_low_rank_structure_,
)
from latencysolver.errors import ModelError, first_line
from latencysolver.recipe import Recipe

WEIGHTS = "model.safetensors"
STUDENT_JSON = "student.json"


@dataclass
class StudentInTraining:
    """A student between compression and distillation: pruning masks live, LayerDrop hooks on (stochastic)."""

    model: nn.Module
    recipe: Recipe
    kept_layers: tuple[int, ...]  # indices into the teacher's layers
    _layerdrop: Any = None

    def finalize(self) -> nn.Module:
        """After distillation: LayerDrop off, masks baked into the weights, skipped layers removed."""
        if self._layerdrop is not None:
            self._layerdrop.remove()
        make_pruning_permanent_(self.model)
        if len(self.kept_layers) < len(encoder_layers(self.model)):
            drop_layers_(self.model, list(self.kept_layers))
        return self.model.eval()


def compress(teacher: nn.Module, recipe: Recipe) -> StudentInTraining:
    student = copy.deepcopy(teacher)
    num_layers = len(encoder_layers(student))
    kept = kept_layer_indices(num_layers, recipe.skip_prob, recipe.skip_mode, recipe.seed)
    handle = None
    if recipe.skip_mode == "deterministic" and len(kept) < num_layers:
        drop_layers_(student, kept)
    elif recipe.skip_mode == "stochastic" and recipe.skip_prob > 0:
        handle = enable_layerdrop_(student, recipe.skip_prob, recipe.seed)
    if recipe.prune_ratio > 0:
        magnitude_prune_(student, recipe.prune_ratio)
    if recipe.rank is not None:
        factorize_(student, recipe.rank)
    return StudentInTraining(model=student, recipe=recipe, kept_layers=tuple(kept), _layerdrop=handle)


def low_rank_map(model: nn.Module) -> dict[str, int]:
    return {name: m.rank for name, m in model.named_modules() if isinstance(m, LowRankLinear)}


def save_student(model: nn.Module, recipe: Recipe, kept_layers: tuple[int, ...], folder: Path,
                 extra: dict[str, Any] | None = None) -> None:
    """Write the finalized, not yet quantized student to ``folder``."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS))
    model.config.save_pretrained(folder)
    info = {"recipe": recipe.to_dict(), "kept_layers": list(kept_layers), "low_rank": low_rank_map(model),
            **(extra or {})}
    (folder / STUDENT_JSON).write_text(json.dumps(info, indent=2))


@dataclass(frozen=True)
class LoadedStudent:
    model: nn.Module  # quantized as the recipe says, eval mode
    recipe: Recipe
    info: dict[str, Any]


def load_student(folder: str | Path) -> LoadedStudent:
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = Path(folder)
    for name in (WEIGHTS, STUDENT_JSON, "config.json"):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: not a latencysolver model folder ({name} is missing)")
    try:
        info = json.loads((folder / STUDENT_JSON).read_text())
        recipe = Recipe.from_dict(info["recipe"])
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
        restore_low_rank_structure_(model, {k: int(v) for k, v in info["low_rank"].items()})
        load_model(model, str(folder / WEIGHTS), strict=True)
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"{folder}: cannot rebuild the student: {first_line(exc)}") from None
    return LoadedStudent(model=quantize(model.eval(), recipe.quant_dtype), recipe=recipe, info=info)
