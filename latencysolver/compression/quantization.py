"""Post-training quantization of a distilled student, applied last so distillation trains in fp32.

- fp32: nothing to do, the model itself is returned.
- bf16 / fp16: a copy with every parameter and buffer cast.  On AVX2-only CPUs these matrix multiplies are
  *slower* than fp32 (no native half-precision kernels); they are offered because the search should find that.
- int8: dynamic quantization of every ``nn.Linear`` (also the factors inside a ``LowRankLinear``, and the
  pooler and classifier): weights stored as int8 with one scale per output channel, activations quantized on
  the fly per batch.  No calibration data is needed, which is what makes it cheap enough to run per trial.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from latencysolver.config.knobs import QUANT_DTYPES

# The torch half of the ``quant_dtype`` knob (its ``ort-*`` settings run in ``models.onnx_backend``).
TORCH_QUANT_DTYPES: tuple[str, ...] = tuple(d for d in QUANT_DTYPES if not d.startswith("ort-"))

_FLOAT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    # torch.ao.quantization is deprecated upstream in favour of torchao, and both the API and the quantized
    # tensors it creates warn on every call.  It still works, is fast on x86 (fbgemm), and is what this
    # package uses; silence those warnings here only, not process-wide.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # Per-channel weight scales (one per output row) lose less accuracy than one scale per tensor,
        # at the same speed.  inplace=False: the float student is left intact.
        return torch.ao.quantization.quantize_dynamic(
            model,
            {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
            inplace=False,
        )


def quantize(model: nn.Module, dtype: str) -> nn.Module:
    """The model at ``dtype``, in eval mode; a copy except for fp32, which returns ``model`` itself."""
    if dtype == "fp32":
        return model.eval()
    if dtype in _FLOAT_DTYPES:
        quantized = copy.deepcopy(model).to(_FLOAT_DTYPES[dtype])
    elif dtype == "int8":
        quantized = _quantize_dynamic_int8(model)
    else:
        raise ValueError(f"quantization dtype must be one of {TORCH_QUANT_DTYPES}, but got {dtype!r}")
    return quantized.eval()


def count_quantized_linears(model: nn.Module) -> int:
    """How many dynamically quantized int8 Linear modules ``model`` contains."""
    return sum(isinstance(m, DynamicQuantizedLinear) for m in model.modules())
