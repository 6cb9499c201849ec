"""latencysolver: search compression recipes (prune, quantize, skip layers, low rank, distill) for the fastest
BoolQ classifier that is still accurate enough, with Optuna."""

from latencysolver.config.recipe import Recipe
from latencysolver.ship.inference import CompressedClassifier, Prediction, load

__version__ = "0.1.0"
__all__ = ["CompressedClassifier", "Prediction", "Recipe", "__version__", "load"]
