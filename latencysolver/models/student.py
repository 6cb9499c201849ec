"""From teacher to compressed student, and the student's on-disk form.

    copy(teacher) → layer skip → magnitude prune → low rank → [distill] → bake in masks (→ drop layers)
                  → quantize

Layer skip has two modes.  ``deterministic`` removes the skipped layers (fixed evenly spaced rule) *before*
distilling, so the student trains in the shape it will run in.  ``stochastic`` follows the original LayerDrop
recipe: all layers stay while distilling, each skipped at rate p per step, and a seeded random choice of
``round((1-p)·L)`` layers is kept afterwards.  Removing first trained the better and faster student on BoolQ
(benchmarks/README.md, "measured while building the package").

The distillation step lives in ``training/distillation.py``; this module does what comes before and after it,
and saves or loads the result.  A saved student is the *pre-quantization* weights (safetensors), the Hugging Face
config of the shrunken architecture, and ``student.json`` (recipe, kept layers, low-rank ranks).  Quantization is
a deterministic function of those weights, so ``load_student`` re-applies it and gets the same model back.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
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
    restore_structured_shape_,
    structured_prune_,
    structured_shape,
)
from latencysolver.config.recipe import Recipe
from latencysolver.config.study import CNNStudentConfig
from latencysolver.errors import LatencySolverError, ModelError, first_line
from latencysolver.models.cnn import CNN_JSON, CNNClassifier, CNNConfig, cnn_from_teacher, load_cnn, save_cnn

WEIGHTS = "model.safetensors"
STUDENT_JSON = "student.json"
ONNX_FILE = "model.onnx"  # the onnxruntime graph a trial ran (fp32 or int8), for ort-* recipes


def to_runnable(model: nn.Module, quant_dtype: str, example_inputs: dict[str, Any], workdir: Path, threads: int) -> Any:
    """The finalized fp32 student as it will run: quantized in torch, or exported to onnxruntime (``ort-*``)."""
    if quant_dtype.startswith("ort-"):
        from latencysolver.models.onnx_backend import to_backend

        workdir.mkdir(parents=True, exist_ok=True)
        return to_backend(model, "onnxruntime", quant_dtype.removeprefix("ort-"), workdir, example_inputs, threads)
    return quantize(model, quant_dtype)


@dataclass
class StudentInTraining:
    """A student between compression and distillation: pruning masks live, LayerDrop hooks on (stochastic)."""

    model: nn.Module
    recipe: Recipe
    kept_layers: tuple[int, ...]  # indices into the teacher's layers
    _layerdrop: Any = None

    @property
    def layerdrop(self) -> bool:
        """True while distilling with LayerDrop: each step runs a different subset of the layers."""
        return self._layerdrop is not None

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
    if recipe.prune_ratio > 0 and recipe.prune_kind == "structured":
        structured_prune_(student, recipe.prune_ratio)  # heads and FFN neurons removed: smaller Linears
    elif recipe.prune_ratio > 0:
        magnitude_prune_(student, recipe.prune_ratio)  # zeros under masks: same shapes
    if recipe.rank is not None:
        factorize_(student, recipe.rank)
    return StudentInTraining(model=student, recipe=recipe, kept_layers=tuple(kept), _layerdrop=handle)


def cnn_student(teacher: nn.Module, settings: CNNStudentConfig, max_length: int, seed: int) -> CNNClassifier:
    """A fresh CNN student reading the teacher's token ids (its embeddings seeded from the teacher's)."""
    torch.manual_seed(seed)
    teacher_config: Any = teacher.config  # a PretrainedConfig; nn.Module's __getattr__ would type it Tensor | Module
    config = CNNConfig(
        vocab_size=teacher_config.vocab_size,
        embed_dim=settings.embed_dim,
        channels=settings.channels,
        kernel_sizes=settings.kernel_sizes,
        dropout=settings.dropout,
        num_labels=teacher_config.num_labels,
        max_length=max_length,
        pair_aware=settings.pair_aware,
        # RoBERTa-like teachers have no token type ids: their separator (</s>, the eos) says where the passage starts
        sep_token_id=getattr(teacher_config, "sep_token_id", None) or getattr(teacher_config, "eos_token_id", None),
        representation_dim=teacher_config.hidden_size if settings.representation_weight > 0 else 0,
    )
    return cnn_from_teacher(teacher, config)


def low_rank_map(model: nn.Module) -> dict[str, int]:
    return {name: m.rank for name, m in model.named_modules() if isinstance(m, LowRankLinear)}


def save_student(
    model: nn.Module, recipe: Recipe, kept_layers: tuple[int, ...], folder: Path, extra: dict[str, Any] | None = None
) -> list[str]:
    """Write the finalized, not yet quantized student to ``folder``; returns the file names written.

    A transformer student is ``model.safetensors`` + its Hugging Face ``config.json`` (the unpruned widths)
    + ``student.json`` (recipe, kept layers, structurally pruned widths, low-rank ranks).  A CNN student is
    ``model.safetensors`` + ``cnn.json`` + ``student.json``.
    """
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"recipe": recipe.to_dict(), "architecture": recipe.architecture}
    if isinstance(model, CNNClassifier):
        save_cnn(model, folder)
        files = [WEIGHTS, CNN_JSON]
    else:
        save_model(model, str(folder / WEIGHTS))
        hf_config: Any = model.config  # (as in cnn_student)
        hf_config.save_pretrained(folder)
        info |= {
            "kept_layers": list(kept_layers),
            "structured": structured_shape(model),
            "low_rank": low_rank_map(model),
        }
        files = [WEIGHTS, "config.json"]
    (folder / STUDENT_JSON).write_text(json.dumps(info | (extra or {}), indent=2))
    return [*files, STUDENT_JSON]


@dataclass(frozen=True)
class LoadedStudent:
    model: Any  # as it runs: quantized as the recipe says, or an onnxruntime session (ort-*); eval mode
    recipe: Recipe
    info: dict[str, Any]


def load_student(folder: str | Path, threads: int = 1) -> LoadedStudent:
    """Rebuild a saved student as it ran in its trial (``threads`` is for onnxruntime sessions)."""
    folder = Path(folder)
    info, recipe = read_student_json(folder)
    if recipe.backend == "onnxruntime":
        from latencysolver.models.onnx_backend import load_onnx

        if not (folder / ONNX_FILE).is_file():
            raise ModelError(f"{folder}: not a latencysolver model folder ({ONNX_FILE} is missing)")
        return LoadedStudent(model=load_onnx(folder / ONNX_FILE, threads=threads), recipe=recipe, info=info)
    model = load_cnn(folder) if recipe.architecture == "cnn" else _load_transformer(folder, info)
    return LoadedStudent(model=quantize(model.eval(), recipe.quant_dtype), recipe=recipe, info=info)


def read_student_json(folder: Path) -> tuple[dict[str, Any], Recipe]:
    """``student.json`` and its recipe; a missing or malformed one is a ``ModelError`` naming the file."""
    path = folder / STUDENT_JSON
    if not path.is_file():
        raise ModelError(f"{folder}: not a latencysolver model folder ({STUDENT_JSON} is missing)")
    try:
        info = json.loads(path.read_text())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError(f"{path}: unreadable: {first_line(exc)}") from None
    if not isinstance(info, dict):
        raise ModelError(f"{path}: expected a JSON object, got {type(info).__name__}")
    if "recipe" not in info:
        raise ModelError(f"{path}: no 'recipe' key")
    try:
        recipe = Recipe.from_dict(info["recipe"])
    except (LatencySolverError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path}: 'recipe' is unreadable: {first_line(exc)}") from None
    return info, recipe


def load_fp32_student(folder: str | Path) -> nn.Module:
    """The saved student's torch weights before quantization or export, in eval mode."""
    folder = Path(folder)
    info = json.loads((folder / STUDENT_JSON).read_text())
    if info.get("architecture") == "cnn":
        return load_cnn(folder)
    return _load_transformer(folder, info).eval()


