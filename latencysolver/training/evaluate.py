"""Accuracy and F1 of a classifier on an encoded split (batched, no gradients, any dtype, on the model's device)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from latencysolver.data.batches import EncodedSplit, eval_batches
from latencysolver.devices import model_device


@dataclass(frozen=True)
class Scores:
    accuracy: float
    f1: float  # two classes: of the positive one (BoolQ's "yes", class 1); more: macro, the mean over classes


class Classifier(Protocol):
    """What ``predict_logits`` runs: a torch classifier or an ``OnnxClassifier``, as ``model(**inputs).logits``."""

    def eval(self) -> Any: ...

    def __call__(self, **inputs: torch.Tensor) -> Any: ...


@torch.inference_mode()
def predict_logits(
    model: Classifier,
    split: EncodedSplit,
    batch_size: int = 32,
    pad_id: int = 0,
    desc: str = "evaluate",
    progress: bool = True,
) -> torch.Tensor:
    """fp32 logits of shape (rows, labels), in the split's row order."""
    model.eval()
    device = model_device(model)
    out: torch.Tensor | None = None
    total = -(-len(split) // batch_size)
    for batch in tqdm(
        eval_batches(split, batch_size, pad_id),
        total=total,
        desc=desc,
        unit="batch",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    ):
        logits = model(**batch.to(device).inputs).logits.float().cpu()
        if out is None:
            out = torch.empty((len(split), logits.shape[-1]))
        out[batch.indices] = logits
    assert out is not None  # a split always has rows (data.py refuses empty ones)
    return out


def scores(logits: torch.Tensor, labels: torch.Tensor | tuple[int, ...]) -> Scores:
    labels = torch.as_tensor(labels)
    pred = logits.argmax(dim=-1)
    # counted, not a float32 mean: 19/24 must equal the majority rate exactly, not exceed it by float32 rounding
    accuracy = int((pred == labels).sum()) / labels.numel()
    classes = int(logits.shape[-1])
    per_class = [_f1(pred, labels, k) for k in range(classes)]
    return Scores(accuracy=accuracy, f1=per_class[1] if classes == 2 else sum(per_class) / classes)


def ranking_auc(logits: torch.Tensor, labels: torch.Tensor | tuple[int, ...]) -> float:
    """The area under the ROC curve of the model's scores (scikit-learn's ``roc_auc_score``): for two classes, the
    chance that a random row of class 1 scores above a random row of class 0 on ``logit[1] - logit[0]`` (ties count
    half); for more, the mean of each class against the rest on its softmax probability.  0.5 where a class is
    absent (no ranking to judge).

    A continuous signal where accuracy has none: a student that still answers the majority class on every row can
    already rank the rows (the rung check of per-trial mode reads it)."""
    from sklearn.metrics import roc_auc_score

    truth = torch.as_tensor(labels)
    classes = int(logits.shape[-1])
    if classes == 2:
        columns = [(truth == 1, logits[:, 1] - logits[:, 0])]
    else:
        probs = logits.float().softmax(dim=-1)
        columns = [(truth == k, probs[:, k]) for k in range(classes)]
    areas = [
        roc_auc_score(positive.numpy(), score.double().numpy()) if 0 < int(positive.sum()) < len(positive) else 0.5
        for positive, score in columns
    ]
    return float(sum(areas) / len(areas))


def log_likelihood(logits: torch.Tensor, labels: torch.Tensor | tuple[int, ...]) -> float:
    """The mean log-probability the model gives the true class (the negative cross-entropy, in nats)."""
    return -torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(labels)).item()


def _f1(pred: torch.Tensor, labels: torch.Tensor, positive: int) -> float:
    tp = ((pred == positive) & (labels == positive)).sum().item()
    fp = ((pred == positive) & (labels != positive)).sum().item()
    fn = ((pred != positive) & (labels == positive)).sum().item()
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
