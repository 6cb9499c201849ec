"""Data: text pairs (BoolQ by default) or single texts with a label, from a hub dataset or a local folder, read
through ``data.columns``, normalized and checked (``text.py``), then tokenized once and cached by content hash, and
cut into padded or length-grouped batches (``batches.py``).  Below everything that trains or measures; knows
nothing of models or Optuna."""

from latencysolver.data.batches import Batch, EncodedSplit, collate, encode_pairs, encode_split
from latencysolver.data.text import Columns, TextData, TextSplit, configured, load_data

__all__ = [
    "Batch",
    "Columns",
    "EncodedSplit",
    "TextData",
    "TextSplit",
    "collate",
    "configured",
    "encode_pairs",
    "encode_split",
    "load_data",
]
