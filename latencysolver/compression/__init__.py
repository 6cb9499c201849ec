"""Compression passes: plain functions on a model, one module per technique (a trailing ``_`` mutates in place)."""

from latencysolver.compression.layer_skip import (
    LayerDropHandle,
    drop_layers_,
    enable_layerdrop_,
    encoder_layers,
    kept_layer_indices,
)
from latencysolver.compression.low_rank import LowRankLinear, factorize_, restore_low_rank_structure_, saves_flops
from latencysolver.compression.pruning import (
    effective_weight,
    encoder_linears,
    magnitude_prune_,
    make_pruning_permanent_,
    weight_sparsity,
)
from latencysolver.compression.quantization import count_quantized_linears, quantize

__all__ = [
    "LayerDropHandle",
    "LowRankLinear",
    "count_quantized_linears",
    "drop_layers_",
    "effective_weight",
    "enable_layerdrop_",
    "encoder_layers",
    "encoder_linears",
    "factorize_",
    "kept_layer_indices",
    "magnitude_prune_",
    "make_pruning_permanent_",
    "quantize",
    "restore_low_rank_structure_",
    "saves_flops",
    "weight_sparsity",
]
