"""ONNX Runtime as an inference backend for a finalized student: export, int8 quantization, and a wrapper
that is called like a Hugging Face model.

    fp32 torch student ──export_onnx──► model.fp32.onnx ──quantize_onnx_int8──► model.int8.onnx
                                               └──────────────┬──────────────────────┘
                                                        OnnxClassifier(path, threads)
                                          clf(**inputs).logits   clf.eval()   clf.set_threads(n)

``OnnxClassifier`` is a drop-in ``Runnable`` for ``latency.measure_latency`` / ``measure_paired`` and for
``evaluate.predict_logits``: it takes the same dict of torch tensors a Hugging Face model takes, feeds only the
inputs its graph declares (a CNN student exported without ``token_type_ids`` simply ignores them), and returns
an object whose ``.logits`` is a float32 torch tensor.  ``to_backend`` is the one-call version that the
quantization step uses: model + dtype in, runnable out.

Only fp32 and int8 are offered.  ORT's CPU execution provider implements few operators in fp16 and fewer in bf16
on x86, and none of them fast on AVX2-only CPUs, so those dtypes are refused by name rather than half-supported;
the torch backend covers them (and shows how slow they are: ``benchmarks/knobs.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latencysolver.errors import ModelError, first_line

ONNX_BACKENDS: tuple[str, ...] = ("onnxruntime",)
ONNX_DTYPES: tuple[str, ...] = ("fp32", "int8")
OUTPUT_NAME = "logits"
logger = logging.getLogger(__name__)
FP32_FILE = "model.fp32.onnx"
INT8_FILE = "model.int8.onnx"


# --------------------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------------------


class _LogitsOnly(nn.Module):
    """Positional tensors in, the logits tensor out: the graph's single output, whatever the model returns.

    Hugging Face classifiers return a ``SequenceClassifierOutput`` (possibly with hidden states or attentions
    when the config asks for them); the exporter would turn every field into a graph output.  Taking
    ``.logits`` here keeps exactly one output named "logits".  Positional arguments, in the order of
    ``names``, because both exporters name graph inputs by position.
    """

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, tensors, strict=True)))
        if isinstance(out, torch.Tensor):
            return out
        if hasattr(out, "logits"):
            return out.logits
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            return out[0]
        raise TypeError(f"cannot find the logits in a {type(out).__name__} returned by {type(self.model).__name__}")


def _check_exportable(model: nn.Module, example_inputs: Mapping[str, torch.Tensor]) -> None:
    if not example_inputs:
        raise ValueError("example_inputs must name at least one input tensor, but got an empty dict")
    for name, value in example_inputs.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 2:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"example input {name!r} must be a 2-d (batch, sequence) tensor, but got {shape}")
    # A torch-quantized or half-precision model would export as something ORT cannot run fast, or not at all:
    # the ONNX path quantizes the fp32 graph itself (quantize_onnx_int8).
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise ValueError(
                f"export_onnx needs an fp32 model, but {name!r} is {tensor.dtype}; "
                "export before quantizing and use quantize_onnx_int8 for int8"
            )
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    quantized = [name for name, m in model.named_modules() if isinstance(m, DynamicQuantizedLinear)]
    if quantized:
        raise ValueError(
            f"export_onnx needs an fp32 model, but {quantized[0]!r} is a torch int8 Linear; "
            "export before quantizing and use quantize_onnx_int8 for int8"
        )


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Hide what the exporters print for every model (and only that, only here).

    TorchScript path: a DeprecationWarning for the exporter itself, TracerWarnings where transformers turns a
    tensor into a Python bool (mask shape and ``is_causal`` checks, which are constant for an encoder), and a
    UserWarning on ``aten::index`` with negative indices (the indices are aranges), and DeBERTa-v2's "To copy
    construct from a tensor" UserWarning (its attention scale is ``torch.tensor(size)``, and a traced size is a
    tensor; the head size is constant, so the traced scale is right at every length).  Dynamo path: progress
    lines on stdout, the opset down-conversion and "torchvision is not installed" log records, and renaming
    UserWarnings.  Errors still propagate.
    """
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._.*")
            warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_torchscript(
    wrapper: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[str, ...], path: Path, opset: int
) -> None:
    dynamic_axes = {**{name: {0: "batch", 1: "sequence"} for name in names}, OUTPUT_NAME: {0: "batch"}}
    torch.onnx.export(
        wrapper,
        args,
        str(path),
        input_names=list(names),
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
        dynamo=False,
    )


