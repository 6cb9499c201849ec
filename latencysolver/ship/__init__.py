"""Ship: what leaves the study.  ``export.py`` writes a trial's model (weights, ONNX, tokenizer) and a card
with its test accuracy; ``inference.py`` is ``latencysolver.load``; ``predict.py`` answers questions from an
export; ``bench.py`` measures any export or model with the latency protocol."""

from latencysolver.ship.bench import bench, load_target
from latencysolver.ship.export import export_trial
from latencysolver.ship.inference import CompressedClassifier, Prediction, load
from latencysolver.ship.predict import load_export, predict_file, predict_one

__all__ = [
    "CompressedClassifier",
    "Prediction",
    "bench",
    "export_trial",
    "load",
    "load_export",
    "load_target",
    "predict_file",
    "predict_one",
]
