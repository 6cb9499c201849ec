"""Compression passes: plain functions on a model, one module per technique (a trailing ``_`` mutates in place)."""

from latencysolver.compression.architectures import (
    ENCODER_FAMILIES,
    CompressionRefused,
    EncoderFamily,
    encoder_blocks,
    encoder_family,
)
from latencysolver.compression.layer_skip import (
    LayerDropHandle,
    drop_layers_,
    enable_layerdrop_,
    encoder_layers,
    kept_layer_indices,
)
from latencysolver.compression.low_rank import (
    LowRankLinear,
    factorize_,
    resolve_rank,
    restore_low_rank_structure_,
    saves_flops,
)
from latencysolver.compression.pruning import (
    effective_weight,
    encoder_linears,
    magnitude_prune_,
    make_pruning_permanent_,
    weight_sparsity,
)
from latencysolver.compression.quantization import count_quantized_linears, quantize
from latencysolver.compression.structured import (
    StructuredPruneReport,
    restore_structured_shape_,
    structured_prune_,
    structured_shape,
)

__all__ = [
    "ENCODER_FAMILIES",
    "CompressionRefused",
    "EncoderFamily",
    "LayerDropHandle",
    "LowRankLinear",
    "StructuredPruneReport",
    "count_quantized_linears",
    "drop_layers_",
    "effective_weight",
    "enable_layerdrop_",
    "encoder_blocks",
    "encoder_family",
    "encoder_layers",
    "encoder_linears",
    "factorize_",
    "kept_layer_indices",
    "magnitude_prune_",
    "make_pruning_permanent_",
    "quantize",
    "resolve_rank",
    "restore_low_rank_structure_",
    "restore_structured_shape_",
    "saves_flops",
    "structured_prune_",
    "structured_shape",
    "weight_sparsity",
]