def _export_dynamo(
    wrapper: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[str, ...], path: Path, opset: int
) -> None:
    """The dynamo export at ``opset``, or at its native opset 18 when the down-conversion writes an invalid graph.

    ModernBERT's gated FFN (``chunk(2)``) becomes an opset-18 ``Split`` with a ``num_outputs`` attribute, which the
    down-conversion to 17 leaves in place: ONNX's checker and ORT reject that graph.  Exported at 18 it is valid
    and matches torch (measured 5e-7 on the tiny ModernBERT); ORT runs and quantizes opset 18.
    """
    import onnx

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    # The wrapper's forward is ``forward(*tensors)``: dynamic_shapes is keyed by that parameter's name.
    dynamic_shapes = {"tensors": tuple({0: batch, 1: sequence} for _ in names)}
    for version in dict.fromkeys((opset, max(opset, 18))):
        # external_data=False: one self-contained file (the protobuf limit is 2 GB, far above any student here).
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=list(names),
            output_names=[OUTPUT_NAME],
            opset_version=version,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            dynamo=True,
        )
        try:
            onnx.checker.check_model(str(path))
        except onnx.checker.ValidationError as invalid:
            if version >= 18:
                raise
            logger.info("the dynamo exporter's opset-%d graph is invalid (%s); exporting at 18", version, invalid)
        else:
            return


def export_onnx(model: nn.Module, path: Path, example_inputs: dict[str, torch.Tensor], opset: int = 17) -> Path:
    """Export an fp32 classifier to ``path``: inputs named as ``example_inputs``' keys, output "logits",
    batch and sequence axes dynamic.  The model is left as it was (same mode, same weights).

    Exporter choice.  torch 2.13 still ships the TorchScript exporter (``dynamo=False``, deprecated since 2.9),
    and it is tried first.  It traces one forward pass: 0.1-0.3 s for the tiny test BERT, 0.9 s for MiniLM-L6,
    and on every student shape the tests build (layers removed, LowRankLinear factors, pruned weights, heads
    and FFN neurons removed) its graph matches torch to < 1e-6 at lengths, batch sizes and padding the batch-1
    example did not have.  Its TracerWarnings are about Python bools that transformers takes from tensor
    shapes (mask padding length, ``is_causal``); for an encoder those are the same at every length.
    The dynamo exporter (``torch.export``) gives the same numbers but takes 3-5 s, builds opset 18 and
    down-converts to 17 (ModernBERT's graph stays at 18, see ``_export_dynamo``), and its graphs need their
    ``value_info`` stripped before ORT's quantizer accepts them (see ``quantize_onnx_int8``).  It is the
    fallback: used when the TorchScript export raises, and so the path that takes over once torch removes that
    exporter.  The two graphs showed no consistent latency difference (benchmarks/README.md).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_exportable(model, example_inputs)
    names = tuple(example_inputs)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    # Integer inputs are exported as int64, the dtype OnnxClassifier feeds whatever it is called with.
    args = tuple(
        x.to(device=device, dtype=x.dtype if x.is_floating_point() else torch.long)
        for x in (example_inputs[name] for name in names)
    )
    modes = {module: module.training for module in model.modules()}  # put back exactly, module by module
    wrapper = _LogitsOnly(model, names).eval()
    try:
        with _quiet_export(), torch.no_grad():
            try:
                _export_torchscript(wrapper, args, names, path, opset)
            # Any failure: the TorchScript exporter raises RuntimeError, TypeError, AttributeError (once removed
            # from torch) or its own exception types, and each one is a reason to try the other exporter.
            except Exception as torchscript_error:  # noqa: BLE001
                logger.info(
                    "TorchScript ONNX export of %s failed (%s); trying the dynamo exporter",
                    type(model).__name__,
                    _describe(torchscript_error),
                )
                try:
                    _export_dynamo(wrapper, args, names, path, opset)
                except Exception as dynamo_error:  # the same for the dynamo exporter; re-raised, chained
                    raise ModelError(
                        f"cannot export {type(model).__name__} to ONNX: the TorchScript exporter failed "
                        f"({_describe(torchscript_error)}), and so did the dynamo exporter "
                        f"({_describe(dynamo_error)})"
                    ) from dynamo_error
    finally:
        for module, training in modes.items():
            module.training = training
    return path


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


# --------------------------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------------------------


INT8_SCHEME = "dynamic int8, per-channel 7-bit weights"  # what quantize_onnx_int8 makes, as model cards say it


def quantize_onnx_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization of an fp32 graph: int8 weights with one scale per output channel, activations
    quantized to uint8 on the fly per call.  No calibration data.  Weight-times-weight MatMuls become
    MatMulInteger; activation-times-activation ones (attention scores) and Gemm heads stay fp32.

    Per channel, not per tensor: with one scale for a whole weight matrix, the few large-magnitude columns of a
    small BoolQ student set the scale and the rest round to a handful of levels; such students were measured to
    collapse to one class, *below* the majority-class accuracy.  Per-channel scales keep the fine-tuned
    teacher's validation accuracy (benchmarks/README.md).

    ``reduce_range=True`` (7-bit weights): on x86 CPUs without VNNI (AVX2 only), onnxruntime's u8s8 kernels use
    ``VPMADDUBSW``, whose 16-bit intermediate sums saturate with full-range int8 weights, as onnxruntime's
    quantization docs warn: on an AVX2-only CPU full-range weights moved the tiny test BERTs' logits far more
    than 7-bit ones do (benchmarks/README.md).  With VNNI there is no saturation; one setting for both keeps an
    exported file correct on either CPU, for one bit less weight precision.

    No ``quant_pre_process``.  On the TorchScript-exported MiniLM-L6 classifier the pre-processed and the raw
    graph quantize to the same graph (38 MatMulInteger, 12 fp32 MatMul, same logits, same latency), the
    pre-processing costs about a second, and its symbolic shape inference fails outright on dynamo-exported
    graphs ("Incomplete symbolic shape inference").  What the quantizer does need: dynamo-exported graphs carry
    intermediate ``value_info`` shapes that ONNX's own shape inference contradicts ("Inferred shape and existing
    shape differ"), so those annotations are dropped first; the quantizer re-infers them.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"quantize_onnx_int8: no ONNX file at {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src))
    del model.graph.value_info[:]
    # onnxruntime.quantization logs "Please consider to run pre-processing" on the root logger (see above).
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(model, str(dst), per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(previous)
    return dst


# --------------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxOutput:
    logits: torch.Tensor  # float32, (batch, labels)


class OnnxClassifier:
    """An ``onnxruntime.InferenceSession`` called like a Hugging Face classifier: ``clf(**inputs).logits``.

    CPUExecutionProvider, all graph optimizations (ORT_ENABLE_ALL: constant folding, LayerNorm/GELU/MatMul+Add
    fusions), ``threads`` intra-op threads and one inter-op thread (a classifier graph is one chain of ops;
    parallel branches would only fight the intra-op pool for the same cores).  ORT fixes the thread pool when a
    session is built, so ``set_threads`` with a new count rebuilds the session (fast: the graph is small, and
    it happens once per measurement, before the warm-up).
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"OnnxClassifier: no ONNX file at {self.path}")
        self.threads = 0
        self._session: Any = None
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, but got {threads!r}")
        if threads == self.threads and self._session is not None:
            return
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no per-session notes about unused initializers etc.
        # No busy-waiting after a call.  ORT's pool spins by default and keeps both cores busy for a while after
        # each run, which slowed the torch teacher timed right after it in the paired protocol (the figures:
        # benchmarks/README.md, latency_stability.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        self.threads = threads
        self.input_names: tuple[str, ...] = tuple(i.name for i in self._session.get_inputs())

    def eval(self) -> OnnxClassifier:
        return self  # nothing to switch: the graph was exported in eval mode

    def __call__(self, **inputs: Any) -> OnnxOutput:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(
                f"{self.path.name} needs inputs {list(self.input_names)}, but got {sorted(inputs)} (missing {missing})"
            )
        feed = {name: _as_int64(inputs[name]) for name in self.input_names}
        (logits,) = self._session.run([OUTPUT_NAME], feed)
        return OnnxOutput(logits=torch.from_numpy(logits))

    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r}, threads={self.threads})"


