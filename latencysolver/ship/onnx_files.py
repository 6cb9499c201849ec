"""The ONNX file of an export: which precision it holds, its inputs, and writing it beside the weights."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from latencysolver.config.recipe import Recipe
from latencysolver.models.onnx_backend import INT8_SCHEME
from latencysolver.models.student import ONNX_FILE, STUDENT_JSON

INT8_OPS = frozenset(
    {
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "DynamicQuantizeMatMul",
        "QLinearMatMul",
        "QLinearConv",
        "ConvInteger",
        "QuantizeLinear",
        "DequantizeLinear",
        "QAttention",
        "QGemm",
    }
)


def onnx_precision(path: str | Path) -> str:
    """ "int8" when the graph has quantized operators or int8 weights, else "fp32" (from the file itself)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if any(node.op_type in INT8_OPS for node in model.graph.node):
        return "int8"
    int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return "int8" if any(t.data_type in int8 for t in model.graph.initializer) else "fp32"


def onnx_inputs(path: str | Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def write_onnx(folder: Path, recipe: Recipe, tokenizer: Any) -> dict[str, Any]:
    """``folder/model.onnx``, int8 exactly when the trial is int8; returns what was written, for metrics.json."""
    if recipe.backend == "onnxruntime":  # the graph the trial measured: downloaded with the artifacts
        precision = onnx_precision(folder / ONNX_FILE)
        return {
            "file": ONNX_FILE,
            "precision": precision,
            "source": "trial artifact",
            "inputs": onnx_inputs(folder / ONNX_FILE),
            "how": f"the graph trial measured in onnxruntime ({recipe.quant_dtype})",
            "quantization": INT8_SCHEME if precision == "int8" else None,
        }
    from latencysolver.data.batches import collate, encode_pairs
    from latencysolver.models.onnx_backend import export_onnx, quantize_onnx_int8
    from latencysolver.models.student import load_fp32_student

    model = load_fp32_student(folder)
    info = json.loads((folder / STUDENT_JSON).read_text())
    example = encode_pairs(
        tokenizer, ["is the sky blue"], ["The sky is blue on a clear day."], int(info.get("max_length", 256))
    )
    inputs = collate(example, [0], tokenizer.pad_token_id or 0).inputs
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.fp32.onnx", inputs)
        graph = quantize_onnx_int8(fp32, Path(tmp) / "model.int8.onnx") if recipe.dtype == "int8" else fp32
        shutil.copyfile(graph, folder / ONNX_FILE)
    precision = onnx_precision(folder / ONNX_FILE)
    if recipe.dtype == "int8":
        how = (
            f"the fp32 student exported now and quantized by onnxruntime ({INT8_SCHEME}); "
            "the trial measured torch's dynamic int8, so answers can differ on a few rows"
        )
    elif recipe.dtype in ("bf16", "fp16"):
        how = (
            f"the fp32 student exported now: the trial ran in torch {recipe.dtype}, which ONNX Runtime has no "
            "fast CPU kernels for, so the ONNX file is fp32"
        )
    else:
        how = "the fp32 student exported now"
    return {
        "file": ONNX_FILE,
        "precision": precision,
        "source": "exported at export time",
        "how": how,
        "inputs": onnx_inputs(folder / ONNX_FILE),
        "quantization": INT8_SCHEME if precision == "int8" else None,
    }


# ------------------------------------------------------------------------------------------------ test split
