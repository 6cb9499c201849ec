"""latencysolver: search compression recipes (prune, quantize, skip layers, low rank, distill) for the fastest
text classifier that is still accurate enough, with Optuna."""

from latencysolver.config.recipe import Recipe
from latencysolver.ship.inference import CompressedClassifier, Prediction, load

__version__ = "0.2.0"
__all__ = ["CompressedClassifier", "Prediction", "Recipe", "__version__", "load"]