def _as_int64(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.int64)


def load_onnx(path: str | Path, threads: int = 1) -> OnnxClassifier:
    return OnnxClassifier(path, threads=threads)


def to_backend(
    model: nn.Module, backend: str, dtype: str, workdir: Path, example_inputs: dict[str, torch.Tensor], threads: int = 1
) -> OnnxClassifier:
    """``model`` exported (and for int8 quantized) into ``workdir``, loaded as an ``OnnxClassifier``.

    Writes ``workdir/model.fp32.onnx`` and, for int8, ``workdir/model.int8.onnx``.  Values are checked before
    any export runs.
    """
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"inference backend must be one of {ONNX_BACKENDS}, but got {backend!r}")
    if dtype not in ONNX_DTYPES:
        hint = (
            " (ONNX Runtime's CPU provider has no fast bf16/fp16 kernels; use the torch backend for those)"
            if dtype in ("bf16", "fp16")
            else ""
        )
        raise ValueError(f"onnxruntime dtype must be one of {ONNX_DTYPES}, but got {dtype!r}{hint}")
    workdir = Path(workdir)
    fp32 = export_onnx(model, workdir / FP32_FILE, example_inputs)
    if dtype == "int8":
        return load_onnx(quantize_onnx_int8(fp32, workdir / INT8_FILE), threads=threads)
    return load_onnx(fp32, threads=threads)