def read_model_config(folder: Path) -> Any:
    """``folder/config.json`` as a transformers config, without running any code of the folder's: an export's
    (ship/remote_code.py: its own ``model_type`` and an ``auto_map`` naming its ``modeling_latencysolver.py``) is
    read as its family's (``latencysolver_model_type``), any other with ``trust_remote_code=False``.  transformers
    would otherwise ask "Do you wish to run the custom code? [y/N]" and wait 15 s at a terminal."""
    from transformers import AutoConfig

    raw = json.loads((folder / "config.json").read_text())
    family = raw.get("latencysolver_model_type")
    if isinstance(family, str):
        kept = {k: v for k, v in raw.items() if k not in ("model_type", "auto_map", "architectures")}
        return AutoConfig.for_model(family, **kept)
    return AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)


def _load_transformer(folder: Path, info: dict[str, Any]) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_model
    from transformers import AutoModelForSequenceClassification

    for name in (WEIGHTS, "config.json"):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: not a latencysolver model folder ({name} is missing)")
    described = folder / STUDENT_JSON
    if "low_rank" not in info:
        raise ModelError(f"{described}: no 'low_rank' key (a transformer student's low-rank ranks)")
    try:
        low_rank = {str(k): int(v) for k, v in info["low_rank"].items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise ModelError(f"{described}: 'low_rank' must map layer names to ranks: {first_line(exc)}") from None
    try:
        model = AutoModelForSequenceClassification.from_config(read_model_config(folder))
    except (KeyError, ValueError, TypeError, RuntimeError, OSError) as exc:  # JSONDecodeError is a ValueError
        raise ModelError(f"{folder / 'config.json'}: cannot build the model: {first_line(exc)}") from None
    try:
        # order matters: the low-rank skeletons take their widths from the structurally pruned Linears
        restore_structured_shape_(model, info.get("structured", {"blocks": {}}))
        restore_low_rank_structure_(model, low_rank)
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise ModelError(
            f"{described}: 'structured' / 'low_rank' do not fit the model of config.json: {first_line(exc)}"
        ) from None
    try:
        load_model(model, str(folder / WEIGHTS), strict=True)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise ModelError(
            f"{folder / WEIGHTS}: cannot rebuild the student from these weights (truncated, or not the shapes "
            f"{STUDENT_JSON} and config.json say): {first_line(exc)}"
        ) from None
    return model
