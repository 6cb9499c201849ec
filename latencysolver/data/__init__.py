"""Data: BoolQ-shaped text pairs from a hub dataset or a local folder, normalized and checked
(``boolq.py``), then tokenized once and cached by content hash, and cut into padded or length-grouped
batches (``batches.py``).  Below everything that trains or measures; knows nothing of models or Optuna."""

from latencysolver.data.batches import Batch, EncodedSplit, collate, encode_pairs, encode_split
from latencysolver.data.boolq import BoolQData, BoolQSplit, load_boolq

__all__ = ["Batch", "BoolQData", "BoolQSplit", "EncodedSplit", "collate", "encode_pairs", "encode_split", "load_boolq"]
