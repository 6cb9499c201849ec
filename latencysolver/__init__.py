"""latencysolver: search compression recipes (prune, quantize, skip layers, low rank, distill) for the fastest
text classifier that is still accurate enough, with Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING

from latencysolver.config.recipe import Recipe
from latencysolver.lazy import lazy_attributes

if TYPE_CHECKING:
    from latencysolver.ship.inference import CompressedClassifier, Prediction, load

__version__ = "0.2.0"
__all__ = ["CompressedClassifier", "Prediction", "Recipe", "__version__", "load"]

# Imported on first use (PEP 562): ``latencysolver.load`` needs torch and transformers, which the command line
# (``latencysolver --help``, a usage error, ``dashboard``) and the config loader do not.
__getattr__ = lazy_attributes(
    __name__, dict.fromkeys(("CompressedClassifier", "Prediction", "load"), "latencysolver.ship.inference")
)
