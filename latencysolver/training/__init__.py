"""Training: the project's one training loop (``loop.py``: teacher fine-tune and every distillation), the
distillation losses (``distillation.py``: soft targets with temperature and alpha, the hidden-state term) and
evaluation (``evaluate.py``: logits, accuracy, F1).  Takes plain models and encoded splits; no Optuna."""

from latencysolver.training.distillation import distill, distillation_loss, hidden_state_loss, hidden_targets
from latencysolver.training.evaluate import Scores, predict_logits, scores
from latencysolver.training.loop import TrainResult, cross_entropy_loss, train

__all__ = [
    "Scores",
    "TrainResult",
    "cross_entropy_loss",
    "distill",
    "distillation_loss",
    "hidden_state_loss",
    "hidden_targets",
    "predict_logits",
    "scores",
    "train",
]
