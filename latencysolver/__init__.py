"""latencysolver: search compression recipes (prune, quantize, skip layers, low rank, distill) for the fastest
text classifier that is still accurate enough, with Optuna."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from latencysolver.config.recipe import Recipe

if TYPE_CHECKING:
    from latencysolver.ship.inference import CompressedClassifier, Prediction, load

__version__ = "0.2.0"
__all__ = ["CompressedClassifier", "Prediction", "Recipe", "__version__", "load"]

# Imported on first use (PEP 562): ``latencysolver.load`` needs torch and transformers, which the command line
# (``latencysolver --help``, a usage error, ``dashboard``) and the config loader do not.
_LAZY = {"CompressedClassifier", "Prediction", "load"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("latencysolver.ship.inference"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
